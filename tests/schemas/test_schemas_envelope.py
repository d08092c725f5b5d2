"""The routing header, the JWE payload and the envelope: what they accept, refuse and sign."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from schemas.envelope import (
    MAX_CIPHERTEXT_CHARS,
    MAX_RECIPIENTS,
    Envelope,
    JWEGeneral,
    Priority,
    RoutingHeader,
    signing_view,
)

REQUEST_ID = "6f1c2a7e-3b5d-4c8e-9f10-2a3b4c5d6e7f"
URGENT = {
    "level": "urgent",
    "urgency_reason": "threat-to-life-or-physical-integrity",
    "urgency_explanation": "A witness has been threatened and is due to travel on Friday.",
    "information_access": "direct",
}


def answer(header: dict[str, Any], kind: str) -> dict[str, Any]:
    """Turn the fixture's AL→RS request into an RS→AL answer of type ``kind``."""
    header.update(
        message_id="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        type=kind,
        in_reply_to=REQUEST_ID,
        sender_agency="RS-MUP",
        origin_country="RS",
        destination_country="AL",
        destination_agency="AL-ASP",
    )
    return header


# --- the routing header --------------------------------------------------------------------------------


def test_valid_header_round_trips(header_data: dict[str, Any]) -> None:
    header = RoutingHeader.model_validate(header_data)
    assert header.message_id == UUID(REQUEST_ID)
    assert header.handling_codes == ("H0", "H2")
    assert header.created_at == datetime(2025, 1, 31, 9, 30, tzinfo=UTC)
    dumped = header.model_dump(mode="json", exclude_none=True)
    assert dumped == header_data
    assert RoutingHeader.model_validate_json(json.dumps(dumped)) == header


def test_header_is_frozen(header_data: dict[str, Any]) -> None:
    header = RoutingHeader.model_validate(header_data)
    with pytest.raises(ValidationError, match="frozen"):
        header.category = "terrorism"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"created_at": "2025-01-31T09:30:00"}, "UTC offset"),
        ({"created_at": datetime(2025, 1, 31, 9, 30)}, "timezone"),
        ({"created_at": 1738315800}, "RFC 3339"),
        ({"created_at": "2025-01-31 09:30:00Z"}, "RFC 3339"),
        ({"created_at": "2025-01-31T09:30Z"}, "RFC 3339"),
        ({"created_at": datetime(2025, 1, 31, tzinfo=timezone(timedelta(seconds=30)))}, "whole minutes"),
        ({"message_id": "6f1c2a7e3b5d4c8e9f102a3b4c5d6e7f"}, "8-4-4-4-12"),
        ({"message_id": "{6f1c2a7e-3b5d-4c8e-9f10-2a3b4c5d6e7f}"}, "8-4-4-4-12"),
        ({"sender_agency": "RS-MUP"}, "not an agency of AL"),
        ({"sender_agency": "al-asp"}, "pattern"),
        ({"sender_agency": "AL-A"}, "pattern"),
        ({"destination_agency": "BA-SIPA"}, "not an agency of RS"),
        ({"destination_country": "AL", "destination_agency": None}, "must differ"),
        ({"origin_country": "FR", "sender_agency": "FR-PN"}, "not a known country"),
        ({"priority": {"level": "urgent", "urgency_explanation": "soon"}}, "needs an urgency_reason"),
        ({"priority": {**URGENT, "urgency_explanation": None}}, "urgency_explanation"),
        ({"priority": {**URGENT, "urgency_explanation": "   "}}, "urgency_explanation"),
        (
            {"priority": {"level": "normal", "urgency_reason": "decision-depriving-liberty"}},
            "normal-priority",
        ),
        ({"priority": {"level": "normal", "urgency_explanation": "because"}}, "normal-priority"),
        ({"priority": {**URGENT, "urgency_reason": "boredom"}}, "not a known urgency reason"),
        ({"priority": {**URGENT, "urgency_explanation": "x" * 2001}}, "2000"),
        ({"in_reply_to": "0b7d9e21-5c4a-4f3b-8e2d-1a2b3c4d5e6f"}, "request opens an exchange"),
        ({"category": "jaywalking"}, "not a known crime category"),
        ({"category": "Drug-Trafficking"}, "not a known crime category"),
        ({"classification": "TOP SECRET"}, "not a known classification"),
        ({"handling_codes": ["H0", "H0"]}, "must not repeat"),
        ({"handling_codes": []}, "at least 1"),
        ({"handling_codes": ["H9"]}, "not a known handling code"),
        ({"evaluation": {"source_reliability": "D", "information_accuracy": "1"}}, "source reliability"),
        ({"evaluation": {"source_reliability": "A", "information_accuracy": 1}}, "string"),
        ({"legal_basis": ""}, "at least 1"),
        ({"legal_basis": " Agreement"}, "pattern"),
        ({"legal_basis": "Agreement\nArt. 5"}, "pattern"),
        ({"legal_basis": "x" * 201}, "200"),
        ({"type": "gossip"}, "not a known message type"),
        ({"surprise": True}, "Extra inputs are not permitted"),
        ({"evaluation": {"source_reliability": "A", "information_accuracy": "1", "x": 1}}, "Extra inputs"),
    ],
)
def test_header_rejects(header_data: dict[str, Any], changes: dict[str, Any], message: str) -> None:
    header_data.update(changes)
    with pytest.raises(ValidationError, match=message):
        RoutingHeader.model_validate(header_data)


