"""The receipt an agency signs when it acknowledges a message: its ``received_at`` must be near the time of
the acknowledgement, and the sender then sees who received the message, when, and over which digest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from broker.client.agency import ClientError
from broker.crypto import KeyPair, sign_receipt
from tests.factories import Region, agency_client, deliver_request


def _receipt(region: Region, agency: str, message_id: str, digest: str, received_at: datetime) -> str:
    statement = {
        "type": "receipt",
        "message_id": message_id,
        "digest": digest,
        "agency": agency,
        "received_at": received_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    return sign_receipt(statement, key=KeyPair.from_private_jwk(region.seed.agencies[agency].signing_key))


@pytest.mark.parametrize("offset", [timedelta(days=-1), timedelta(hours=1)], ids=["yesterday", "next-hour"])
def test_a_receipt_dated_far_from_now_is_refused(
    client: TestClient, region: Region, offset: timedelta
) -> None:
    message_id, item = deliver_request(client, region, sender="ME-UP", target="HR-POL", category="fraud")
    receiver = agency_client(region, "HR-POL", client)
    opened = receiver.open(item)
    receipt = _receipt(region, "HR-POL", message_id, opened.digest, datetime.now(UTC) + offset)
    with pytest.raises(ClientError) as refused:
        receiver.ack(opened, receipt=receipt)
    assert refused.value.status == 400
    assert refused.value.problem["reason"] == "received-at"
    assert "received at" in refused.value.problem["detail"]
    assert any(i["message_id"] == message_id for i in receiver.inbox_all())  # still to acknowledge
    assert agency_client(region, "ME-UP", client).status(message_id)["receipts"] == []


def test_the_sender_sees_who_received_it_when_and_over_what(client: TestClient, region: Region) -> None:
    message_id, item = deliver_request(client, region, sender="ME-UP", target="HR-POL", category="fraud")
    sender = agency_client(region, "ME-UP", client)
    before = sender.status(message_id)
    assert before["state"] == "delivered"
    assert before["receipts"] == []
    receiver = agency_client(region, "HR-POL", client)
    opened = receiver.open(item)
    received_at = datetime.now(UTC) - timedelta(seconds=30)
    receiver.ack(opened, receipt=_receipt(region, "HR-POL", message_id, opened.digest, received_at))
    status = sender.status(message_id)
    (shown,) = status["receipts"]
    assert shown["agency"] == "HR-POL"
    assert datetime.fromisoformat(shown["received_at"]) == received_at.replace(
        microsecond=received_at.microsecond
    )
    assert shown["digest"] == opened.digest
    assert shown["digest"].startswith("sha-256:")
    (statement,) = sender.verify_receipts(status)  # and the signed statement says the same
    assert statement["digest"] == shown["digest"]
