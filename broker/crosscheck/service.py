"""Cross-checking (Directive (EU) 2023/977 Art. 16(1)(d)): every message a contact point held on this node can
read is compared with everything that contact point already holds, and the matches become links.

One batch (:func:`run_batch`, the beat task ``spoc.crosscheck.batch`` and the tests) does, set-based:

1. picks up to ``limit`` (contact point, message) pairs not yet cross-checked (and whose content was not
   deleted under the retention rules) among the queued messages (``crosscheck_pending``, filled by database
   triggers when a message is stored or a contact point adds a custody step to it: migration 0016, so a
   batch costs what is new, not what is held), where the contact point is
   held on this node and the message is in its case file: sent from its country, or received by it (it
   countersigned the arrival; before that the destination does not know of the message, even on a hub);
2. decrypts each payload with the contact point's own keys, reads the structured content and derives its
   selectors (``broker.crosscheck.normalise``); text and unreadable payloads are recorded as such;
3. inserts the scans and the keyed hashes with multi-row INSERTs (no clear value is ever written);
4. finds every match with **one** query (a self-join of the hashes on contact point, kind and digest);
5. records the links, notifies the officers holding the earlier message, and writes one audit entry per
   link naming both messages and the kinds matched, never a value.

Messages of one conversation are not linked to each other (an answer is about what its request asked).
Batches of one node run one at a time (a PostgreSQL transaction-level advisory lock): two batches in
parallel would each miss the matches between them, their hashes not yet visible to each other. The
function flushes and never commits; the caller's unit of work makes a batch all or nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import and_, delete, exists, func, insert, or_, select, text, tuple_
from sqlalchemy.orm import Session, aliased

from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.crosscheck.content import ContentRefused, parse_payload
from broker.crosscheck.keys import SelectorHasher, hasher_for
from broker.crosscheck.models import CrosscheckLink, CrosscheckPending, CrosscheckScan, SelectorHash
from broker.crosscheck.normalise import KIND_LABELS, Selector, selectors
from broker.crypto import AtRestCipher, open_with_any
from broker.db import insert_all, new_row, utcnow
from broker.directory.models import ContactPoint
from broker.errors import VerificationError
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import CustodyStep, Message, ReviewNotification

__all__ = ["BatchResult", "LinkView", "basis_text", "forget_selectors", "links_for", "run_batch"]

DEFAULT_BATCH: Final = 200
_SETTLE_ROUNDS: Final = 5  # rounds of queued messages with nothing to scan that one batch takes out
_LOCK_KEY: Final = 0x73706F63_0C0C  # "spoc" + cross-check: one batch at a time per PostgreSQL database


@dataclass(frozen=True)
class BatchResult:
    """What one batch did: pairs scanned (of them structured), hashes stored, links made."""

    scanned: int = 0
    structured: int = 0
    selectors: int = 0
    links: int = 0
    more: bool = False
    """True when the batch stopped taking out queued messages that had nothing to scan, with more queued."""


@dataclass(frozen=True)
class LinkView:
    """One link of a message as its contact point's officers see it: the other message and why."""

    other_id: str
    basis: list[str]
    created_at: datetime
    earlier: bool
    """True when the other message was already held when this one was cross-checked."""


def basis_text(basis: Iterable[str]) -> str:
    """The kinds matched, in words (``same name, phone number``): what an officer and a notice may say."""
    return ", ".join(KIND_LABELS.get(kind, kind) for kind in basis)


def _held(session: Session, keys: DatabaseKeyStore) -> list[str]:
    return [cp for cp in session.scalars(select(ContactPoint.id).order_by(ContactPoint.id)) if keys.holds(cp)]


def _queued(session: Session, limit: int) -> dict[str, int]:
    """Up to ``limit`` queued messages (``crosscheck_pending``), the earliest received first, each with its
    ``requeued`` counter as read: from the queue's own index, never joined to the messages (a join was planned
    as a pass over every message)."""
    rows = session.execute(
        select(CrosscheckPending.message_id, CrosscheckPending.requeued)
        .order_by(CrosscheckPending.received_at, CrosscheckPending.message_id)
        .limit(limit)
    )
    return {row[0]: row[1] for row in rows}


