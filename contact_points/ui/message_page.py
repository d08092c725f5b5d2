"""What the message page shows: header, urgency, deadline and its history, the chain of custody with each
signature checked, the conversation, the payload if the officer is cleared (and acknowledged H3), and the
decisions open to this officer — only those."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.deps import Principal
from broker.directory.models import Agency
from broker.keys.service import DatabaseKeyStore
from broker.messages.clock import deadline_events
from broker.messages.dissemination import requests_for
from broker.messages.models import Message
from broker.policy.service import CONDITIONS, NO_ONWARD_DISSEMINATION, cleared, dissemination_granted
from contact_points.review.present import summary, usernames
from contact_points.review.scope import OFFICER_ROLES
from contact_points.review.service import (
    allowed_actions,
    approvals_of,
    h2_source,
    message_in_scope,
    read_content,
)
from contact_points.review.timeline import conversation, hops
from contact_points.ui.outcome import with_outcome
from schemas.codelists import codes


def message_context(
    session: Session, keys: DatabaseKeyStore, principal: Principal, request: Request, message_id: str
) -> dict[str, Any]:
    """Everything the message page shows; reading the content here is what audits the view."""
    user = principal.user
    message, cp, direction = message_in_scope(session, user, message_id)
    content = read_content(session, keys, user, message_id, actor=principal.actor(request))
    actions = allowed_actions(session, user, message, direction, keys=keys)
    if not content.readable:
        # Decide only on what you have read: uncleared officers and unacknowledged H3 get no decisions.
        actions = []
    header = message.envelope.get("header", {})
    source = h2_source(session, message)
    return {
        "m": with_outcome(summary(message, names=usernames(session, [message.assigned_to])), message),
        "header": header,
        "direction": direction,
        "cp": cp,
        "hops": hops(session, keys, message),
        "deadline_events": deadline_events(session, message.id),
        "conversation": conversation(session, message, cp),
        "content": content,
        "text": readable_text(content.plaintext) if content.plaintext else None,
        "actions": actions,
        "approvals": approvals_of(session, message),
        "h2_source": source,
        "h2_granted": source is not None
        and dissemination_granted(
            session,
            source,
            by=message.sender_agency,
            country=message.destination_country,
            agency=message.destination_agency,
        ),
        "dissemination": requests_for(session, message.id) if direction == "outbound" else [],
        "is_h2": NO_ONWARD_DISSEMINATION in message.handling_codes,
        "is_h3": CONDITIONS in message.handling_codes,
        "agencies": _agencies(session, cp.country, message.classification) if "route" in actions else [],
        "officers": _officers(session, cp.id, message) if "assign" in actions else [],
        "refusal_grounds": codes("refusal_grounds"),
    }


def _agencies(session: Session, country: str, classification: str) -> list[Agency]:
    rows = session.scalars(select(Agency).where(Agency.country == country, Agency.active).order_by(Agency.id))
    return [a for a in rows if cleared(a.accreditation, classification)]


def _officers(session: Session, cp_id: str, message: Message) -> list[User]:
    rows = session.scalars(
        select(User)
        .where(User.contact_point_id == cp_id, User.role.in_(OFFICER_ROLES), User.active)
        .order_by(User.username)
    )
    return [u for u in rows if cleared(u.clearance, message.classification)]


def readable_text(plaintext: bytes) -> str:
    """The payload as text; JSON pretty-printed so an officer can read it."""
    text = plaintext.decode("utf-8", "replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text
