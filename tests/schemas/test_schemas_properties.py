"""Properties over generated headers: any valid header survives the wire, and the signed view with it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codelists import codes, entries
from schemas.envelope import Envelope, RoutingHeader

COUNTRIES = sorted(codes("countries"))
IN_REPLY_TO = {e["code"]: e["in_reply_to"] for e in entries("message_types")}
# Printable text without control characters: legal_basis forbids them and explanations are prose.
PROSE = st.characters(codec="utf-8", exclude_categories=["C"])


def agency_of(country: str) -> st.SearchStrategy[str]:
    return st.from_regex(r"[A-Z0-9]{2,12}", fullmatch=True).map(lambda name: f"{country}-{name}")


def sorted_sample(code_list: Any) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(codes(code_list)))


@st.composite
def priorities(draw: st.DrawFn) -> dict[str, Any]:
    access = draw(st.sampled_from(["direct", "indirect"]))
    if draw(st.booleans()):
        explanation = draw(st.text(PROSE, min_size=1, max_size=200).filter(lambda t: t.strip() != ""))
        return {
            "level": "urgent",
            "urgency_reason": draw(sorted_sample("urgency_reasons")),
            "urgency_explanation": explanation,
            "information_access": access,
        }
    return {"level": "normal", "information_access": access}


@st.composite
def headers(draw: st.DrawFn) -> dict[str, Any]:
    origin, destination = draw(st.permutations(COUNTRIES))[:2]
    kind = draw(sorted_sample("message_types"))
    rule = IN_REPLY_TO[kind]
    message_id = draw(st.uuids())
    reply: UUID | None = draw(st.uuids().filter(lambda u: u != message_id))
    if rule == "forbidden" or (rule == "optional" and draw(st.booleans())):
        reply = None
    offset = timezone(timedelta(minutes=draw(st.integers(-12 * 60, 14 * 60))))
    created = draw(st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(offset)))
    legal_basis = draw(st.text(PROSE, min_size=1, max_size=200).filter(lambda t: t == t.strip() and t != ""))
    return {
        "message_id": message_id,
        "conversation_id": draw(st.uuids()),
        "in_reply_to": reply,
        "type": kind,
        "sender_agency": draw(agency_of(origin)),
        "origin_country": origin,
        "destination_country": destination,
        "destination_agency": draw(st.none() | agency_of(destination)),
        "category": draw(sorted_sample("categories")),
        "legal_basis": legal_basis,
        "classification": draw(sorted_sample("classifications")),
        "handling_codes": draw(st.lists(sorted_sample("handling_codes"), min_size=1, unique=True)),
        "evaluation": {
            "source_reliability": draw(sorted_sample("source_reliability")),
            "information_accuracy": draw(sorted_sample("information_accuracy")),
        },
        "priority": draw(priorities()),
        "created_at": created,
    }


@settings(max_examples=300, deadline=None, database=None)
@given(headers())
def test_any_valid_header_survives_the_wire_unchanged(data: dict[str, Any]) -> None:
    header = RoutingHeader.model_validate(data)
    dumped = header.model_dump(mode="json")
    again = RoutingHeader.model_validate(dumped)
    assert again == header
    assert again.model_dump(mode="json") == dumped
    assert RoutingHeader.model_validate_json(header.model_dump_json()) == header


@settings(max_examples=100, deadline=None, database=None)
@given(headers(), st.data())
def test_signing_view_ignores_recipients_and_survives_the_wire(
    data: dict[str, Any], more: st.DataObject
) -> None:
    header = RoutingHeader.model_validate(data)
    recipients = [
        {"header": {"alg": "ECDH-ES+A256KW", "kid": f"key-{i}"}, "encrypted_key": "AAAA"}
        for i in range(more.draw(st.integers(1, 16)))
    ]
    envelope = Envelope.model_validate(
        {
            "header": header.model_dump(mode="json", exclude_none=True),
            "payload": {
                "protected": "e30",
                "iv": "AAAA",
                "ciphertext": "AAAA",
                "tag": "AAAA",
                "recipients": recipients,
            },
            "signature": "e30..c2ln",
        }
    )
    view = envelope.signing_view()
    rewrapped = envelope.model_copy(
        update={"payload": envelope.payload.model_copy(update={"recipients": ()})}
    )
    assert rewrapped.signing_view() == view
    wire = Envelope.model_validate_json(envelope.model_dump_json(exclude_none=True))
    assert wire.signing_view() == view
    assert wire.model_dump(mode="json", exclude_none=True)["header"] == view["header"]
