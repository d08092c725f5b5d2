"""Own-initiative provision (Directive (EU) 2023/977 Art. 7): an officer sends information nobody asked for.

Agencies do this by posting a ``notification``. An officer does it here: the contact point itself is the
sender (``AL-SPOC``); the broker seals the text to the two contact points (and the addressed agency) and
signs the envelope with the contact point's key, then submits it like any other message — same policy
checks (legal basis, accreditation of the addressed agency), same outbound review, where another officer
must approve it (four eyes for its author).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.audit.service import Actor
from broker.crypto import seal, sign_envelope
from broker.db import utcnow
from broker.errors import NotPermitted
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from broker.messages.service import submit_from_contact_point
from broker.policy.service import CONDITIONS, cleared
from contact_points.review.scope import officer_contact_point
from schemas.envelope import RoutingHeader

LEGAL_BASIS = "Directive (EU) 2023/977 Art. 7 (own-initiative provision)"


def provide(
    session: Session,
    keys: DatabaseKeyStore,
    user: User,
    *,
    destination_country: str,
    category: str,
    classification: str,
    handling_codes: Sequence[str],
    information: str,
    conditions: str | None = None,
    destination_agency: str | None = None,
    source_reliability: str = "B",
    information_accuracy: str = "2",
    actor: Actor,
) -> Message:
    """Compose, seal, sign and submit an own-initiative provision of ``user``'s contact point."""
    cp = officer_contact_point(session, user)
    if not cleared(user.clearance, classification):
        raise NotPermitted(f"sending {classification} information needs clearance at or above it")
    codes = list(dict.fromkeys(handling_codes)) or ["H0"]
    if conditions and CONDITIONS not in codes:
        codes.append(CONDITIONS)
    header = RoutingHeader.model_validate(
        {
            "message_id": str(uuid.uuid4()),
            "conversation_id": str(uuid.uuid4()),
            "type": "notification",
            "sender_agency": cp.id,
            "origin_country": cp.country,
            "destination_country": destination_country,
            "destination_agency": destination_agency or None,
            "category": category,
            "legal_basis": LEGAL_BASIS,
            "classification": classification,
            "handling_codes": codes,
            "evaluation": {
                "source_reliability": source_reliability,
                "information_accuracy": information_accuracy,
            },
            "priority": {"level": "normal", "information_access": "indirect"},
            "created_at": utcnow(),
        }
    )
    document: dict[str, str] = {"information": information}
    if conditions:
        document["conditions"] = conditions
    readers = [cp.id, f"{destination_country}-SPOC", *([destination_agency] if destination_agency else [])]
    jwe = seal(
        json.dumps(document, ensure_ascii=False).encode(),
        readers=[keys.public_encryption_key(party) for party in readers],
    )
    header_json = header.model_dump(mode="json", exclude_none=True)
    raw = {
        "spoc": "1",
        "header": header_json,
        "payload": jwe,
        "signature": sign_envelope(header_json, jwe, key=keys.signing_key(cp.id)),
    }
    return submit_from_contact_point(
        session, keys, contact_point=cp, raw=raw, actor=actor, composed_by=user.id
    )
