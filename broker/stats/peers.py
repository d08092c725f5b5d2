"""Aggregate statistics between the nodes of a region: each publishes its own, none sees another's messages.

A node publishes, to the nodes of its regional directory only, its own contact points' aggregate counts
for a period (:class:`broker.stats.models.Aggregate`: counts and answer times, no message id, no content):
``GET /v1/stats/aggregate?year=2026`` (or ``from``/``to``), the caller authenticated by its RFC 9421
``spoc-node`` transport signature as on the hop. The answer is ``{"token": JWS}``, the statement::

    {"format": "spoc-stats-aggregate/v1", "node": "xk", "for": "al", "from": ..., "to": ..., "at": ...,
     "contact_points": [Aggregate, ...]}

signed with the publishing node's transport key (``spoc-stats+jws``), so what the dashboard shows as a
peer's figures is what that peer said, checked against the keys of the governance-signed directory.

The dashboard's region view asks every other node of the directory in two steps: :func:`prepare` (in a
transaction: the directory, this node, one signed request per peer) and :func:`fetch_all` (no transaction
open; the peers concurrently with short timeouts). A peer that does not answer, answers something else or
signs badly is "unreachable" with a one-line reason, never an error of the page; :class:`PeerCache` keeps
each answer a few minutes so a page reload does not ask again.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import httpx
from pydantic import ValidationError
from sqlalchemy.orm import Session

from broker.crypto import PublicKey
from broker.crypto.countersign import sign_stats, verify_stats
from broker.crypto.httpsig import NODE_LABEL, sign_request
from broker.errors import NotFound, SpocError, VerificationError
from broker.hop.ledger import stamp
from broker.hop.service import live_directory, problem_reason, this_node
from broker.keys.service import DatabaseKeyStore
from broker.region.sync import TRANSPORT_PARTY
from broker.stats.models import AGGREGATE_FORMAT, Aggregate
from broker.stats.period import Period
from schemas.region import DirectoryNode

__all__ = [
    "AGGREGATE_PATH",
    "PeerCache",
    "PeerFigures",
    "PeerRequest",
    "fetch_all",
    "prepare",
    "publish",
]

AGGREGATE_PATH: Final = "/v1/stats/aggregate"
TIMEOUT: Final = httpx.Timeout(3.0, connect=1.5)
"""A peer that takes longer is shown as unreachable: the page is never held up for long."""


def publish(
    keys: DatabaseKeyStore,
    *,
    me: DirectoryNode,
    caller: DirectoryNode,
    period: Period,
    at: datetime,
    rows: Sequence[Aggregate],
) -> dict[str, str]:
    """This node's signed aggregate document for ``caller`` (see the module docstring)."""
    statement: dict[str, Any] = {
        "format": AGGREGATE_FORMAT,
        "node": me.node_id,
        "for": caller.node_id,
        "from": stamp(period.start),
        "to": stamp(period.end),
        "at": stamp(at),
        "contact_points": [row.model_dump(mode="json") for row in rows],
    }
    return {"token": sign_stats(statement, key=keys.signing_key(TRANSPORT_PARTY))}


@dataclass(frozen=True)
class PeerFigures:
    """What one peer node published (``rows``), or why there is nothing (``status`` ``unreachable``)."""

    node_id: str
    countries: tuple[str, ...]
    status: str  # ok | unreachable
    rows: tuple[Aggregate, ...] = ()
    detail: str = ""
    at: str | None = None  # when the peer computed its figures


@dataclass(frozen=True)
class PeerRequest:
    """One signed GET of a peer's aggregates, made in a transaction and sent after it."""

    me: str
    peer: DirectoryNode
    period: Period
    url: str
    headers: dict[str, str]

    def unreachable(self, detail: str) -> PeerFigures:
        return PeerFigures(
            self.peer.node_id, tuple(sorted(self.peer.countries)), "unreachable", detail=detail
        )


def prepare(session: Session, keys: DatabaseKeyStore, period: Period) -> list[PeerRequest]:
    """A signed request for every other node of the installed directory; none without a directory (a hub,
    or a node not yet in a region) or when the directory does not list this node."""
    try:
        installed = live_directory(session)
        me = this_node(session, installed.directory)
    except SpocError:
        return []
    key = keys.signing_key(TRANSPORT_PARTY)
    query = urllib.parse.urlencode({"from": stamp(period.start), "to": stamp(period.end)})
    made = []
    for peer in sorted(installed.directory.nodes, key=lambda n: n.node_id):
        if peer.node_id == me.node_id:
            continue
        url = f"{str(peer.base_url).rstrip('/')}{AGGREGATE_PATH}?{query}"
        headers: dict[str, str] = {"accept": "application/json"}
        sign_request("GET", url, headers, b"", key=key, label=NODE_LABEL)
        made.append(PeerRequest(me.node_id, peer, period, url, headers))
    return made


