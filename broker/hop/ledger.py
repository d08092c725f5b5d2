"""A node's ledger of hops with one peer, and the comparison of two ledgers (reconciliation, DESIGN §8).

The hop is recorded on both sides with the same digest: the sender keeps a ``hops`` row (``out``) with the
receiver's signed transport receipt and writes ``hop:sent``; the receiver keeps its row (``in``) with the
receipt it answered and writes ``hop:received``. A **ledger** is one node's account of its hops with one
peer over a window of time, made so that a third party can check it without trusting the node:

* each row is generic — ``kind``, ``id``, ``direction``, ``digest``, ``at``, ``status``, ``receipt`` —
  so that other things crossing the hop (events: refusals, notices) reconcile with the same code;
* each settled row carries the audit entry that logged it (the document exactly as hashed), its position
  in the node's log and an RFC 9162 inclusion proof against the signed checkpoint the ledger carries,
  checked with the log key the regional directory lists for that node: a node cannot show a ledger that
  its own log does not back, and its log is watched by its peers;
* the ledger carries the governance-signed directory the node had, so an auditor can check the receipts
  offline with the anchor alone.

**Comparing** A's ledger with B's pairs A's ``out`` rows with B's ``in`` rows (and B's ``out`` with A's
``in``) by ``(kind, id)`` and lists: sent by one and not received by the other (a receipted hop the
receiver does not show: it lost or hid it), received by one and not sent by the other, digest mismatches,
receipts that do not verify under the receiver's transport keys or name another hop, and rows whose audit
entry is missing, differs or is not in the signed log. Hops still in flight (no receipt yet, or
dead-lettered) are listed apart: both nodes agree they did not (yet) cross. Rows are judged when they fall in
the period asked for; their counterparts are looked for in the whole of the other ledger, which the caller
fetches with a margin around the period, so a hop sent at 09:59:59.9 and received at 10:00:00.1 is not a
false alarm at the boundary.

This module has no HTTP; building a ledger reads the database, comparing does not (an offline auditor
compares two exported ledgers with ``spoc region reconcile --ledger a.json --ledger b.json``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import case, literal, select
from sqlalchemy.orm import Session

from broker.audit import checkpoints as cps
from broker.audit import merkle
from broker.audit.models import AuditEntry, AuditLeaf
from broker.audit.service import entry_document, sequence_all
from broker.audit.tree import StoredTree
from broker.crypto import NoteKey, PublicKey
from broker.crypto.canonical import canonical
from broker.crypto.countersign import verify_transport_receipt
from broker.errors import InvalidInput, NotFound, SpocError, VerificationError
from broker.hop.models import Hop
from broker.keys.service import DatabaseKeyStore
from schemas.region import DirectoryNode, RegionDirectory

__all__ = [
    "FORMAT",
    "LOGGED_AS",
    "MAX_ROWS",
    "Keyring",
    "build_ledger",
    "compare",
    "parse_time",
    "stamp",
    "verified_directory",
]

FORMAT: Final = "spoc-hop-ledger/v1"
MAX_ROWS: Final = 50_000
"""A ledger larger than this is refused (InvalidInput): ask for a shorter period."""

LOGGED_AS: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("message", "out"): frozenset({"hop:sent"}),
    ("message", "in"): frozenset({"hop:received"}),
    ("event", "out"): frozenset({"hop:sent"}),
    ("event", "in"): frozenset({"hop:received"}),
}
"""The audit actions that log a settled row of each (kind, direction); a new kind adds its pair here."""


def stamp(at: datetime) -> str:
    """RFC 3339 UTC with microseconds and ``Z``: the one spelling of times in ledgers (and in query strings,
    where a ``+`` would need escaping)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _status(hop: Hop) -> str:
    if hop.direction == "in" or hop.receipt is not None:
        return "receipted"
    return "dead" if hop.dead_at is not None else "pending"


