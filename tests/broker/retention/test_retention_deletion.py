"""Deleting an exchange's content, over HTTP: after a real exchange (request and answer through the API, the
cross-check run, an H2 request to pass the answer on), a compliance review's "delete now" leaves no table
holding its payload, ciphertext, keys, selector hashes, free text or links, keeps the routing metadata, and
leaves the audit log verifying; the API and the message page say the content was deleted."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from broker.audit.models import AuditEntry
from broker.crosscheck.models import CrosscheckLink, CrosscheckScan, SelectorHash
from broker.delivery.models import InboxItem
from broker.messages.models import (
    CustodyStep,
    DeadlineEvent,
    IdempotencyRecord,
    Message,
    ReviewNotification,
)
from broker.models import Base
from tests.broker.retention.scenario import (
    PERSON,
    answered_exchange,
    backdate,
    committed,
    cross_check,
    person_content,
)
from tests.contact_points.test_ui_pages import log_in
from tests.factories import Region, agency_client, drain, officer_client

EXPLANATION = "Vranjesevic-urgency: the courier crosses at Ćafasan tonight"
PURPOSE = "Vranjesevic-purpose: joint investigation team with Podgorica"


def _dump(session: Session) -> str:
    """Every row of every table as text, lower-cased (the cross-check's own "nothing in clear" check)."""
    parts = []
    for table in Base.metadata.sorted_tables:
        for row in session.execute(select(table)).all():
            parts.append(f"{table.name}: " + " ".join(str(v) for v in row))
    return "\n".join(parts).lower()


def _another_case_about_the_same_person(client: TestClient, region: Region) -> str:
    with agency_client(region, "ME-UP", client) as me:
        envelope = me.build(
            payload=person_content("Criminal record of this person."),
            destination_country="MK",
            category="drug-trafficking",
        )
        message_id: str = me.submit(envelope)["message_id"]
    with officer_client(region, "me-officer", client) as officer:
        officer.decide(message_id, "approve")
    drain(client)
    return message_id


def test_deleting_an_exchange_leaves_no_content_in_any_table_and_the_log_verifies(
    client: TestClient, region: Region
) -> None:
    other = _another_case_about_the_same_person(client, region)  # held by MK before the exchange below
    cross_check(client)
    x = answered_exchange(
        client,
        region,
        payload=person_content(
            "Addresses and border crossings of this person.",
            vehicles=[{"registration_number": "SK 4471-VR", "registration_country": "MK"}],
            phone_numbers=[{"number": "+389 70 555 123"}],
        ),
        answer=person_content("Two crossings at Tabanovce in March."),
        priority={
            "level": "urgent",
            "urgency_reason": "threat-to-life-or-physical-integrity",
            "urgency_explanation": EXPLANATION,
            "information_access": "indirect",
        },
        purpose=PURPOSE,
    )
    cross_check(client)
    ids = [x.request_id, x.answer_id]

    with committed(client) as session:
        messages = session.scalars(select(Message).where(Message.id.in_(ids))).all()
        secrets_ = []
        for m in messages:
            jwe = m.envelope["payload"]
            secrets_ += [
                jwe["ciphertext"],
                jwe["iv"],
                jwe["tag"],
                *(r["encrypted_key"] for r in jwe["recipients"]),
            ]
        ours = set(session.scalars(select(SelectorHash.digest).where(SelectorHash.message_id.in_(ids))))
        theirs = set(session.scalars(select(SelectorHash.digest).where(SelectorHash.message_id.not_in(ids))))
        links = session.scalar(
            select(func.count())
            .select_from(CrosscheckLink)
            .where(or_(CrosscheckLink.message_id.in_(ids), CrosscheckLink.linked_message_id.in_(ids)))
        )
        custody = session.scalar(select(func.count()).where(CustodyStep.message_id.in_(ids)))
        deadlines = session.scalar(select(func.count()).where(DeadlineEvent.message_id.in_(ids)))
        notices = session.scalars(
            select(ReviewNotification.text).where(
                ReviewNotification.message_id == other, ReviewNotification.kind == "crosscheck-link"
            )
        ).all()
        before = _dump(session)
    assert ours, "the cross-check hashed the exchange's selectors"
    assert links, "the cross-check linked the exchange to the other case about the same person"
    assert any(x.request_id[:8] in text for text in notices), "MK's officers were told on the other case"
    digests = sorted(
        ours - theirs
    )  # a digest the other case shares (same person, same key) is not ours alone
    assert digests
    free_text = [EXPLANATION.lower(), PURPOSE.lower()]
    for needle in free_text:
        assert needle in before, "the check has teeth: the free text was stored before"

    backdate(client, x.conversation_id, 200)
    with officer_client(region, "al-officer", client) as al:
        queue = al._call("GET", "/v1/retention/review-queue", params={"limit": 500})
        assert x.conversation_id in [e["conversation_id"] for e in queue]
        answer = al._call(
            "POST",
            f"/v1/retention/{x.conversation_id}/review",
            json={"decision": "delete", "reason": "no longer needed"},
        )
    assert answer["decision"] == "delete"
    assert answer["deleted_messages"] == 2
    assert all(m["content_deleted"] for m in answer["exchange"]["messages"])

    with committed(client) as session:
        after = _dump(session)
        for needle in [*(s.lower() for s in secrets_), *digests, *free_text]:
            assert needle not in after, f"{needle[:24]}… is still stored"
        for clear in (str(PERSON["family_name"]), "Vranjesevic", "SK 4471-VR", "389705551"):
            assert clear.lower() not in after
        assert session.scalar(select(func.count()).where(SelectorHash.message_id.in_(ids))) == 0
        assert (
            session.scalar(
                select(func.count())
                .select_from(CrosscheckLink)
                .where(or_(CrosscheckLink.message_id.in_(ids), CrosscheckLink.linked_message_id.in_(ids)))
            )
            == 0
        )
        assert (
            session.scalar(
                select(func.count()).where(IdempotencyRecord.response["message_id"].as_string().in_(ids))
            )
            == 0
        )
        # What stays: routing metadata, the chain of custody, deadlines, receipts, the scans' counts.
        for m in session.scalars(select(Message).where(Message.id.in_(ids))):
            assert set(m.envelope) == {"spoc", "header"}
            assert m.envelope["header"]["category"] == m.category == "drug-trafficking"
            assert {m.origin_country, m.destination_country} == {"AL", "MK"}
            assert m.content_deleted_at is not None
            assert m.content_deletion == "review"
        assert session.scalar(select(func.count()).where(CustodyStep.message_id.in_(ids))) == custody
        assert session.scalar(select(func.count()).where(DeadlineEvent.message_id.in_(ids))) == deadlines
        assert session.scalar(
            select(func.count()).where(InboxItem.message_id.in_(ids), InboxItem.receipt.is_not(None))
        )
        assert session.scalar(select(func.count()).where(CrosscheckScan.message_id.in_(ids)))
        # The other case keeps its content and its selectors.
        kept = session.get(Message, other)
        assert kept is not None
        assert "payload" in kept.envelope
        assert kept.content_deleted_at is None
        assert session.scalar(select(func.count()).where(SelectorHash.message_id == other))
        notices = session.scalars(
            select(ReviewNotification.text).where(
                ReviewNotification.message_id == other, ReviewNotification.kind == "crosscheck-link"
            )
        ).all()
        assert not [text for text in notices if x.request_id[:8] in text or x.answer_id[:8] in text]
        # One entry per message deleted, naming no content.
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "retention:deleted", AuditEntry.object_id.in_(ids))
        ).all()
        assert sorted(e.object_id or "" for e in entries) == sorted(ids)
        assert all(set(e.details) <= {"conversation", "basis", "client_request_id"} for e in entries)

    with officer_client(region, "regional-auditor", client) as auditor:
        report = auditor.verify_audit()
    assert report["ok"] is True, report["summary"]


