"""The worker's operator wiring, on Celery's signals: its logs, its metrics, the request id across tasks.

- ``setup_logging``: spoc's JSON (or text) log lines instead of Celery's own set-up (``broker.ops.logs``).
- ``worker_init``: zeroed counters; ``worker_ready``: the worker's own metrics port when configured
  (``broker.ops.server``).
- ``before_task_publish``: a task sent while a request id is bound carries it in a header;
  ``task_prerun`` binds it (and the task's name and id) for the task's log lines, ``task_postrun`` counts
  the task by outcome and unbinds.

Imported by ``workers.celery_app`` so that every process that loads the app is wired the same way.
"""

from __future__ import annotations

import contextlib
from contextvars import Token
from typing import Any, Final

from celery import Task, signals

from broker.config import get_settings
from broker.ops import logs, metrics, server

HEADER: Final = "spoc_request_id"
_bound: dict[str, tuple[Token[tuple[str, str] | None], Token[str | None]]] = {}


@signals.setup_logging.connect
def _logging(**_: Any) -> None:
    logs.configure(get_settings())


@signals.worker_init.connect
def _worker_init(**_: Any) -> None:
    metrics.initialise()


@signals.worker_ready.connect
def _worker_ready(**_: Any) -> None:
    """The metrics port opens once the worker consumes (and its logging is set up): a worker that cannot
    reach its queue shows as a target down, not as a target with nothing happening."""
    settings = get_settings()
    if settings.worker_metrics_port:
        server.serve(settings)


@signals.before_task_publish.connect
def _carry_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = logs.REQUEST_ID.get()
    if request_id is not None and headers is not None:
        headers.setdefault(HEADER, request_id)


def _request_id_of(task: Task) -> str | None:  # type: ignore[type-arg]  # celery-types: generic Task
    value = getattr(task.request, HEADER, None) or (getattr(task.request, "headers", None) or {}).get(HEADER)
    return value if isinstance(value, str) else None


@signals.task_prerun.connect
def _bind(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:  # type: ignore[type-arg]
    if task_id is None or task is None:
        return
    _bound[task_id] = (logs.TASK.set((task.name, task_id)), logs.REQUEST_ID.set(_request_id_of(task)))


@signals.task_postrun.connect
def _unbind(
    task_id: str | None = None,
    task: Task | None = None,  # type: ignore[type-arg]
    state: str | None = None,
    **_: Any,
) -> None:
    if task is not None:
        metrics.TASKS.labels(task.name, (state or "unknown").lower()).inc()
    tokens = _bound.pop(task_id or "", None)
    if tokens is not None:
        with contextlib.suppress(ValueError):  # a pool that ran the task in another context: nothing to undo
            logs.TASK.reset(tokens[0])
            logs.REQUEST_ID.reset(tokens[1])