def build_ledger(
    session: Session,
    keys: DatabaseKeyStore,
    *,
    signed_directory: Mapping[str, Any],
    me: DirectoryNode,
    peer: DirectoryNode,
    since: datetime,
    until: datetime,
    now: datetime,
) -> dict[str, Any]:
    """This node's ledger with ``peer`` for hops at ``since`` <= at < ``until`` (see the module docstring).

    Sequences pending audit entries and, if the latest signed checkpoint does not cover the log, signs one,
    so that every settled row comes with its inclusion proof (what the beat would do within 30 s anyway).
    Flushes; the caller commits."""
    if since >= until:
        raise InvalidInput("the period is empty: since must be before until")
    hops = session.execute(
        select(case((Hop.event_id.is_(None), literal("message")), else_=literal("event")), Hop)
        .where(Hop.peer_node == peer.node_id, Hop.at >= since, Hop.at < until)
        .order_by(Hop.at, Hop.id)
        .limit(MAX_ROWS + 1)
    ).all()
    if len(hops) > MAX_ROWS:
        raise InvalidInput(
            f"more than {MAX_ROWS} hops with {peer.node_id} in this period; ask for a shorter one"
        )
    sequence_all(session)
    issued = cps.issue(session, keys)
    checkpoint = issued.checkpoint
    logged = _logged(session, [(kind, hop) for kind, hop in hops])
    size = checkpoint.size if checkpoint is not None else 0
    proofs = StoredTree(session).inclusion_proofs(
        sorted({seq for _, seq in logged.values() if seq is not None and seq < size}), size
    )
    rows = []
    for kind, hop in hops:
        row: dict[str, Any] = {
            "kind": kind,
            "id": _ident(kind, hop),
            "message_id": hop.message_id,
            "direction": hop.direction,
            "digest": hop.digest,
            "at": stamp(hop.at),
            "status": _status(hop),
            "receipt": hop.receipt,
            "log_index": None,
            "entry": None,
            "inclusion_proof": None,
        }
        found = logged.get((kind, _ident(kind, hop), hop.direction))
        if found is not None:
            entry, seq = found
            row["log_index"], row["entry"] = seq, entry_document(entry)
            if seq is not None and seq in proofs:
                row["inclusion_proof"] = [h.hex() for h in proofs[seq][1]]
        rows.append(row)
    return {
        "format": FORMAT,
        "node": me.node_id,
        "peer": peer.node_id,
        "since": stamp(since),
        "until": stamp(until),
        "generated_at": stamp(now),
        "directory": dict(signed_directory),
        "checkpoint": cps.full_note(session, checkpoint) if checkpoint is not None else None,
        "rows": rows,
    }


def _ident(kind: str, hop: Hop) -> str:
    """A row's id: the message id of a message hop, the event id of an event hop (events about one message
    share its message id, so the event id is what tells them apart, on both nodes)."""
    return hop.event_id if kind == "event" and hop.event_id is not None else hop.message_id


def _entry_ident(kind: str, entry_object: str, details: Mapping[str, Any]) -> str | None:
    """The row id an audit entry logs for ``kind``: an event's entry is about its message (``object_id``)
    and names the event in ``details.event_id``; a message's entry names no event."""
    event_id = details.get("event_id")
    if kind == "event":
        return event_id if isinstance(event_id, str) else None
    return entry_object if event_id is None else None


def _logged(
    session: Session, hops: Sequence[tuple[str, Hop]]
) -> dict[tuple[str, str, str], tuple[AuditEntry, int | None]]:
    """The audit entry (and its log position) logging each settled row: one query for the whole ledger."""
    settled = [(kind, h) for kind, h in hops if _status(h) == "receipted"]
    wanted = {(kind, _ident(kind, h), h.direction): h.digest for kind, h in settled}
    if not wanted:
        return {}
    actions = {a for kind, _, d in wanted for a in LOGGED_AS.get((kind, d), frozenset())}
    ids = sorted({h.message_id for _, h in settled})  # audit entries are filed under the message
    found: dict[tuple[str, str, str], tuple[AuditEntry, int | None]] = {}
    for start in range(0, len(ids), 1000):
        rows = session.execute(
            select(AuditEntry, AuditLeaf.seq)
            .outerjoin(AuditLeaf, AuditLeaf.entry_id == AuditEntry.id)
            .where(
                AuditEntry.action.in_(sorted(actions)), AuditEntry.object_id.in_(ids[start : start + 1000])
            )
            .order_by(AuditEntry.id)
        ).all()
        for entry, seq in rows:
            for (kind, direction), names in LOGGED_AS.items():
                ident = _entry_ident(kind, str(entry.object_id), entry.details or {})
                if ident is None:
                    continue
                key = (kind, ident, direction)
                if (
                    entry.action in names
                    and key in wanted
                    and key not in found
                    and (entry.details or {}).get("digest") == wanted[key]
                ):
                    found[key] = (entry, seq)
    return found


# --- comparing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keyring:
    """What a comparison trusts, all from governance-signed directories: each node's transport keys (they
    sign receipts) and log key (it signs checkpoints). Several directories may contribute (keys rotate)."""

    transport: Mapping[str, Mapping[str, PublicKey]]
    logs: Mapping[str, Sequence[NoteKey]]

    @classmethod
    def of(cls, directories: Iterable[RegionDirectory]) -> Keyring:
        transport: dict[str, dict[str, PublicKey]] = {}
        logs: dict[str, list[NoteKey]] = {}
        for directory in directories:
            for node in directory.nodes:
                for jwk in node.transport_keys:
                    key = PublicKey.from_jwk(jwk)
                    transport.setdefault(node.node_id, {})[key.kid] = key
                log_key = NoteKey.from_vkey(node.log_key)
                if log_key.vkey not in {k.vkey for k in logs.get(node.node_id, [])}:
                    logs.setdefault(node.node_id, []).append(log_key)
        return cls(transport, logs)