def _candidates(
    session: Session, held: Sequence[str], queued: Sequence[str], limit: int | None, *, content: bool = True
) -> list[Any]:
    """The (contact point, message) pairs of the ``queued`` messages still to scan, up to ``limit``; with
    ``content=False`` without the envelopes (only which pairs remain)."""
    received = exists(
        select(CustodyStep.id).where(
            CustodyStep.message_id == Message.id, CustodyStep.party == ContactPoint.id
        )
    )
    # OFFSET 0 keeps this a probe of the scans' primary key per candidate: PostgreSQL would otherwise turn it
    # into an anti-join, which on a young database (statistics of a few rows, as in the benchmark's first
    # minute) it planned as a nested loop over every scan for every candidate, a second per batch at 1,000
    # messages. A probe per candidate is what the custody condition above already costs.
    done = exists(
        select(CrosscheckScan.message_id)
        .where(CrosscheckScan.message_id == Message.id, CrosscheckScan.contact_point_id == ContactPoint.id)
        .offset(0)
    )
    in_case_file = or_(
        Message.origin_country == ContactPoint.country,
        and_(Message.destination_country == ContactPoint.country, received),
    )
    return list(
        session.execute(
            select(
                ContactPoint.id.label("cp"),
                Message.id,
                Message.envelope if content else Message.digest,
                Message.origin_country,
            )
            .join(ContactPoint, in_case_file)
            .where(
                Message.id.in_(queued), ContactPoint.id.in_(held), ~done, Message.content_deleted_at.is_(None)
            )
            .order_by(Message.received_at, Message.id)
            .limit(limit)
        ).all()
    )


def _read(
    keys: DatabaseKeyStore, cp: str, envelope: dict[str, Any], region: str
) -> tuple[str, list[Selector]]:
    try:
        _, plaintext = open_with_any(envelope["payload"], keys=keys.encryption_keys(cp))
    except (VerificationError, KeyError, TypeError):
        return "unreadable", []
    try:
        parsed = parse_payload(plaintext)
    except ContentRefused:  # e.g. arrived by a hop from a node that did not check it: nothing to extract
        return "invalid", []
    if parsed.content is None:
        return "text", []
    return "structured", selectors(parsed.content, region=region)


def run_batch(
    session: Session, keys: DatabaseKeyStore, master: AtRestCipher, *, limit: int = DEFAULT_BATCH
) -> BatchResult:
    """Cross-check up to ``limit`` (contact point, message) pairs; see the module docstring."""
    held = _held(session, keys)
    if not held:
        return BatchResult()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_LOCK_KEY)))
        # The batch's statements run every few seconds with the same shape (a list of 200 ids), so the driver
        # prepares them and PostgreSQL soon switches to a generic plan, which cannot see which messages the
        # ids name: it read every message, and a batch's cost grew with the messages held (0.11, 0.33, 0.46
        # ms of PostgreSQL per message at 3,000, 6,000, 9,000 held; flat at 0.1 with plans made per run).
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    # Queued messages with nothing to scan here (yet) are taken out until some work is found, a few rounds at
    # most: rows this transaction deleted stay in the index until it commits, so each round reads past them.
    for _ in range(_SETTLE_ROUNDS):
        queued = _queued(session, limit)
        if not queued:
            return BatchResult()
        rows = _candidates(session, held, list(queued), limit)
        if rows:
            break
        _settle(session, held, queued)
    else:
        return BatchResult(more=True)
    hashers: dict[str, SelectorHasher] = {cp: hasher_for(session, master, cp) for cp in {r.cp for r in rows}}
    now = utcnow()
    scans: list[dict[str, Any]] = []
    hashes: list[dict[str, Any]] = []
    for row in rows:
        outcome, found = _read(keys, row.cp, row.envelope, row.origin_country)
        scans.append(
            {
                "contact_point_id": row.cp,
                "message_id": row.id,
                "outcome": outcome,
                "selectors": len(found),
                "scanned_at": now,
            }
        )
        hasher = hashers[row.cp]
        hashes += [
            {
                "contact_point_id": row.cp,
                "message_id": row.id,
                "kind": s.kind,
                "digest": hasher.digest(s.kind, s.value),
                "partial": s.partial,
            }
            for s in found
        ]
    # COPY (broker.db.insert_all), not a statement per row.
    insert_all(session, [new_row(CrosscheckScan, **scan) for scan in scans])
    insert_all(session, [new_row(SelectorHash, **digest) for digest in hashes])
    batch = {(r.cp, r.id) for r in rows}
    links = _links(session, batch) if hashes else {}
    if links:
        _record_links(session, links, now=now)
    session.flush()
    _settle(session, held, queued)
    structured = sum(1 for s in scans if s["outcome"] == "structured")
    return BatchResult(len(scans), structured, len(hashes), len(links))


def _settle(session: Session, held: Sequence[str], queued: Mapping[str, int]) -> None:
    """Take out of the queue the ``queued`` messages no held contact point still has to scan (after a flush:
    this batch's scans count), each only if its ``requeued`` counter is still what was read. A custody step
    committed meanwhile raised it (or holds the row locked until it commits, and PostgreSQL then reads the row
    again): that message stays queued. A custody step added later queues a message again."""
    remaining = {row.id for row in _candidates(session, held, list(queued), None, content=False)}
    done = [(message_id, seen) for message_id, seen in queued.items() if message_id not in remaining]
    if done:
        session.execute(
            delete(CrosscheckPending).where(
                tuple_(CrosscheckPending.message_id, CrosscheckPending.requeued).in_(done)
            )
        )