@pytest.mark.parametrize("kind", ["response", "clarification", "acknowledgement"])
def test_answers_need_in_reply_to(header_data: dict[str, Any], kind: str) -> None:
    data = answer(header_data, kind)
    assert RoutingHeader.model_validate(data).in_reply_to == UUID(REQUEST_ID)
    del data["in_reply_to"]
    with pytest.raises(ValidationError, match="must name the message it answers"):
        RoutingHeader.model_validate(data)


def test_a_message_cannot_answer_itself(header_data: dict[str, Any]) -> None:
    data = answer(header_data, "response")
    data["in_reply_to"] = data["message_id"]
    with pytest.raises(ValidationError, match="cannot reply to itself"):
        RoutingHeader.model_validate(data)


@pytest.mark.parametrize("in_reply_to", [None, REQUEST_ID])
def test_notification_may_or_may_not_reply(header_data: dict[str, Any], in_reply_to: str | None) -> None:
    header_data.update(
        type="notification", in_reply_to=in_reply_to, message_id="1e2d3c4b-5a69-4788-9a6b-5c4d3e2f1a0b"
    )
    assert RoutingHeader.model_validate(header_data).in_reply_to == (in_reply_to and UUID(in_reply_to))


def test_urgent_with_reason_and_explanation_is_accepted(header_data: dict[str, Any]) -> None:
    header_data["priority"] = URGENT
    priority = RoutingHeader.model_validate(header_data).priority
    assert (priority.level, priority.information_access) == ("urgent", "direct")


def test_information_access_defaults_to_indirect() -> None:
    assert Priority(level="normal").information_access == "indirect"


def test_destination_agency_is_optional(header_data: dict[str, Any]) -> None:
    del header_data["destination_agency"]
    assert RoutingHeader.model_validate(header_data).destination_agency is None


def test_standard_spellings_from_other_languages_are_accepted(header_data: dict[str, Any]) -> None:
    """JavaScript writes milliseconds, Python ``+00:00``, some libraries upper-case UUIDs: all RFC-valid."""
    header_data.update(created_at="2025-01-31T09:30:00.000Z", message_id=REQUEST_ID.upper())
    header = RoutingHeader.model_validate(header_data)
    assert header.message_id == UUID(REQUEST_ID)
    header_data["created_at"] = "2025-01-31T10:30:00+01:00"
    assert RoutingHeader.model_validate(header_data).created_at == header.created_at
    # a model always writes one spelling
    assert header.model_dump(mode="json")["message_id"] == REQUEST_ID
    assert header.model_dump(mode="json")["created_at"] == "2025-01-31T09:30:00Z"


