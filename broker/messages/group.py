"""Group commit: concurrent single submissions of one API process share one transaction and one commit.

One envelope per request would otherwise cost a transaction of its own: a dozen statements and a commit
(a WAL flush) each. Here the request's thread does everything that only reads — the signature, the schema,
policy, the payload opened (``service.admit_one``) — and hands the admitted message to this process's
writer. The writer takes everything that queued while it wrote the previous group (and, with
``group_commit_wait_ms``, what arrives that much later), writes it set-based in one transaction, commits
once, and only then wakes each request to answer. Each
request gets exactly its own answer: its receipt, the first answer to its ``Idempotency-Key``, or its own
refusal (a message id already stored: 409), never another's.

What makes sharing safe:

* **Idempotency.** The keys of a group are locked (``pg_advisory_xact_lock``, as ``messages.idempotency``
  does for a request alone) in one sorted order, so two processes' groups never wait on each other in a
  cycle; a key already answered is replayed, with another body refused (409).
* **Nothing shared by two members of a group.** A submission whose message id or (agency, key) is already
  in the group waits for the next one, where it finds the first written: as if they had come one after the
  other.
* **Failure.** If writing the group fails (a unique key lost to another process meanwhile, a deadlock), it
  is rolled back and each member is written alone in a transaction of its own, so one member's failure is
  its alone.

PostgreSQL only: SQLite serialises writers anyway (and its ``BEGIN IMMEDIATE`` would have the request's
own transaction and the writer's wait on each other). Replies and amendments (which change another message
the request has loaded) take the ordinary path.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from broker.audit.service import Actor
from broker.db import insert_all, unit_of_work
from broker.errors import Conflict, SpocError
from broker.messages.idempotency import body_hash
from broker.messages.models import IdempotencyRecord, Message
from broker.messages.service import Admitted, store_admitted
from schemas.api import SubmitReceipt

__all__ = ["GroupCommit", "Replayed", "Submission"]

log = logging.getLogger("spoc.messages")


@dataclass(frozen=True)
class Replayed:
    """The first answer to this request's ``Idempotency-Key`` (status and body)."""

    status: int
    response: dict[str, Any]


Outcome = SubmitReceipt | Replayed | BaseException


@dataclass
class Submission:
    """One request's admitted message, waiting for its group's commit."""

    agency_id: str
    key: str | None
    body: bytes
    admitted: Admitted
    actor: Actor
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    outcome: Outcome | None = None
    done: threading.Event = field(default_factory=threading.Event)


def receipt_of(message: Message) -> SubmitReceipt:
    return SubmitReceipt(
        message_id=message.id,
        state=message.state,
        deadline_at=message.deadline_at,
        received_at=message.received_at,
    )


