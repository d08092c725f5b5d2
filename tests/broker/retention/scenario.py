"""Exchanges that end, driven through the doors users use: agencies' signed HTTP calls, officers' API calls, and
what the workers do (the outbox drain, the cross-check), each in its own unit of work.

An exchange's end lies in the past only by its stored times: :func:`backdate` moves a conversation's times back,
so the retention rules run with the real clock and touch nothing else in the shared test database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from broker.crosscheck.service import run_batch
from broker.db import unit_of_work
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from broker.retention.service import sweep
from schemas.content import Content
from tests.broker.messages.spoc_builders import agency_http
from tests.factories import Region, agency_client, drain, officer_client

PERSON = {"given_name": "Dragoljub", "family_name": "Vranješević", "year_of_birth": 1974, "role": "suspect"}


def person_content(text: str, **more: Any) -> Content:
    return Content.model_validate({"format": "spoc-content/1", "text": text, "persons": [PERSON], **more})


@dataclass(frozen=True)
class Exchange:
    conversation_id: str
    request_id: str
    answer_id: str


def answered_exchange(
    client: TestClient,
    region: Region,
    *,
    sender: str = "AL-ASP",
    responder: str = "MK-MOI",
    payload: bytes | Content = b'{"q": "who rents the flat"}',
    answer: bytes | Content = b'{"a": "nobody"}',
    priority: dict[str, Any] | None = None,
    purpose: str | None = None,
) -> Exchange:
    """A request from ``sender`` to ``responder``'s country, routed, answered (H2 when ``purpose`` is given: the
    asker then asks to pass the answer on, with that purpose), the answer routed back and taken: ended."""
    origin, destination = sender[:2], responder[:2]
    with contextlib.ExitStack() as stack:
        asker = stack.enter_context(agency_client(region, sender, client))
        answerer = stack.enter_context(agency_client(region, responder, client))
        here = stack.enter_context(officer_client(region, f"{origin.lower()}-officer", client))
        there = stack.enter_context(officer_client(region, f"{destination.lower()}-officer", client))
        envelope = asker.build(
            payload=payload, destination_country=destination, category="drug-trafficking", priority=priority
        )
        request_id: str = asker.submit(envelope)["message_id"]
        here.decide(request_id, "approve")
        drain(client)
        there.decide(request_id, "route", route_to_agency=responder)
        drain(client)
        item = next(i for i in answerer.inbox_all() if i["message_id"] == request_id)
        answerer.ack(answerer.open(item))
        reply = answerer.build(
            payload=answer,
            destination_country=origin,
            destination_agency=sender,
            category="drug-trafficking",
            message_type="response",
            conversation_id=envelope["header"]["conversation_id"],
            in_reply_to=request_id,
            handling_codes=("H0", "H2") if purpose else ("H0",),
        )
        answer_id: str = answerer.submit(reply)["message_id"]
        there.decide(answer_id, "approve")
        drain(client)
        here.decide(answer_id, "route", route_to_agency=sender)
        drain(client)
        back = next(i for i in asker.inbox_all() if i["message_id"] == answer_id)
        asker.ack(asker.open(back))
        if purpose:
            with agency_http(client, region, sender) as http:
                asked = http.post(
                    f"/v1/messages/{answer_id}/dissemination-requests",
                    json={"recipient_country": "ME", "purpose": purpose},
                )
                assert asked.status_code == 201, asked.text
    return Exchange(envelope["header"]["conversation_id"], request_id, answer_id)


def cross_check(client: TestClient) -> None:
    """What the cross-check beat task does, until nothing is left to scan."""
    state = client.app.state  # type: ignore[attr-defined]
    while True:
        with unit_of_work(state.sessionmaker) as session:
            if not run_batch(session, DatabaseKeyStore(session, state.master_key), state.master_key).scanned:
                return


def backdate(client: TestClient, conversation_id: str, days: int) -> None:
    """Move the conversation's times ``days`` back: it ended (or last moved) that long ago."""
    shift = timedelta(days=days)
    with committed(client) as session:
        rows = session.execute(
            select(Message.id, Message.updated_at, Message.received_at).where(
                Message.conversation_id == conversation_id
            )
        ).all()
        for message_id, updated_at, received_at in rows:
            session.execute(
                update(Message)
                .where(Message.id == message_id)
                .values(updated_at=updated_at - shift, received_at=received_at - shift)
            )


def run_sweep(client: TestClient) -> list[str]:
    """One batch of the retention sweep (the beat task's body), with the app's settings and the real clock."""
    state = client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:
        return sweep(session, state.settings).conversations


@contextlib.contextmanager
def committed(client: TestClient) -> Iterator[Session]:
    """A unit of work on the app's database, committed at the end."""
    state = client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:
        yield session
