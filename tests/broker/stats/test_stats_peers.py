"""Peers' aggregates between two nodes (AL's and XK's, each its own database and app; tests/broker/hop/nodes.py):
XK publishes its own contact point's counts, signed; AL's dashboard shows them in its region view; a peer that
is down, answers garbage or signs with another key is "unreachable", and the page still answers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select

from broker.audit.models import AuditEntry
from broker.crypto.countersign import sign_stats
from broker.db import unit_of_work
from broker.keys.service import DatabaseKeyStore
from broker.region.sync import TRANSPORT_PARTY
from broker.stats.models import AGGREGATE_FORMAT
from broker.stats.peers import AGGREGATE_PATH, PeerCache, PeerFigures, fetch_all, prepare
from broker.stats.period import Period
from tests.broker.hop.nodes import Node, make_region_of_two, peers
from tests.broker.stats.traffic import Traffic, at
from tests.contact_points.test_ui_pages import log_in

PERIOD = Period.of_year(2025)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    for made in make_region_of_two(tmp_path_factory):
        xk = made["XK"].client.app.state  # type: ignore[attr-defined]
        with unit_of_work(xk.sessionmaker) as session:  # XK's node: requests it received from AL, one it sent
            t = Traffic(session)
            t.request("a", sender="AL-ASP", to="XK", started=at(3, 1), state="answered", answered=at(3, 2))
            t.request(
                "b",
                sender="AL-ASP",
                to="XK",
                started=at(4, 1),
                state="refused",
                refused=(at(4, 2), "incomplete"),
            )
            t.request("c", sender="AL-BMP", to="XK", started=at(5, 1), state="destination_review")
            t.request("d", sender="XK-KP", to="AL", started=at(6, 1), state="forwarded")
        yield made


def _requests(node: Node) -> list[object]:
    state = node.client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:
        return list(prepare(session, DatabaseKeyStore(session, state.master_key), PERIOD))


def test_a_node_reads_its_peers_signed_aggregates(nodes: dict[str, Node]) -> None:
    requests = _requests(nodes["AL"])
    with peers(nodes) as network:
        [figures] = fetch_all(requests, network)  # type: ignore[arg-type]
    assert (figures.node_id, figures.status, figures.countries) == ("xk", "ok", ("XK",))
    [xk] = figures.rows
    assert xk.model_dump() == {
        "contact_point": "XK-SPOC",
        "country": "XK",
        "sent": 1,
        "received": 3,
        "answered": 1,
        "answered_late": 0,
        "refused": 1,
        "open": 1,
        "overdue": 1,
        "paused": 0,
        "judicial_delays": 0,
        "median_answer_seconds": 86400,
        "p90_answer_seconds": 86400,
    }
    with nodes["XK"].engine.connect() as conn:
        published = conn.execute(
            select(AuditEntry.actor, AuditEntry.object_id, AuditEntry.details).where(
                AuditEntry.action == "stats:exported"
            )
        ).all()
    assert [(actor, obj, d["report"]) for actor, obj, d in published][-1:] == [("al", "al", "aggregate")]


def _answering(handler: object) -> PeerCache:
    return PeerCache(client_factory=lambda: httpx.Client(transport=httpx.MockTransport(handler)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("handler", "says"),
    [
        (
            lambda request: httpx.Response(503, json={"type": "x", "reason": "busy"}),
            "node xk answered 503 (busy)",
        ),
        (
            lambda request: httpx.Response(200, json={"token": "not.a.jws"}),
            "did not answer with its signed aggregates",
        ),
        (lambda request: httpx.Response(200, text="<html>"), "did not answer with its signed aggregates"),
    ],
)
def test_an_unreachable_or_lying_peer_is_shown_as_unreachable(
    nodes: dict[str, Node], handler: object, says: str
) -> None:
    [figures] = _answering(handler).figures(_requests(nodes["AL"]))  # type: ignore[arg-type]
    assert figures.status == "unreachable"
    assert says in figures.detail


def test_a_statement_signed_by_another_node_is_not_believed(nodes: dict[str, Node]) -> None:
    """What AL's node signed for XK, replayed to AL as XK's answer: a valid signature, but by AL's transport
    key, not XK's (and for XK, not for AL): unreachable, never shown as XK's figures."""
    al_requests = _requests(nodes["AL"])
    xk_requests = _requests(nodes["XK"])
    with peers(nodes) as network:
        signed_by_al = network.get(xk_requests[0].url, headers=xk_requests[0].headers)  # type: ignore[attr-defined]
    assert signed_by_al.status_code == 200

    def replay(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=signed_by_al.json())

    [figures] = _answering(replay).figures(al_requests)  # type: ignore[arg-type]
    assert figures.status == "unreachable"


def test_only_a_node_of_the_region_may_ask(nodes: dict[str, Node]) -> None:
    answer = nodes["XK"].client.get(AGGREGATE_PATH, params={"year": "2025"})
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_the_cache_asks_once(nodes: dict[str, Node]) -> None:
    asked: list[str] = []

    def count(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(503)

    cache = _answering(count)
    requests = _requests(nodes["AL"])
    first: list[PeerFigures] = cache.figures(requests)  # type: ignore[arg-type]
    again = cache.figures(requests)  # type: ignore[arg-type]
    assert first == again
    assert len(asked) == 1


def test_the_cache_is_bounded(nodes: dict[str, Node]) -> None:
    """Every period a supervisor asks for is a key: past ``max_entries`` the answers expiring first go."""
    cache = _answering(lambda request: httpx.Response(503))
    cache.max_entries = 3
    state = nodes["AL"].client.app.state  # type: ignore[attr-defined]
    for month in range(1, 11):
        period = Period(
            start=datetime(2025, month, 1, tzinfo=UTC), end=datetime(2025, month + 1, 1, tzinfo=UTC)
        )
        with unit_of_work(state.sessionmaker) as session:
            requests = list(prepare(session, DatabaseKeyStore(session, state.master_key), period))
        assert cache.figures(requests)[0].status == "unreachable"
    assert len(cache._kept) == 3
    assert {key[1][:7] for key in cache._kept} == {"2025-08", "2025-09", "2025-10"}


def test_the_dashboard_shows_the_region_with_the_peers_figures(nodes: dict[str, Node]) -> None:
    al = nodes["AL"]
    state = al.client.app.state  # type: ignore[attr-defined]
    state.peer_stats = PeerCache(client_factory=lambda: peers(nodes))
    log_in(al.client, "al-supervisor", al.seed.accounts["al-supervisor"].password)
    page = al.client.get("/ui/dashboard", params={"year": "2025"}).text
    region = re.search(r'<table id="table-region".*?</table>', page, re.S)
    assert region is not None
    assert re.search(
        r'<th scope="row">XK</th><td>node xk</td><td class="n">3</td><td class="n">1</td>', region.group(0)
    )
    assert '<th scope="row">AL</th><td>this contact point</td>' in region.group(0)
    assert "<title>XK: received 3</title>" in page

    state.peer_stats = PeerCache()  # the real network: xk.node.test does not resolve here
    page = al.client.get("/ui/dashboard", params={"year": "2025"})
    assert page.status_code == 200
    assert "Node xk (XK) is unreachable" in page.text
    assert re.search(
        r'<th scope="row">XK</th><td>node xk</td><td colspan="9"><strong>unreachable</strong>', page.text
    )


@pytest.mark.parametrize(
    "lie",
    [
        {"median_answer_seconds": 10**15},  # beyond any time span: no answer takes 30 million years
        {"p90_answer_seconds": -5},
        {"received": -3},
    ],
)
def test_a_peer_signing_absurd_figures_is_unreachable_and_the_page_still_answers(
    nodes: dict[str, Node], lie: dict[str, int]
) -> None:
    """A hostile node of the region signs, with its own transport key, counts no node can have (negative) or
    an answer time no clock can hold: it is shown as unreachable, and AL's dashboard still answers."""
    xk_state = nodes["XK"].client.app.state  # type: ignore[attr-defined]
    with unit_of_work(xk_state.sessionmaker) as session:
        key = DatabaseKeyStore(session, xk_state.master_key).signing_key(TRANSPORT_PARTY)
    row = {
        "contact_point": "XK-SPOC",
        "country": "XK",
        "sent": 1,
        "received": 3,
        "answered": 1,
        "answered_late": 0,
        "refused": 1,
        "open": 1,
        "overdue": 1,
        "paused": 0,
        "judicial_delays": 0,
        "median_answer_seconds": 86400,
        "p90_answer_seconds": 86400,
        **lie,
    }

    def hostile(request: httpx.Request) -> httpx.Response:
        statement = {
            "format": AGGREGATE_FORMAT,
            "node": "xk",
            "for": "al",
            "from": request.url.params["from"],
            "to": request.url.params["to"],
            "at": "2026-01-01T00:00:00Z",
            "contact_points": [row],
        }
        return httpx.Response(200, json={"token": sign_stats(statement, key=key)})

    [figures] = _answering(hostile).figures(_requests(nodes["AL"]))  # type: ignore[arg-type]
    assert figures.status == "unreachable"
    assert "did not answer with its signed aggregates" in figures.detail

    al = nodes["AL"]
    al.client.app.state.peer_stats = _answering(hostile)  # type: ignore[attr-defined]
    log_in(al.client, "al-supervisor", al.seed.accounts["al-supervisor"].password)
    page = al.client.get("/ui/dashboard", params={"year": "2025"})
    assert page.status_code == 200
    assert "Node xk (XK) is unreachable" in page.text