def fetch(request: PeerRequest, client: httpx.Client) -> PeerFigures:
    """One peer's verified figures, or "unreachable" with the reason; never raises."""
    name = request.peer.node_id
    try:
        answer = client.get(request.url, headers=request.headers)
    except httpx.HTTPError as exc:
        return request.unreachable(f"{type(exc).__name__} reaching node {name}")
    if answer.status_code != 200:
        reason = problem_reason(answer)
        return request.unreachable(
            f"node {name} answered {answer.status_code}" + (f" ({reason})" if reason else "")
        )
    try:
        token = answer.json()["token"]
        statement = verify_stats(str(token), resolve=_transport_keys(request.peer))
        return _figures(request, statement)
    except (ValueError, KeyError, TypeError, VerificationError, NotFound, ValidationError):
        return request.unreachable(f"node {name} did not answer with its signed aggregates")


def _transport_keys(peer: DirectoryNode) -> Any:
    keys = {k.kid: k for k in (PublicKey.from_jwk(j) for j in peer.transport_keys)}

    def resolve(kid: str) -> PublicKey:
        if kid not in keys:
            raise NotFound("not a transport key of this node")
        return keys[kid]

    return resolve


def _figures(request: PeerRequest, statement: dict[str, Any]) -> PeerFigures:
    peer = request.peer
    expected = {
        "format": AGGREGATE_FORMAT,
        "node": peer.node_id,
        "for": request.me,
        "from": stamp(request.period.start),
        "to": stamp(request.period.end),
    }
    if any(statement.get(k) != v for k, v in expected.items()):
        raise ValueError("a statement about something else")
    rows = tuple(Aggregate.model_validate(row) for row in statement["contact_points"])
    if any(row.country not in peer.countries for row in rows):
        raise ValueError("figures of a contact point the node does not serve")
    return PeerFigures(peer.node_id, tuple(sorted(peer.countries)), "ok", rows, at=str(statement.get("at")))


def fetch_all(requests: Sequence[PeerRequest], client: httpx.Client) -> list[PeerFigures]:
    """Every peer's figures, asked concurrently (in the order of ``requests``)."""
    if not requests:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(requests))) as pool:
        return list(pool.map(lambda r: fetch(r, client), requests))


def peer_client() -> httpx.Client:
    """A client for the peers: their URLs come from the signed directory; short timeouts, no proxy, no redirect."""
    return httpx.Client(timeout=TIMEOUT, trust_env=False, follow_redirects=False)


@dataclass
class PeerCache:
    """Peers' answers kept a few minutes (failures one), per peer and period; thread-safe. ``client_factory``
    makes the HTTP client for a round of questions (a test passes one bound to its nodes' transports)."""

    client_factory: Callable[[], httpx.Client] = peer_client
    ok_seconds: float = 300.0
    failed_seconds: float = 60.0
    max_entries: int = 512
    _kept: dict[tuple[str, str, str], tuple[float, PeerFigures]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def figures(self, requests: Sequence[PeerRequest]) -> list[PeerFigures]:
        """Every peer's figures, from the cache where fresh, asked (concurrently) where not."""
        now = time.monotonic()
        keyed = {_key(r): r for r in requests}
        with self._lock:
            fresh = {k: v for k, (until, v) in self._kept.items() if until > now and k in keyed}
        missing = [r for k, r in keyed.items() if k not in fresh]
        if missing:
            with self.client_factory() as client:
                answers = fetch_all(missing, client)
            with self._lock:
                for request, got in zip(missing, answers, strict=True):
                    fresh[_key(request)] = got
                    ttl = self.ok_seconds if got.status == "ok" else self.failed_seconds
                    self._kept[_key(request)] = (now + ttl, got)
                self._forget(now)
        return [fresh[k] for k in keyed]

    def _forget(self, now: float) -> None:
        """Bounded: expired answers go, and beyond ``max_entries`` (every period a supervisor ever asked
        for, per peer) those expiring first go too. Called with the lock held."""
        for key in [k for k, (until, _) in self._kept.items() if until <= now]:
            del self._kept[key]
        if len(self._kept) > self.max_entries:
            by_expiry = sorted(self._kept, key=lambda k: self._kept[k][0])
            for key in by_expiry[: len(self._kept) - self.max_entries]:
                del self._kept[key]


def _key(request: PeerRequest) -> tuple[str, str, str]:
    return (request.peer.node_id, stamp(request.period.start), stamp(request.period.end))