def _links(session: Session, batch: set[tuple[str, str]]) -> dict[tuple[str, str, str], set[str]]:
    """(contact point, message cross-checked now, message held before) → kinds matched: one query."""
    new, old = aliased(SelectorHash), aliased(SelectorHash)
    m_new, m_old = aliased(Message), aliased(Message)
    matches = session.execute(
        select(
            new.contact_point_id,
            new.message_id,
            old.message_id,
            new.kind,
            m_new.received_at,
            m_old.received_at,
        )
        .join(
            old,
            and_(
                old.contact_point_id == new.contact_point_id,
                old.kind == new.kind,
                old.digest == new.digest,
                old.message_id != new.message_id,
                or_(~new.partial, ~old.partial),
            ),
        )
        .join(m_new, m_new.id == new.message_id)
        .join(m_old, m_old.id == old.message_id)
        .where(
            new.message_id.in_({m for _, m in batch}),
            new.contact_point_id.in_({cp for cp, _ in batch}),
            m_new.conversation_id != m_old.conversation_id,
        )
        .distinct()
    ).all()
    links: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for cp, this, other, kind, this_at, other_at in matches:
        if (cp, this) not in batch:
            continue
        if (cp, other) in batch and (other_at, other) > (this_at, this):
            continue  # both new: the pair is recorded once, from the later message
        links[(cp, this, other)].add(kind)
    return links


def _basis(kinds: set[str]) -> list[str]:
    if "person-name" in kinds:
        kinds = kinds - {"person-name~"}  # the same name says more than a similar one
    return sorted(kinds)


def _record_links(session: Session, links: dict[tuple[str, str, str], set[str]], *, now: datetime) -> None:
    """Insert the links (one statement), notify the holders of the earlier messages, audit each link."""
    session.execute(
        insert(CrosscheckLink),
        [
            {
                "contact_point_id": cp,
                "message_id": this,
                "linked_message_id": other,
                "basis": _basis(kinds),
                "created_at": now,
            }
            for (cp, this, other), kinds in links.items()
        ],
    )
    ids = {m for _, this, other in links for m in (this, other)}
    messages = {
        m.id: m
        for m in session.execute(
            select(Message.id, Message.type, Message.origin_country, Message.assigned_to).where(
                Message.id.in_(ids)
            )
        ).all()
    }
    countries: dict[str, str] = dict(session.execute(select(ContactPoint.id, ContactPoint.country)).all())
    notes = []
    for (cp, this, other), kinds in links.items():
        basis = _basis(kinds)
        new, held = messages[this], messages[other]
        notes.append(
            ReviewNotification(
                contact_point_id=cp,
                audience="officer",
                user_id=held.assigned_to,
                message_id=other,
                kind="crosscheck-link",
                text=(
                    f"Cross-check: {held.type} {other[:8]} is linked to a new {new.type} {this[:8]} from "
                    f"{new.origin_country} ({basis_text(basis)})."
                )[:500],
                created_at=now,
            )
        )
        record(
            session,
            actor=Actor(cp, "contact-point"),
            action=AuditAction.CROSSCHECK_LINKED,
            object_type="message",
            object_id=this,
            countries=[countries.get(cp, cp[:2])],
            details={"contact_point": cp, "linked_message": other, "basis": basis},
        )
    session.add_all(notes)


def links_for(session: Session, contact_point_id: str, message_id: str) -> list[LinkView]:
    """The links of ``message_id`` in ``contact_point_id``'s case file, newest first (metadata only)."""
    rows = session.scalars(
        select(CrosscheckLink)
        .where(
            CrosscheckLink.contact_point_id == contact_point_id,
            or_(CrosscheckLink.message_id == message_id, CrosscheckLink.linked_message_id == message_id),
        )
        .order_by(CrosscheckLink.created_at.desc(), CrosscheckLink.id.desc())
    ).all()
    return [
        LinkView(
            other_id=r.linked_message_id if r.message_id == message_id else r.message_id,
            basis=list(r.basis),
            created_at=r.created_at,
            earlier=r.message_id == message_id,
        )
        for r in rows
    ]


def forget_selectors(session: Session, message_ids: Sequence[str]) -> int:
    """Delete every keyed hash of ``message_ids`` (one statement): what retention calls when it deletes their
    content, so they can never be matched again. Links and scans are metadata and stay until then."""
    if not message_ids:
        return 0
    result = session.execute(delete(SelectorHash).where(SelectorHash.message_id.in_(message_ids)))
    return int(getattr(result, "rowcount", 0) or 0)
