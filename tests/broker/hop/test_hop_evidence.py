"""A hop's evidence as the receiving node checks it, against the regional directory only: a real message
approved at origin (four eyes) passes; a forged or missing custody step, a node speaking for another country,
a sender key the origin contact point did not vouch for, and an envelope changed on the way are refused with
their reasons. (Known-answer style, on the verification recipe; the HTTP door comes with the hop endpoint.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session

from broker.crypto import KeyPair, countersign
from broker.crypto.countersign import statement_of
from broker.errors import PolicyRefused
from broker.hop.evidence import Evidence, sender_key_statement, verify_evidence
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from broker.messages.service import custody_of
from schemas.region import RegionDirectory
from tests.broker.messages.spoc_builders import decide_as, submit_as
from tests.broker.region.region_builders import NodeKeys, draft
from tests.factories import Region


class Hop:
    """Everything the origin node sends with a forwarded message, and the directory both nodes hold."""

    def __init__(self, keys: DatabaseKeyStore, region: Region, message: Message, session: Session) -> None:
        al = NodeKeys("al", "AL", "AL-SPOC", "http://127.0.0.1:8001", signing=keys.signing_key("AL-SPOC"))
        xk = NodeKeys("xk", "XK", "XK-SPOC", "http://127.0.0.1:8002", signing=keys.signing_key("XK-SPOC"))
        self.al, self.xk = al, xk
        self.directory = RegionDirectory.model_validate(draft([al, xk]))
        self.envelope: dict[str, Any] = message.envelope
        self.custody = [s.signature for s in custody_of(session, message.id) if s.seq >= 1]
        agency_key = KeyPair.from_private_jwk(region.seed.agencies["AL-ASP"].signing_key).public
        statement = sender_key_statement(message_id=message.id, agency="AL-ASP", key=agency_key)
        self.sender_key = countersign(statement, key=keys.signing_key("AL-SPOC"))
        self.sender = self.directory.nodes[0]
        self.served_here = {"XK-SPOC"}

    def verify(self) -> Evidence:
        return verify_evidence(
            directory=self.directory,
            sender=self.sender,
            served_here=self.served_here,
            envelope=self.envelope,
            custody=self.custody,
            sender_key_token=self.sender_key,
        )


@pytest.fixture
def hop(db: Session, keys: DatabaseKeyStore, region: Region) -> Hop:
    message = submit_as(db, keys, region, "AL-ASP", destination_country="XK", classification="CONFIDENTIAL")
    decide_as(db, keys, "al-officer2", message.id, "approve")
    decide_as(db, keys, "al-supervisor", message.id, "approve")
    assert message.state == "forwarded"
    return Hop(keys, region, message, db)


def test_a_message_approved_at_origin_by_four_eyes_passes(hop: Hop) -> None:
    evidence = hop.verify()
    assert evidence.header.sender_agency == "AL-ASP"
    assert [s["decision"] for s in evidence.custody] == ["approved-first", "approved"]
    assert evidence.origin.id == "AL-SPOC"
    assert evidence.destination.id == "XK-SPOC"


def _forged_step(hop: Hop) -> None:
    """The last step re-signed by a key the directory does not list for AL-SPOC."""
    hop.custody[-1] = countersign(statement_of(hop.custody[-1]), key=KeyPair.generate("sig"))


def _missing_second_approver(hop: Hop) -> None:
    del hop.custody[0]


def _renumbered(hop: Hop) -> None:
    """Steps taken from another message: right signer, wrong message id."""
    statement = statement_of(hop.custody[-1])
    statement["message_id"] = "00000000-0000-4000-8000-000000000000"
    hop.custody[-1] = countersign(statement, key=hop.al.signing)


def _other_country(hop: Hop) -> None:
    hop.sender = hop.directory.nodes[1]  # the XK node claims to send AL's message


def _unvouched_key(hop: Hop) -> None:
    impostor = KeyPair.generate("sig").public
    statement = sender_key_statement(
        message_id=hop.envelope["header"]["message_id"], agency="AL-ASP", key=impostor
    )
    hop.sender_key = countersign(statement, key=KeyPair.generate("sig"))


def _changed_envelope(hop: Hop) -> None:
    hop.envelope = {**hop.envelope, "header": {**hop.envelope["header"], "category": "fraud"}}


def _elsewhere(hop: Hop) -> None:
    hop.served_here = {"MK-SPOC"}


HOSTILE: dict[str, tuple[Callable[[Hop], None], str]] = {
    "a custody step signed by a key not in the directory": (_forged_step, "custody"),
    "CONFIDENTIAL with one approver": (_missing_second_approver, "custody"),
    "a step of another message": (_renumbered, "custody"),
    "a node that does not serve the origin country": (_other_country, "wrong-country"),
    "a sender key the origin contact point did not vouch for": (_unvouched_key, "sender-key"),
    "an envelope changed after it was signed": (_changed_envelope, "originator-signature"),
    "a message for a contact point this node does not host": (_elsewhere, "not-served-here"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_evidence_is_refused_with_its_reason(case: str, hop: Hop) -> None:
    mutate, reason = HOSTILE[case]
    mutate(hop)
    with pytest.raises(PolicyRefused) as refused:
        hop.verify()
    assert refused.value.extra["reason"] == reason
