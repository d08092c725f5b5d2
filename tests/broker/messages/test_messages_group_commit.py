"""Group commit (``broker.messages.group``): single submissions arriving together share one transaction and
one commit, and each is answered as if it had come alone — its own receipt, its key's first answer, its own
refusal — only after that commit."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from broker.audit.actions import AuditAction
from broker.messages import group as group_module
from broker.messages.models import IdempotencyRecord, Message
from tests.broker.messages.spoc_builders import agency_http, audit_entries, committed
from tests.factories import Region, agency_client

JSON = {"Content-Type": "application/json"}


def _together(posts: list[tuple[httpx.Client, bytes, dict[str, str]]]) -> list[httpx.Response]:
    """POST each (client, body, headers) to /v1/messages at once from as many threads (released together);
    the answers in order."""
    start = threading.Barrier(len(posts))
    answers: list[Any] = [None] * len(posts)

    def run(index: int) -> None:
        http, body, headers = posts[index]
        start.wait()
        answers[index] = http.post("/v1/messages", content=body, headers=headers)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(posts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_submissions_arriving_together_are_each_answered_and_stored_once(
    client: TestClient, region: Region
) -> None:
    assert client.app.state.group_commit is not None  # type: ignore[attr-defined]  # PostgreSQL: on
    senders = ["AL-ASP", "XK-KP", "AL-ASP", "XK-KP"] * 3
    envelopes = [
        agency_client(region, s, client).build(
            payload=b"{}", destination_country="MK" if s == "AL-ASP" else "AL", category="fraud"
        )
        for s in senders
    ]
    https = [agency_http(client, region, s) for s in senders]
    answers = _together([(h, orjson.dumps(e), JSON) for h, e in zip(https, envelopes, strict=True)])
    assert [a.status_code for a in answers] == [202] * len(senders)
    assert [a.json()["message_id"] for a in answers] == [e["header"]["message_id"] for e in envelopes]
    with committed(client) as session:
        for envelope, sender in zip(envelopes, senders, strict=True):
            message_id = envelope["header"]["message_id"]
            message = session.get(Message, message_id)
            assert message is not None
            assert (message.sender_agency, message.state) == (sender, "origin_review")
            [submitted] = audit_entries(session, object_id=message_id, action=AuditAction.MESSAGE_SUBMITTED)
            assert submitted.actor == sender
            assert len(audit_entries(session, object_id=message_id, action=AuditAction.MESSAGE_QUEUED)) == 1


def test_one_key_sent_twice_at_once_is_stored_once_and_replayed(client: TestClient, region: Region) -> None:
    envelope = agency_client(region, "AL-ASP", client).build(
        payload=b"{}", destination_country="MK", category="fraud"
    )
    body, key = orjson.dumps(envelope), f"together-{uuid.uuid4()}"
    http = [agency_http(client, region, "AL-ASP") for _ in range(2)]
    answers = _together([(h, body, {**JSON, "Idempotency-Key": key}) for h in http])
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json() == answers[1].json()
    assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers) == ["", "true"]
    message_id = envelope["header"]["message_id"]
    with committed(client) as session:
        assert session.scalar(select(func.count()).select_from(Message).where(Message.id == message_id)) == 1
        assert session.get(IdempotencyRecord, ("AL-ASP", key)) is not None


def test_one_key_sent_at_once_with_two_bodies_keeps_the_first_and_refuses_the_other(
    client: TestClient, region: Region
) -> None:
    """Both pass the request's early look (neither is written yet); the writer puts them in two groups and
    finds the key answered for the other body: 409, and nothing of the second message kept."""
    build = agency_client(region, "AL-ASP", client).build
    envelopes = [build(payload=b"{}", destination_country="MK", category="fraud") for _ in range(2)]
    key = f"two-bodies-{uuid.uuid4()}"
    http = [agency_http(client, region, "AL-ASP") for _ in range(2)]
    answers = _together(
        [(h, orjson.dumps(e), {**JSON, "Idempotency-Key": key}) for h, e in zip(http, envelopes, strict=True)]
    )
    assert sorted(a.status_code for a in answers) == [202, 409]
    kept = [
        e["header"]["message_id"] for e, a in zip(envelopes, answers, strict=True) if a.status_code == 202
    ]
    with committed(client) as session:
        ids = [e["header"]["message_id"] for e in envelopes]
        assert list(session.scalars(select(Message.id).where(Message.id.in_(ids)))) == kept
        record = session.get(IdempotencyRecord, ("AL-ASP", key))
        assert record is not None
        assert record.response["message_id"] == kept[0]


def test_one_message_sent_twice_at_once_without_keys_is_stored_once(
    client: TestClient, region: Region
) -> None:
    envelope = agency_client(region, "AL-ASP", client).build(
        payload=b"{}", destination_country="MK", category="fraud"
    )
    body = orjson.dumps(envelope)
    http = [agency_http(client, region, "AL-ASP") for _ in range(2)]
    answers = _together([(h, body, JSON) for h in http])
    assert sorted(a.status_code for a in answers) == [202, 409]
    message_id = envelope["header"]["message_id"]
    with committed(client) as session:
        assert session.scalar(select(func.count()).select_from(Message).where(Message.id == message_id)) == 1
        assert len(audit_entries(session, object_id=message_id, action=AuditAction.MESSAGE_SUBMITTED)) == 1


def test_a_group_that_cannot_be_written_whole_is_written_one_by_one(
    client: TestClient, region: Region, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing the group fails (as when another process took a unique key meanwhile): each member is written
    alone, in a transaction of its own, and answered as alone."""
    real = group_module.write_group
    groups: list[int] = []

    def failing_when_shared(session: Any, members: Any) -> Any:
        groups.append(len(members))
        if len(members) > 1:
            raise RuntimeError("lost a race")
        return real(session, members)

    monkeypatch.setattr(group_module, "write_group", failing_when_shared)
    monkeypatch.setattr(client.app.state.group_commit, "_window", 1.0)  # type: ignore[attr-defined]  # one group
    envelopes = [
        agency_client(region, "AL-ASP", client).build(
            payload=b"{}", destination_country="MK", category="fraud"
        )
        for _ in range(3)
    ]
    http = [agency_http(client, region, "AL-ASP") for _ in envelopes]
    answers = _together([(h, orjson.dumps(e), JSON) for h, e in zip(http, envelopes, strict=True)])
    assert [a.status_code for a in answers] == [202] * 3
    assert max(groups) > 1  # a shared group failed ...
    assert groups.count(1) == 3  # ... then each member was written alone
    with committed(client) as session:
        ids = [e["header"]["message_id"] for e in envelopes]
        assert session.scalar(select(func.count()).select_from(Message).where(Message.id.in_(ids))) == 3
