"""What the message page shows: header, urgency, deadline and its history, the chain of custody with each
signature checked, the conversation, the payload if the officer is cleared (and acknowledged H3) — as
labelled fields when it is structured content (``schemas.content``), as text otherwise — the messages the
cross-check linked it to, the decisions open to this officer — only those — and the exchange's retention (when
its content is due for deletion, its legal holds, a form to set one). A message whose content was deleted under
the retention rules says so in place of the content.

A linked message is shown by its metadata always (it is in the officer's own contact point's case file,
which is what a link is made in); its content only by the same rule as opening it (``read_content``:
clearance, H3 acknowledgement, scope), and that read is audited like any other."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.audit.service import Actor
from broker.crosscheck.content import ContentRefused, ParsedPayload, parse_payload
from broker.crosscheck.service import basis_text, links_for
from broker.deps import Principal
from broker.directory.models import Agency
from broker.errors import NotFound
from broker.keys.service import DatabaseKeyStore
from broker.messages.clock import deadline_events
from broker.messages.dissemination import requests_for
from broker.messages.models import Message
from broker.policy.service import CONDITIONS, NO_ONWARD_DISSEMINATION, cleared, dissemination_granted
from broker.retention.exchanges import ExchangeView, RetentionScope, exchange
from contact_points.review.content import Content
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
        **_shown(content),
        "links": _links(session, keys, user, cp.id, message.id, actor=principal.actor(request)),
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
        "retention": _retention(session, request, user, message),
    }


def _retention(session: Session, request: Request, user: User, message: Message) -> ExchangeView | None:
    """The exchange's retention as the officer's contact point holds it; None while the message is not yet in
    its case file (forwarded to it, not yet received: the queue shows it, the case file does not hold it)."""
    try:
        return exchange(
            session, request.app.state.settings, RetentionScope.of(session, user), message.conversation_id
        )
    except NotFound:
        return None


def _shown(content: Content) -> dict[str, Any]:
    """``structured`` (labelled fields) or ``text`` for a readable payload, and ``content_problem`` when it
    claims the structured format and does not fit (it came from a node that did not check): shown as text."""
    if not content.readable or content.plaintext is None:
        return {"structured": None, "text": None, "content_problem": None}
    try:
        parsed = parse_payload(content.plaintext)
    except ContentRefused as exc:
        return {"structured": None, "text": readable_text(content.plaintext), "content_problem": exc.detail}
    if parsed.content is not None:
        return {"structured": parsed.content, "text": None, "content_problem": None}
    return {"structured": None, "text": readable_text(content.plaintext), "content_problem": None}


def _links(
    session: Session, keys: DatabaseKeyStore, user: User, cp_id: str, message_id: str, *, actor: Actor
) -> list[dict[str, Any]]:
    """The cross-check's links of the message: each other message's metadata, why they are linked, and its
    content if and only if the officer may read it (``read_content`` decides, and audits the read)."""
    shown = []
    for link in links_for(session, cp_id, message_id):
        other = session.get(Message, link.other_id)
        if other is None:
            continue
        try:
            content = read_content(session, keys, user, other.id, actor=actor)
        except NotFound:  # no longer in this officer's queues: not even its existence is shown
            continue
        parsed: ParsedPayload | None = None
        if content.readable and content.plaintext is not None:
            try:
                parsed = parse_payload(content.plaintext)
            except ContentRefused:
                parsed = ParsedPayload(None, content.plaintext.decode("utf-8", "replace"))
        shown.append(
            {
                "m": summary(other),
                "basis": basis_text(link.basis),
                "earlier": link.earlier,
                "linked_at": link.created_at,
                "readable": parsed is not None,
                "notice": content.notice,
                "structured": parsed.content if parsed else None,
                "text": parsed.text if parsed and parsed.content is None else None,
            }
        )
    return shown


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
