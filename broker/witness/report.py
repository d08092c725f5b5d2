"""Which other countries' nodes cosigned this node's latest checkpoint, and what the witnesses alerted on.

What ``spoc audit peers`` prints and the regional demo checks at its end: every cosignature is re-verified
here against the witness key the *current* directory lists for its node (not trusted because it was stored),
every peer the directory lists and that did not cosign is named, and every ``peer-*`` alert this node's
witness raised about another node's log is listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit import checkpoints as cps
from broker.audit.models import AuditAlert
from broker.crypto.note import NoteKey, split_note
from broker.errors import SpocError, VerificationError
from broker.hop.service import live_directory, this_node

__all__ = ["PeerReport", "peer_report"]


@dataclass(frozen=True)
class PeerReport:
    """The verdict: ``ok`` when every peer node cosigned the latest checkpoint and no peer alert is open."""

    node: str
    origin: str
    size: int
    cosigned: dict[str, list[str]] = field(default_factory=dict)  # node -> countries it serves
    missing: dict[str, list[str]] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.missing and not self.alerts

    def line(self) -> str:
        if self.problem is not None:
            return f"peer witnesses FAILED: {self.problem}"

        def names(nodes: dict[str, list[str]]) -> str:
            return ", ".join(f"{n} ({'+'.join(c)})" for n, c in sorted(nodes.items())) or "none"

        verdict = "verified" if self.ok else "FAILED"
        text = (
            f"peer witnesses {verdict}: checkpoint {self.origin} size {self.size} of node {self.node} "
            f"cosigned by {names(self.cosigned)}"
        )
        if self.missing:
            text += f"; not cosigned by {names(self.missing)}"
        if self.alerts:
            text += f"; {len(self.alerts)} alert(s) on peers' logs: {self.alerts[0]}"
        return text


def peer_report(session: Session) -> PeerReport:
    """Check the latest checkpoint's peer cosignatures against the current directory (see the module doc)."""
    try:
        directory = live_directory(session).directory
        me = this_node(session, directory)
    except SpocError as exc:
        return PeerReport("", "", 0, problem=exc.detail)
    alerts = [
        f"{a.kind} by {a.reporter}: {a.detail}"
        for a in session.scalars(
            select(AuditAlert).where(AuditAlert.kind.like("peer-%")).order_by(AuditAlert.id)
        )
    ]
    latest = cps.latest(session)
    if latest is None:
        return PeerReport(me.node_id, "", 0, alerts=alerts, problem="no checkpoint has been signed yet")
    text, signatures = split_note(cps.full_note(session, latest))
    present = {(s.name, s.key_id): s for s in signatures}
    cosigned: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    for node in directory.nodes:
        if node.node_id == me.node_id:
            continue
        key = NoteKey.from_vkey(node.witness_key)
        countries = sorted(node.countries)
        sig = present.get((key.name, key.key_id))
        try:
            if sig is None:
                raise VerificationError("absent")
            key.verify(text, sig.blob)
        except VerificationError:
            missing[node.node_id] = countries
            continue
        cosigned[node.node_id] = countries
    return PeerReport(me.node_id, latest.origin, latest.size, cosigned, missing, alerts)
