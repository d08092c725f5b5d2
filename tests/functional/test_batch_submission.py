"""``POST /v1/messages/batches`` over HTTP: per-envelope answers, audited refusals, the Idempotency-Key,
the batch's bounds and its cost in the agency's rate limit."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from broker.audit.actions import AuditAction
from broker.audit.models import AuditEntry
from broker.client.agency import AgencyClient, ClientError
from broker.config import Settings
from broker.messages.models import Message
from tests.broker.messages.spoc_builders import committed
from tests.factories import Region, agency_client
from tests.functional.test_agency_client_retry import LosesAnswers

JSON = {"Content-Type": "application/json"}


def _envelopes(agency: AgencyClient, n: int, **build: Any) -> list[dict[str, Any]]:
    options: dict[str, Any] = {
        "destination_country": "MK",
        "category": "fraud",
        "classification": "RESTRICTED",
    }
    options.update(build)
    return [agency.build(payload=b'{"q": %d}' % i, **options) for i in range(n)]


def _count(client: TestClient, model: Any, *where: Any) -> int:
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_each_envelope_gets_its_own_answer_and_refusals_are_audited(
    client: TestClient, region: Region
) -> None:
    with agency_client(region, "AL-ASP", client) as agency:
        good = _envelopes(agency, 3)
        refused = agency.build(
            payload=b"{}", destination_country="RS", category="fraud", classification="CONFIDENTIAL"
        )
        tampered = _envelopes(agency, 1)[0]
        tampered["header"]["category"] = "terrorism"
        answer = agency.submit_batch([good[0], refused, good[1], tampered, good[2]])

    assert (answer["accepted"], answer["refused"]) == (3, 2)
    statuses = [(r["index"], r["status"]) for r in answer["results"]]
    assert statuses == [(0, 202), (1, 422), (2, 202), (3, 422), (4, 202)]
    assert [r["receipt"]["message_id"] for r in answer["results"] if r["status"] == 202] == [
        e["header"]["message_id"] for e in good
    ]
    assert answer["results"][1]["problem"]["reason"] == "classification-not-covered"
    assert answer["results"][3]["problem"]["detail"] == "signature did not verify"
    for envelope in good:
        assert _count(client, Message, Message.id == envelope["header"]["message_id"]) == 1
    for envelope in (refused, tampered):
        message_id = envelope["header"]["message_id"]
        assert _count(client, Message, Message.id == message_id) == 0
        # Filed under the agency that signed the batch; the refused header's message id is a claim.
        with committed(client) as session:
            refusals = session.scalars(
                select(AuditEntry).where(
                    AuditEntry.object_id == "AL-ASP",
                    AuditEntry.action == str(AuditAction.MESSAGE_REFUSED_AT_INTAKE),
                )
            ).all()
            assert [e.details["claimed"]["message_id"] for e in refusals].count(message_id) == 1


def test_a_batch_whose_answer_was_lost_is_stored_once(client: TestClient, region: Region) -> None:
    with agency_client(region, "AL-ASP", client) as builder:
        envelopes = _envelopes(builder, 4)
    flaky = LosesAnswers(client._transport, lose=1)
    with AgencyClient("http://testserver", region.seed.agencies["AL-ASP"], transport=flaky) as agency:
        answer = agency.submit_batch(envelopes)
    assert flaky.posts == 2
    assert answer["accepted"] == 4  # the first answer, replayed; not four conflicts
    for envelope in envelopes:
        assert _count(client, Message, Message.id == envelope["header"]["message_id"]) == 1


def test_a_resent_batch_under_a_new_key_finds_its_messages_already_stored(
    client: TestClient, region: Region
) -> None:
    with agency_client(region, "AL-ASP", client) as agency:
        envelopes = _envelopes(agency, 2)
        agency.submit_batch(envelopes, idempotency_key="first")
        again = agency.submit_batch(envelopes, idempotency_key="second")
    assert (again["accepted"], [r["status"] for r in again["results"]]) == (0, [409, 409])


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"envelopes": []}, "1 to 200 envelopes"),
        ({"envelopes": {}}, '"envelopes"'),
        ({"envelopes": [], "extra": 1}, '"envelopes"'),
        ([], "JSON object"),
    ],
)
def test_a_malformed_batch_is_refused_whole(
    client: TestClient, region: Region, body: Any, detail: str
) -> None:
    with agency_client(region, "AL-ASP", client) as agency, pytest.raises(ClientError) as refused:
        agency._call("POST", "/v1/messages/batches", json=body)
    assert refused.value.status == 400
    assert detail in refused.value.problem["detail"]


def test_a_batch_over_the_limit_is_refused_and_nothing_is_kept(client: TestClient, region: Region) -> None:
    with agency_client(region, "AL-ASP", client) as agency:
        envelope = _envelopes(agency, 1)[0]
        with pytest.raises(ClientError) as refused:
            agency.submit_batch([envelope] * 201)
    assert refused.value.status == 400
    assert _count(client, Message, Message.id == envelope["header"]["message_id"]) == 0


def test_an_unsigned_batch_is_not_authenticated(client: TestClient) -> None:
    response = client.post("/v1/messages/batches", json={"envelopes": [{}]})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


def test_each_envelope_costs_one_token_and_a_refused_batch_costs_none(
    settings: Settings, region: Region
) -> None:
    from contact_points.app import create_app

    tight = settings.model_copy(update={"rate_limit_per_second": 0.01, "rate_limit_burst": 5})
    with TestClient(create_app(tight)) as client, agency_client(region, "SI-POL", client) as agency:
        assert agency.submit_batch(_envelopes(agency, 3, destination_country="HR"))["accepted"] == 3
        refused = _envelopes(agency, 3, destination_country="HR")
        limited = agency._http.post(  # the signed HTTP client itself, to read the answer's headers
            "/v1/messages/batches", content=orjson.dumps({"envelopes": refused}), headers=JSON
        )  # 2 tokens left, 3 needed
        assert limited.status_code == 429
        assert 99 <= int(limited.headers["retry-after"]) <= 100  # the wait for the third token at 0.01/s
        assert _count(client, Message, Message.id == refused[0]["header"]["message_id"]) == 0
        # The refused batch took nothing: the 2 tokens are still there for 2 envelopes.
        assert agency.submit_batch(_envelopes(agency, 2, destination_country="HR"))["accepted"] == 2


def test_a_batch_is_never_larger_than_the_rate_limits_burst(settings: Settings, region: Region) -> None:
    from contact_points.app import create_app

    small = settings.model_copy(update={"rate_limit_burst": 4})
    with TestClient(create_app(small)) as client, agency_client(region, "SI-POL", client) as agency:
        with pytest.raises(ClientError) as refused:
            agency.submit_batch(_envelopes(agency, 5, destination_country="HR"))
        assert refused.value.status == 400
        assert "1 to 4 envelopes" in refused.value.problem["detail"]
