"""Access rules of the exchange: legal basis, accreditation, clearance and handling codes (DESIGN §5).

Each rule refuses with ``PolicyRefused`` and a sentence an agency integrator can act on; the
``reason`` slug in the problem body is stable for programs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from broker.directory.models import Agency, Agreement
from broker.directory.service import agreements_between
from broker.errors import PolicyRefused
from broker.messages.models import DisseminationRequest, Message
from schemas.codelists import classification_rank

NO_ONWARD_DISSEMINATION = "H2"
CONDITIONS = "H3"


def cleared(clearance: str, classification: str) -> bool:
    """True if ``clearance`` is at or above ``classification``."""
    return classification_rank(clearance) >= classification_rank(classification)


def check_accreditation(agency: Agency, classification: str, *, role: str) -> None:
    if not cleared(agency.accreditation, classification):
        raise PolicyRefused(
            f"{agency.id} is accredited up to {agency.accreditation} and cannot {role} {classification} messages",
            reason="accreditation",
        )


def legal_basis(
    session: Session, *, origin: str, destination: str, category: str, classification: str, at: datetime
) -> Agreement:
    """The active agreement covering this pair, category and classification, or a refusal naming what is missing."""
    agreements = agreements_between(session, origin, destination, at=at)
    if not agreements:
        raise PolicyRefused(
            f"no legal basis: there is no active agreement between {origin} and {destination}",
            reason="no-agreement",
        )
    covering = [a for a in agreements if category in a.categories]
    if not covering:
        raise PolicyRefused(
            f"no legal basis: no agreement between {origin} and {destination} covers the category {category}",
            reason="category-not-covered",
        )
    for agreement in covering:
        if cleared(agreement.max_classification, classification):
            return agreement
    ceiling = max((a.max_classification for a in covering), key=classification_rank)
    raise PolicyRefused(
        f"no legal basis: the agreement between {origin} and {destination} covers up to {ceiling}, "
        f"not {classification}",
        reason="classification-not-covered",
    )


def onward_source(session: Session, message: Message) -> Message | None:
    """The H2 message whose information ``message`` passes on to a third party, if it does.

    A message passes information on when its ``in_reply_to`` names an H2 message that was *delivered to*
    its sender and it goes to a country other than the provider's (an answer back to the provider is
    not onward dissemination).
    """
    if message.in_reply_to is None:
        return None
    source = session.get(Message, message.in_reply_to)
    if source is None or NO_ONWARD_DISSEMINATION not in source.handling_codes:
        return None
    if source.destination_agency != message.sender_agency:
        return None
    if message.destination_country == source.origin_country:
        return None
    return source


def dissemination_granted(
    session: Session, source: Message, *, by: str, country: str, agency: str | None
) -> bool:
    """True if the provider of ``source`` granted ``by`` to pass it on to ``country`` (and ``agency``)."""
    recipient: ColumnElement[bool] = DisseminationRequest.recipient_agency.is_(None)
    if agency is not None:
        recipient = or_(recipient, DisseminationRequest.recipient_agency == agency)
    found = session.scalar(
        select(DisseminationRequest.id)
        .where(
            DisseminationRequest.message_id == source.id,
            DisseminationRequest.requested_by == by,
            DisseminationRequest.recipient_country == country,
            DisseminationRequest.state == "granted",
            recipient,
        )
        .limit(1)
    )
    return found is not None


def check_onward_dissemination(session: Session, message: Message) -> None:
    """H2: a message that passes H2 information on is not forwarded until the provider granted it."""
    source = onward_source(session, message)
    if source is None:
        return
    if not dissemination_granted(
        session,
        source,
        by=message.sender_agency,
        country=message.destination_country,
        agency=message.destination_agency,
    ):
        raise PolicyRefused(
            f"H2: message {message.id} passes on information of {source.id}, which its provider "
            f"({source.origin_country}) has not allowed {message.sender_agency} to disseminate to "
            f"{message.destination_agency or message.destination_country}; the agency must ask with "
            f"POST /v1/messages/{source.id}/dissemination-requests and wait for the grant",
            reason="onward-dissemination-not-granted",
        )