@dataclass
class _Side:
    node: str
    rows: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)


def parse_time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} is not a time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{what} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"{what} has no time zone")
    return parsed


_ROW_FIELDS: Final = ("kind", "id", "direction", "digest", "at", "status")


def _side(ledger: Mapping[str, Any]) -> _Side:
    if not isinstance(ledger, Mapping) or ledger.get("format") != FORMAT:
        raise InvalidInput(f"not a {FORMAT} ledger")
    node, rows = ledger.get("node"), ledger.get("rows")
    if not isinstance(node, str) or not isinstance(rows, list):
        raise InvalidInput("a ledger names its node and lists its rows")
    side = _Side(node)
    for row in rows:
        if not isinstance(row, Mapping) or not all(isinstance(row.get(k), str) for k in _ROW_FIELDS):
            raise InvalidInput(f"a row of {node}'s ledger lacks one of {', '.join(_ROW_FIELDS)}")
        if row["direction"] not in ("in", "out"):
            raise InvalidInput(f"a row of {node}'s ledger has direction {row['direction']!r}")
        parse_time(row["at"], f"a row's time in {node}'s ledger")
        side.rows[(row["kind"], row["id"], row["direction"])] = dict(row)
    return side


def _in(row: Mapping[str, Any], since: datetime, until: datetime) -> bool:
    return since <= parse_time(row["at"], "a row's time") < until


def _brief(row: Mapping[str, Any], *, sender: str, receiver: str) -> dict[str, Any]:
    return {"kind": row["kind"], "id": row["id"], "from": sender, "to": receiver,
            "digest": row["digest"], "at": row["at"]}  # fmt: skip


def _receipt_problem(row: Mapping[str, Any], *, sender: str, receiver: str, keys: Keyring) -> str | None:
    """Why the receipt a row holds does not prove the hop ``sender`` -> ``receiver`` of this row, or None."""
    token = row.get("receipt")
    if not isinstance(token, str):
        return "no receipt"
    known = keys.transport.get(receiver, {})

    def resolve(kid: str) -> PublicKey:
        if kid not in known:
            raise NotFound(f"not a transport key of {receiver}")
        return known[kid]

    try:
        statement = verify_transport_receipt(token, resolve=resolve)
    except SpocError:
        return f"the receipt is not signed by a transport key of {receiver}"
    named = {"event_id": row["id"]} if row["kind"] == "event" else {"message_id": row["id"]}
    expected = {**named, "digest": row["digest"], "from_node": sender, "to_node": receiver}
    wrong = sorted(k for k, v in expected.items() if statement.get(k) != v)
    return f"the receipt names another {', '.join(wrong)}" if wrong else None


_Key = tuple[str, str, str]  # (kind, id, direction)


def _log_problems(ledger: Mapping[str, Any], side: _Side, keys: Keyring) -> tuple[list[str], dict[_Key, str]]:
    """Problems of the ledger as a whole, and of each settled row's audit entry."""
    note = ledger.get("checkpoint")
    size, root = 0, b""
    whole: list[str] = []
    if isinstance(note, str):
        try:
            body = cps.open_checkpoint(note, list(keys.logs.get(side.node, [])))
            size, root = body.size, body.root
        except SpocError:
            whole.append(f"{side.node}'s checkpoint is not signed by its log key in the directory")
    rows: dict[_Key, str] = {}
    for where, row in side.rows.items():
        kind, ident, direction = where
        if row["status"] != "receipted":
            continue
        entry, seq = row.get("entry"), row.get("log_index")
        if not isinstance(entry, Mapping):
            rows[where] = "no audit entry logs it"
            continue
        details = entry.get("details")
        details = details if isinstance(details, Mapping) else {}
        names = LOGGED_AS.get((kind, direction), frozenset())
        entry_object = entry.get("object_id")
        if (
            entry.get("action") not in names
            or not isinstance(entry_object, str)
            or _entry_ident(kind, entry_object, details) != ident
            or (kind == "event" and entry_object != row.get("message_id"))
        ):
            rows[where] = "its audit entry is about something else"
        elif details.get("digest") != row["digest"]:
            rows[where] = "its audit entry names another digest"
        elif not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < size or whole:
            rows[where] = "its audit entry is not (yet) in a signed checkpoint"
        else:
            try:
                proof = [bytes.fromhex(h) for h in row.get("inclusion_proof") or []]
                merkle.verify_inclusion(seq, size, merkle.leaf_hash(canonical(dict(entry))), proof, root)
            except (SpocError, ValueError, TypeError):
                rows[where] = "its audit entry is not in the signed log at the position given"
    return whole, rows