# --- the JWE payload -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda j: j.update(ciphertext="not base64url!"), "pattern"),
        (lambda j: j.update(ciphertext="abc="), "pattern"),
        (lambda j: j.update(iv="a+b/"), "pattern"),
        (lambda j: j.update(protected=""), "at least 1"),
        (lambda j: j.update(aad="with space"), "pattern"),
        (lambda j: j.update(recipients=[]), "at least 1"),
        (lambda j: j.update(recipients=j["recipients"] * (MAX_RECIPIENTS // 2 + 1)), "at most 16"),
        (lambda j: j["recipients"][0]["header"].pop("kid"), "'kid'"),
        (lambda j: j["recipients"][0]["header"].update(alg=""), "'alg'"),
        (lambda j: j["recipients"][0].update(encrypted_key="%%"), "pattern"),
        (lambda j: j["recipients"][0].update(extra="x"), "Extra inputs"),
        (lambda j: j.update(header={"alg": "dir"}), "Extra inputs"),
        (lambda j: j.update(unprotected={"kid": "shared"}), "appear in both"),
    ],
)
def test_jwe_rejects(jwe_data: dict[str, Any], mutate: Any, message: str) -> None:
    mutate(jwe_data)
    with pytest.raises(ValidationError, match=message):
        JWEGeneral.model_validate(jwe_data)


def test_jwe_ciphertext_is_bounded(jwe_data: dict[str, Any]) -> None:
    jwe_data["ciphertext"] = "A" * MAX_CIPHERTEXT_CHARS
    JWEGeneral.model_validate(jwe_data)
    jwe_data["ciphertext"] += "A"
    with pytest.raises(ValidationError, match="at most"):
        JWEGeneral.model_validate(jwe_data)


def test_jwe_accepts_shared_unprotected_header_and_aad(jwe_data: dict[str, Any]) -> None:
    jwe_data.update(unprotected={"jku": "https://spoc.example/jwks"}, aad="Y2FzZS0xMjM")
    payload = JWEGeneral.model_validate(jwe_data)
    assert payload.aad == "Y2FzZS0xMjM"
    assert len(payload.recipients) == 2


# --- the envelope and what it signs --------------------------------------------------------------------


def test_envelope_round_trips(envelope_data: dict[str, Any]) -> None:
    envelope = Envelope.model_validate(envelope_data)
    assert envelope.spoc == "1"
    wire = envelope.model_dump(mode="json", exclude_none=True)
    assert wire == envelope_data
    assert Envelope.model_validate_json(envelope.model_dump_json(exclude_none=True)) == envelope


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"spoc": "2"}, "'1'"),
        ({"signature": "eyJhbGciOiJFZERTQSJ9.cGF5bG9hZA.c2ln"}, "pattern"),  # attached payload
        ({"signature": "eyJhbGciOiJFZERTQSJ9..c2ln..x"}, "pattern"),
        ({"signature": "..c2ln"}, "pattern"),
        ({"signature": ""}, "pattern"),
        ({"countersignature": "x"}, "Extra inputs"),
    ],
)
def test_envelope_rejects(envelope_data: dict[str, Any], changes: dict[str, Any], message: str) -> None:
    envelope_data.update(changes)
    with pytest.raises(ValidationError, match=message):
        Envelope.model_validate(envelope_data)


def test_signing_view_is_header_plus_content_without_recipients(envelope_data: dict[str, Any]) -> None:
    envelope = Envelope.model_validate(envelope_data)
    view = envelope.signing_view()
    assert set(view) == {"header", "payload"}
    assert view["header"] == envelope_data["header"]
    assert view["payload"] == {
        k: envelope_data["payload"][k] for k in ("protected", "iv", "ciphertext", "tag")
    }
    assert view == signing_view(envelope.header, envelope.payload)
    json.dumps(view)  # plain JSON values only, ready for RFC 8785


def test_signing_view_survives_rewrapping_to_another_reader(envelope_data: dict[str, Any]) -> None:
    before = Envelope.model_validate(envelope_data).signing_view()
    extra = {"header": {"alg": "ECDH-ES+A256KW", "kid": "agency-key"}, "encrypted_key": "AAAA"}
    envelope_data["payload"]["recipients"].append(extra)
    envelope_data["payload"]["recipients"].reverse()
    envelope_data["payload"]["unprotected"] = {"cty": "application/json"}
    assert Envelope.model_validate(envelope_data).signing_view() == before


def test_signing_view_covers_everything_else(envelope_data: dict[str, Any]) -> None:
    before = Envelope.model_validate(envelope_data).signing_view()
    for path, value in [
        (("header", "classification"), "SECRET"),
        (("header", "handling_codes"), ["H0"]),
        (("payload", "ciphertext"), "dGFtcGVyZWQ"),
        (("payload", "tag"), "AAAA"),
        (("payload", "aad"), "YWFk"),
    ]:
        changed = json.loads(json.dumps(envelope_data))
        changed[path[0]][path[1]] = value
        assert Envelope.model_validate(changed).signing_view() != before, path


def test_signing_view_treats_absent_and_null_alike(envelope_data: dict[str, Any]) -> None:
    del envelope_data["header"]["destination_agency"]
    absent = Envelope.model_validate(envelope_data).signing_view()
    envelope_data["header"].update(destination_agency=None, in_reply_to=None)
    explicit = Envelope.model_validate(envelope_data).signing_view()
    assert absent == explicit
    assert "in_reply_to" not in explicit["header"]  # type: ignore[operator]
    assert "aad" not in explicit["payload"]  # type: ignore[operator]