def test_a_deleted_message_says_so_in_the_api_and_on_the_page(client: TestClient, region: Region) -> None:
    x = answered_exchange(client, region, payload=b"Vranjesevic-page-marker: who rents the flat")
    backdate(client, x.conversation_id, 200)
    with officer_client(region, "al-officer", client) as al:
        al._call("POST", f"/v1/retention/{x.conversation_id}/review", json={"decision": "delete"})
        detail = al.message(x.request_id)
        content = al.content(x.request_id)
    assert detail is not None
    assert detail["content_deleted"] is True
    assert detail["content_deleted_at"]
    signatures = {c["seq"]: c["signature"] for c in detail["custody"]}
    assert signatures[0] == "content-deleted"
    assert {s for seq, s in signatures.items() if seq} == {"verified"}, "countersignatures still verify"
    assert content["readable"] is False
    assert content["payload_b64"] is None
    assert content["content_deleted"] is True
    assert re.fullmatch(r"Content deleted on \d{4}-\d\d-\d\d under the retention rules\.", content["notice"])
    with agency_client(region, "AL-ASP", client) as asker:
        status = asker.status(x.request_id)
    assert status["content_deleted"] is True
    assert status["content_deleted_at"] is not None
    assert status["state"] == "answered", "the routing metadata stays"

    log_in(client, "al-officer", region.password("al-officer"))
    html = client.get(f"/ui/messages/{x.request_id}").text
    assert "Content deleted on" in html
    assert "under the retention rules" in html
    assert "Vranjesevic-page-marker" not in html
    assert "— content deleted" in html  # the originator's signature step of the timeline