def compare(
    a: Mapping[str, Any], b: Mapping[str, Any], *, since: datetime, until: datetime, keys: Keyring
) -> dict[str, Any]:
    """Reconcile two nodes' ledgers of their hops with each other (see the module docstring); the report.

    ``ok`` is true when nothing is missing, mismatched, unproven or badly receipted; rows in flight are
    listed under ``unsettled`` and do not make it false."""
    first, second = _side(a), _side(b)
    if (a.get("peer"), b.get("peer")) != (second.node, first.node):
        raise InvalidInput(f"these are not the ledgers of {first.node} and {second.node} with each other")
    report: dict[str, Any] = {
        "nodes": [first.node, second.node],
        "since": stamp(since),
        "until": stamp(until),
        "sent_not_received": [],
        "received_not_sent": [],
        "digest_mismatches": [],
        "bad_receipts": [],
        "not_in_log": [],
        "ledger_problems": [],
        "unsettled": [],
        "counts": {},
    }
    for ledger, side in ((a, first), (b, second)):
        whole, rows = _log_problems(ledger, side, keys)
        report["ledger_problems"].extend({"node": side.node, "problem": p} for p in whole)
        for (kind, ident, direction), problem in sorted(rows.items()):
            if _in(side.rows[(kind, ident, direction)], since, until):
                report["not_in_log"].append(
                    {"kind": kind, "id": ident, "node": side.node, "direction": direction, "problem": problem}
                )
    for sender, receiver in ((first, second), (second, first)):
        sent = {(k, i): r for (k, i, d), r in sender.rows.items() if d == "out"}
        got = {(k, i): r for (k, i, d), r in receiver.rows.items() if d == "in"}
        judged_sent = judged_got = 0
        for key, row in sorted(sent.items()):
            if not _in(row, since, until):
                continue
            judged_sent += 1
            other = got.get(key)
            if row["status"] != "receipted":
                report["unsettled"].append(
                    {
                        **_brief(row, sender=sender.node, receiver=receiver.node),
                        "status": row["status"],
                        "received": other is not None,
                    }
                )
                continue
            bad = _receipt_problem(row, sender=sender.node, receiver=receiver.node, keys=keys)
            if bad is not None:
                report["bad_receipts"].append(
                    {"kind": row["kind"], "id": row["id"], "held_by": sender.node, "problem": bad}
                )
            if other is None:
                report["sent_not_received"].append(_brief(row, sender=sender.node, receiver=receiver.node))
            elif other["digest"] != row["digest"]:
                report["digest_mismatches"].append(
                    {
                        "kind": row["kind"],
                        "id": row["id"],
                        "from": sender.node,
                        "to": receiver.node,
                        "sent_digest": row["digest"],
                        "received_digest": other["digest"],
                    }
                )
        for key, row in sorted(got.items()):
            if not _in(row, since, until):
                continue
            judged_got += 1
            bad = _receipt_problem(row, sender=sender.node, receiver=receiver.node, keys=keys)
            if bad is not None:
                report["bad_receipts"].append(
                    {"kind": row["kind"], "id": row["id"], "held_by": receiver.node, "problem": bad}
                )
            if key not in sent:
                report["received_not_sent"].append(_brief(row, sender=sender.node, receiver=receiver.node))
        report["counts"][f"{sender.node}->{receiver.node}"] = {"sent": judged_sent, "received": judged_got}
    findings = ("sent_not_received", "received_not_sent", "digest_mismatches", "bad_receipts", "not_in_log",
                "ledger_problems")  # fmt: skip
    report["ok"] = not any(report[k] for k in findings)
    return report


def verified_directory(ledger: Mapping[str, Any], *, anchor: Sequence[PublicKey]) -> RegionDirectory:
    """The governance-signed directory a ledger carries, checked under the anchor (validity aside: an
    auditor may reconcile last year's ledgers with last year's directory)."""
    from broker.crypto.directory import verify_directory
    from broker.region.service import parse_signed

    raw = ledger.get("directory")
    if not isinstance(raw, Mapping):
        raise InvalidInput("the ledger carries no regional directory")
    signed = parse_signed(raw)
    try:
        verify_directory(raw["directory"], raw["signature"], anchor=anchor)
    except VerificationError:
        raise VerificationError(
            f"the directory in {ledger.get('node')}'s ledger does not verify under the anchor",
            reason="directory-signature",
        ) from None
    return signed.directory
