"""The outbox handlers of message work, and a synchronous drain for the CLI and tests.

Workers call ``process`` with these handlers; ``drain`` runs the same code in-process, which is what
a test that does not start a worker uses. There is one implementation of each step:

- ``forward``: the destination contact point receives a forwarded message (``broker.messages.service``);
- ``deliver``: a routed message's delivery row to its agency, pull or push (``broker.delivery.service``);
- ``forward`` to a country whose contact point is on another node schedules the hop (``broker.hop.outbound``).

Every handler is idempotent: it looks at the message's state and does nothing if the step was done.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.delivery.service import deliver, deliver_many
from broker.directory.models import Agency
from broker.hop import outbound
from broker.hop.service import is_remote
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from broker.messages.service import forward, forward_many
from broker.outbox import service as outbox
from broker.outbox.models import OutboxItem


def handlers(keys: DatabaseKeyStore) -> dict[str, outbox.Handler]:
    def do_forward(session: Session, row: OutboxItem) -> None:
        if row.message_id is None:
            return
        message = session.get(Message, row.message_id)
        if message is not None and is_remote(session, keys, message.destination_country):
            outbound.schedule(session, keys, message)  # the destination is another node: the hop goes out
        else:
            forward(session, keys, row.message_id)

    def do_deliver(session: Session, row: OutboxItem) -> None:
        if row.message_id is not None:
            deliver(session, row.message_id)

    return {"forward": do_forward, "deliver": do_deliver}


def batch_handlers(keys: DatabaseKeyStore) -> dict[str, outbox.BatchHandler]:
    """The same steps for a batch of rows at once, set-based (``outbox.process`` falls back to ``handlers``
    row by row if one fails)."""

    def forward_all(session: Session, rows: Sequence[OutboxItem]) -> None:
        found = [session.get(Message, r.message_id) for r in rows if r.message_id is not None]
        messages = [m for m in found if m is not None]
        elsewhere = {c for c in {m.destination_country for m in messages} if is_remote(session, keys, c)}
        remote = {m.id for m in messages if m.destination_country in elsewhere}
        outbound.schedule_many(session, keys, [m for m in messages if m.id in remote])
        forward_many(session, keys, [m for m in messages if m.id not in remote])

    def deliver_all(session: Session, rows: Sequence[OutboxItem]) -> None:
        deliver_many(session, [r.message_id for r in rows if r.message_id is not None])

    return {"forward": forward_all, "deliver": deliver_all}


def prefetch(session: Session, rows: Sequence[OutboxItem]) -> None:
    """Load the batch's messages and their agencies into the session in two queries."""
    ids = {r.message_id for r in rows if r.message_id is not None}
    if not ids:
        return
    messages = session.scalars(select(Message).where(Message.id.in_(ids))).all()
    agencies = {m.destination_agency for m in messages if m.destination_agency is not None}
    loaded: list[object] = list(messages)
    if agencies:
        loaded += session.scalars(select(Agency).where(Agency.id.in_(agencies))).all()
    # The identity map holds objects weakly: without a reference they would be collected before the
    # handlers' ``session.get`` and loaded again one query at a time. Held for the batch's unit of work.
    session.info.setdefault("outbox_prefetched", []).extend(loaded)


def process(
    session: Session, keys: DatabaseKeyStore, ids: Sequence[int], *, redispatch_after: float | None = None
) -> int:
    """Run the outbox rows ``ids`` (a worker's batch task); returns rows done. A worker passes its relay's
    ``redispatch_after`` so that a failed row is retried sooner (``outbox.retry_delay``)."""
    return outbox.process(
        session,
        ids,
        handlers(keys),
        prefetch=prefetch,
        batch_handlers=batch_handlers(keys),
        redispatch_after=redispatch_after,
    )


def drain(session: Session, keys: DatabaseKeyStore, *, limit: int = 1000) -> int:
    """Claim and process every due outbox row in this transaction (no Celery); returns rows processed."""
    total = 0
    tried: set[int] = set()
    while ids := outbox.claim(session, limit=limit, redispatch_after=0.0):
        if tried.issuperset(ids):
            break  # only rows that failed already: leave them to the relay's redispatch
        tried.update(ids)
        total += process(session, keys, ids)
        if total >= limit:
            break
    return total
