"""An agency client that loses the answer to a submission sends it again, and the broker keeps it once."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from broker.client.agency import AgencyClient
from broker.messages.models import Message
from tests.factories import Region


class LosesAnswers(httpx.BaseTransport):
    """Passes each request to the app, then, for the first ``lose`` POSTs, drops the answer on the floor as
    a connection closed mid-response would: the server did the work, the client never hears of it."""

    def __init__(self, inner: httpx.BaseTransport, *, lose: int) -> None:
        self.inner, self.lose, self.posts = inner, lose, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST":
            self.posts += 1
            if self.posts <= self.lose:
                response.read()
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return response


def _client(region: Region, client: TestClient, transport: httpx.BaseTransport) -> AgencyClient:
    return AgencyClient("http://testserver", region.seed.agencies["AL-ASP"], transport=transport)


def _stored(client: TestClient, message_id: str) -> int:
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        return session.scalar(select(func.count()).select_from(Message).where(Message.id == message_id)) or 0


def test_a_lost_answer_is_retried_and_the_message_is_stored_once(client: TestClient, region: Region) -> None:
    flaky = LosesAnswers(client._transport, lose=2)
    with _client(region, client, client._transport) as builder:
        envelope = builder.build(
            payload=b'{"q": "retry"}', destination_country="MK", category="fraud", classification="RESTRICTED"
        )
    with _client(region, client, flaky) as agency:
        receipt = agency.submit(envelope)
    assert flaky.posts == 3  # two answers lost, the third heard
    assert receipt["message_id"] == envelope["header"]["message_id"]
    assert _stored(client, receipt["message_id"]) == 1


def test_the_client_gives_up_after_its_attempts(client: TestClient, region: Region) -> None:
    flaky = LosesAnswers(client._transport, lose=10)
    with _client(region, client, client._transport) as builder:
        envelope = builder.build(
            payload=b'{"q": "gone"}', destination_country="MK", category="fraud", classification="RESTRICTED"
        )
    with _client(region, client, flaky) as agency, pytest.raises(httpx.RemoteProtocolError):
        agency.submit(envelope, attempts=2)
    assert flaky.posts == 2
    assert _stored(client, envelope["header"]["message_id"]) == 1  # accepted the first time, kept once
