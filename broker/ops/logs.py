"""Log lines an operator can search and join: one JSON object a line, carrying the request id.

Every line written while a request is handled carries ``request_id``: the server's own id of the request,
the one its response's ``X-Request-ID`` and its audit entries' ``request_id`` carry (``broker.app.RequestEdge``
makes it; ``broker.ops.http`` binds it here), so an operator goes from a log line to its audit entries
(``GET /v1/audit/entries?request_id=...``) and back. Work a request leaves in the outbox keeps the id: the
outbox row carries it and the worker binds it while it runs that row (``broker.outbox.service``), so the
worker's lines about it carry it too; a Celery task sent while an id is bound carries it in a header
(``workers.signals``). Worker lines also carry the task's name and id.

Lines never carry content: what the code logs is ids, kinds and outcomes, as in the audit log.

``configure`` is called by the API factory and by the worker at start. It is the only logging set-up of the
process, like ``logging.basicConfig``: if the root logger already has handlers that are not ours (pytest's
capture, an operator's ``--log-config``), it leaves them alone.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Final, TextIO

import orjson

from broker.config import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("spoc_log_request_id", default=None)
TASK: ContextVar[tuple[str, str] | None] = ContextVar("spoc_log_task", default=None)
"""The Celery task being run in this context: (name, id)."""

_STANDARD: Final = frozenset(
    {*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime", "taskName"}
)
_CONTEXT: Final = ("request_id", "task", "task_id")
_OURS: Final = "_spoc_handler"
QUIET: Final = ("celery", "httpx", "httpcore")
"""Loggers kept at WARNING unless the level is DEBUG: Celery logs every task received and succeeded at INFO,
several a second from the beat alone, which would drown the lines that matter."""


@contextmanager
def bound(request_id: str | None) -> Iterator[None]:
    """Log lines written inside carry ``request_id`` (nothing changes when it is None)."""
    if request_id is None:
        yield
        return
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


class ContextFilter(logging.Filter):
    """Put the bound request id and task on every record (None where there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:  # a line may name its request itself (the access log)
            record.request_id = REQUEST_ID.get()
        task = TASK.get()
        record.task, record.task_id = task if task is not None else (None, None)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts``, ``level``, ``logger``, ``message``, the context (``request_id``,
    ``task``, ``task_id``) where set, whatever the call passed in ``extra``, and ``exc`` for a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                document[key] = value
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message`` for a terminal (development)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(context)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        context = [str(getattr(record, key)) for key in _CONTEXT if getattr(record, key, None) is not None]
        record.context = f"[{' '.join(context)}] " if context else ""
        return super().format(record)


def configure(settings: Settings, *, stream: TextIO | None = None) -> bool:
    """Send every log line of the process to stderr (or ``stream``) as JSON or text, at the configured level;
    whether it did (not when another set-up owns the root logger). Idempotent."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, _OURS, False)]
    if len(root.handlers) > len(ours):
        return False
    for handler in ours:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _OURS, True)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if settings.logs_as_json else TextFormatter())
    root.addHandler(handler)
    logging.captureWarnings(True)  # a library's warning is a log line like any other (logger py.warnings)
    level = logging.getLevelName(settings.logging_level)
    root.setLevel(level)
    # uvicorn's own loggers keep their text handlers unless they go through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    for name in QUIET:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    return True
