"""The HTTP API bodies: decisions carry exactly what their action needs; the rest is form."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.api import (
    CustodyStep,
    Decision,
    InboxItem,
    LoginRequest,
    LoginResult,
    MessageStatus,
    Problem,
    SubmitReceipt,
)

NOW = datetime(2025, 1, 31, 9, 30, tzinfo=UTC)
MESSAGE_ID = "6f1c2a7e-3b5d-4c8e-9f10-2a3b4c5d6e7f"


@pytest.mark.parametrize(
    "body",
    [
        {"action": "approve"},
        {"action": "accept"},
        {"action": "reject", "reason": "No legal basis is given for the category."},
        {"action": "return", "reason": "Please state the vehicle's registration number."},
        {"action": "refuse", "refusal_ground": "minor-offence"},
        {"action": "refuse", "refusal_ground": "not-available", "reason": "No record in the register."},
        {"action": "route", "route_to_agency": "RS-MUP"},
        {"action": "approve", "reason": "Checked against the agreement."},
    ],
)
def test_decisions_accepted(body: dict[str, Any]) -> None:
    assert Decision.model_validate(body).action == body["action"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "reject"}, "'reject' needs a reason"),
        ({"action": "return", "reason": "  "}, "'return' needs a reason"),
        ({"action": "refuse"}, "needs a refusal_ground"),
        ({"action": "refuse", "refusal_ground": "too-busy"}, "not a known refusal ground"),
        ({"action": "route"}, "needs route_to_agency"),
        ({"action": "route", "route_to_agency": "rs-mup"}, "pattern"),
        ({"action": "accept", "refusal_ground": "minor-offence"}, "belongs to 'refuse'"),
        ({"action": "approve", "route_to_agency": "RS-MUP"}, "belongs to 'route'"),
        ({"action": "escalate"}, "action"),
        ({"action": "approve", "comment": "x"}, "Extra inputs"),
    ],
)
def test_decisions_rejected(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Decision.model_validate(body)


def test_problem_defaults_and_errors() -> None:
    problem = Problem(
        title="Invalid envelope", status=422, errors=[{"loc": ["header", "category"], "msg": "x"}]
    )
    assert problem.type == "about:blank"
    assert problem.model_dump(mode="json", exclude_none=True) == {
        "type": "about:blank",
        "title": "Invalid envelope",
        "status": 422,
        "errors": [{"loc": ["header", "category"], "msg": "x"}],
    }
    with pytest.raises(ValidationError, match="Extra inputs"):
        Problem.model_validate({"title": "x", "status": 400, "trace": "..."})
    with pytest.raises(ValidationError):
        Problem(title="x", status=42)


def test_status_models_accept_database_values() -> None:
    """The broker builds these from ORM rows: ids as lower-case strings, aware UTC datetimes."""
    receipt = SubmitReceipt(message_id=MESSAGE_ID, state="origin_review", deadline_at=None, received_at=NOW)
    assert receipt.model_dump(mode="json")["received_at"] == "2025-01-31T09:30:00Z"
    status = MessageStatus(
        message_id=MESSAGE_ID,
        conversation_id=MESSAGE_ID,
        type="request",
        state="forwarded",
        origin_country="AL",
        destination_country="RS",
        destination_agency=None,
        classification="CONFIDENTIAL",
        category="terrorism",
        priority_level="urgent",
        deadline_at=NOW,
        updated_at=NOW,
    )
    assert status.priority_level == "urgent"
    with pytest.raises(ValidationError, match="timezone"):
        SubmitReceipt(message_id=MESSAGE_ID, state="x", received_at=datetime(2025, 1, 31))


def test_inbox_item_carries_envelope_and_custody(envelope_data: dict[str, Any]) -> None:
    step = {"party": "AL-ASP", "decision": "submitted", "at": NOW, "signature": envelope_data["signature"]}
    countersigned = {
        **step,
        "party": "AL-SPOC",
        "decision": "approved",
        "signature": "eyJhIjoiYiJ9.eyJjIjoxfQ.c2ln",
    }
    item = InboxItem.model_validate(
        {
            "message_id": MESSAGE_ID,
            "delivered_at": NOW,
            "envelope": envelope_data,
            "custody": [step, countersigned],
        }
    )
    assert [s.party for s in item.custody] == ["AL-ASP", "AL-SPOC"]
    with pytest.raises(ValidationError, match="pattern"):
        CustodyStep.model_validate({**step, "signature": "not-a-jws"})


def test_login_secrets_stay_out_of_repr() -> None:
    request = LoginRequest(username="officer.al", password="correct horse battery staple")
    assert "correct horse" not in repr(request)
    assert request.password == "correct horse battery staple"
    result = LoginResult(token="tok-123", expires_at=NOW, csrf_token="csrf-456")
    assert "tok-123" not in repr(result)
    assert "csrf-456" not in repr(result)
    assert result.model_dump(mode="json")["token"] == "tok-123"
    with pytest.raises(ValidationError):
        LoginRequest(username="", password="x")
