"""``spoc retention``: run the retention sweep now, and list the compliance review queue.

    spoc retention sweep [--max-batches N]     delete the content of exchanges past their period (held skipped)
    spoc retention queue [--country CC]        exchanges waiting for their compliance review

What the beat task ``spoc.retention.sweep`` does, on demand (after changing the periods, or on a node that runs
no beat). Each batch is one unit of work, audited (``retention:deleted``, actor ``retention``). Reviews and holds
are decisions of officers and auditors, taken in the web UI or over ``/v1/retention``, not here.
"""

from __future__ import annotations

from typing import Annotated

import typer

from broker.config import get_settings

retention_app = typer.Typer(
    no_args_is_help=True, help="Retention: delete content past its period; the compliance review queue."
)


@retention_app.command("sweep")
def sweep(
    max_batches: Annotated[int, typer.Option(min=1, help="Stop after this many batches.")] = 1000,
) -> None:
    """Delete the content of every exchange past its retention period, held ones skipped."""
    from broker.db import make_engine, make_sessionmaker, unit_of_work
    from broker.retention.service import sweep as sweep_batch

    settings = get_settings()
    engine = make_engine(settings)
    exchanges = messages = 0
    try:
        factory = make_sessionmaker(engine)
        for _ in range(max_batches):
            with unit_of_work(factory) as session:
                done = sweep_batch(session, settings)
            exchanges += len(done.conversations)
            messages += done.messages
            if len(done.conversations) < settings.retention_batch_size:
                break
    finally:
        engine.dispose()
    typer.echo(f"content deleted: {exchanges} exchanges, {messages} messages")


@retention_app.command("queue")
def queue(
    country: Annotated[
        str | None, typer.Option(help="Only exchanges touching this country (AL, BA, …).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
) -> None:
    """The exchanges waiting for their compliance review, longest ended first."""
    from broker.db import make_engine, make_sessionmaker, unit_of_work
    from broker.retention.exchanges import RetentionScope, review_queue

    settings = get_settings()
    engine = make_engine(settings)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            entries = review_queue(session, settings, RetentionScope(country=country), limit=limit)
            lines = [
                f"{e.conversation_id}  ended {e.ended_at:%Y-%m-%d}  due {e.due_at:%Y-%m-%d}  "
                f"{','.join(e.countries)}  {','.join(e.categories)}  {len(e.messages)} messages"
                + ("  HELD" if e.held else "")
                for e in entries
            ]
    finally:
        engine.dispose()
    for line in lines:
        typer.echo(line)
    typer.echo(f"{len(lines)} exchanges waiting for review")