class GroupCommit:
    """This process's writer of single submissions (one thread, started on first use).

    ``submit`` blocks the calling request until its submission's group has committed (or failed) and returns
    what it should answer. ``window`` seconds: how long the writer waits for more after the first
    submission arrives; ``limit``: most submissions in one transaction."""

    def __init__(self, factory: sessionmaker[Session], *, window: float, limit: int = 200) -> None:
        self._factory = factory
        self._window = window
        self._limit = limit
        self._queue: list[Submission] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False

    def submit(self, submission: Submission) -> Outcome:
        with self._cond:
            self._queue.append(submission)
            if self._thread is None:  # first use, or again after close() (an app started again)
                self._closing = False
                self._thread = threading.Thread(target=self._run, name="spoc-group-commit", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        submission.done.wait()
        assert submission.outcome is not None  # noqa: S101 - set before done
        return submission.outcome

    def close(self) -> None:
        """Stop the writer once what is queued is written (the app's shutdown); a later submission starts
        it again."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    self._thread = None
                    return
            if self._window > 0:
                time.sleep(self._window)  # let concurrent submissions join
            with self._cond:
                group, later = _distinct(self._queue[: self._limit])
                self._queue[: self._limit] = later
            self._write(group)
            for submission in group:
                submission.done.set()

    def _write(self, group: list[Submission]) -> None:
        try:
            with unit_of_work(self._factory) as session:
                outcomes = write_group(session, group)
        except Exception as exc:  # the group as a whole: each alone, so that a failure is only its own
            log.info("group commit: %d submissions written one by one (%s)", len(group), type(exc).__name__)
            for submission in group:
                try:
                    with unit_of_work(self._factory) as session:
                        submission.outcome = write_group(session, [submission])[0]
                except Exception as alone:
                    submission.outcome = alone
            return
        for submission, outcome in zip(group, outcomes, strict=True):
            submission.outcome = outcome


def _distinct(queued: list[Submission]) -> tuple[list[Submission], list[Submission]]:
    """The submissions that share no message id and no (agency, key) with an earlier one; the rest wait."""
    group: list[Submission] = []
    later: list[Submission] = []
    ids: set[str] = set()
    keys: set[tuple[str, str]] = set()
    for submission in queued:
        message_id = submission.admitted.message.id
        key = (submission.agency_id, submission.key) if submission.key is not None else None
        if message_id in ids or (key is not None and key in keys):
            later.append(submission)
            continue
        ids.add(message_id)
        if key is not None:
            keys.add(key)
        group.append(submission)
    return group, later


_LOCK_KEYS = "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(%s::text[]) AS k"
_ANSWERED = (
    "SELECT r.agency_id, r.key, r.body_hash, r.status_code, r.response FROM idempotency_records r "
    "JOIN unnest(%s::text[], %s::text[]) AS k(agency_id, key) ON r.agency_id = k.agency_id AND r.key = k.key"
)
_STORED = "SELECT id FROM messages WHERE id = ANY(%s::text[])"


def write_group(session: Session, group: Sequence[Submission]) -> list[SubmitReceipt | Replayed | SpocError]:
    """Write ``group`` (no two sharing a message id or key) in the caller's transaction: for each, its receipt,
    the replay of its key's first answer, or its refusal (nothing of it written)."""
    # Reads by driver SQL: for a group of a few, SQLAlchemy's statement machinery cost more than the SQL.
    connection = session.connection()
    keyed = sorted({(s.agency_id, s.key) for s in group if s.key is not None})
    answered: dict[tuple[str, str], tuple[str, int, dict[str, Any]]] = {}
    if keyed:
        # In the order given: sorted, the same in every process.
        connection.exec_driver_sql(_LOCK_KEYS, ([f"idem\x1f{agency}\x1f{key}" for agency, key in keyed],))
        answered = {
            (agency, key): (digest, status, response)
            for agency, key, digest, status, response in connection.exec_driver_sql(
                _ANSWERED, ([agency for agency, _ in keyed], [key for _, key in keyed])
            )
        }
    ids = [s.admitted.message.id for s in group]
    stored = set(connection.exec_driver_sql(_STORED, (ids,)).scalars())
    outcomes: list[SubmitReceipt | Replayed | SpocError | None] = []
    writing: list[Submission] = []
    for submission in group:
        record = answered.get((submission.agency_id, submission.key)) if submission.key is not None else None
        if record is not None:
            digest, status, response = record
            if digest != body_hash(submission.body):
                outcomes.append(
                    Conflict("this Idempotency-Key was already used with a different request body")
                )
            else:
                outcomes.append(Replayed(status, response))
        elif submission.admitted.message.id in stored:
            outcomes.append(Conflict(f"message {submission.admitted.message.id} was already submitted"))
        else:
            outcomes.append(None)
            writing.append(submission)
    store_admitted(session, [(s.admitted, s.actor, s.context) for s in writing])
    receipts = {id(s): receipt_of(s.admitted.message) for s in writing}
    insert_all(
        session,
        [
            IdempotencyRecord(
                agency_id=s.agency_id,
                key=s.key,
                body_hash=body_hash(s.body),
                status_code=202,
                response=receipts[id(s)].model_dump(mode="json"),
            )
            for s in writing
            if s.key is not None
        ],
    )
    return [
        outcome if outcome is not None else receipts[id(submission)]
        for submission, outcome in zip(group, outcomes, strict=True)
    ]
