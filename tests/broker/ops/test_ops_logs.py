"""JSON log lines with the request id (``broker.ops.logs``), and the id kept by the outbox for the worker."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.config import Settings
from broker.ops import logs
from broker.outbox import service as outbox
from broker.outbox.models import OutboxItem


def _line(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    logs.ContextFilter().filter(record)
    return formatter.format(record)


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("spoc.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_carries_the_bound_request_id_and_extras() -> None:
    with logs.bound("rid-123"):
        line = json.loads(_line(logs.JsonFormatter(), _record("push to %s failed", "MK-MOI", attempt=2)))
    assert line["message"] == "push to MK-MOI failed"
    assert line["request_id"] == "rid-123"
    assert line["attempt"] == 2
    assert line["level"] == "WARNING"
    assert line["logger"] == "spoc.test"
    assert line["ts"].endswith("+00:00")
    outside = json.loads(_line(logs.JsonFormatter(), _record("no request")))
    assert "request_id" not in outside
    assert "task" not in outside


def test_a_task_and_a_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failure = sys.exc_info()
    record = logging.LogRecord("spoc.test", logging.ERROR, __file__, 1, "failed", None, failure)
    token = logs.TASK.set(("spoc.delivery.push", "task-1"))
    try:
        line = json.loads(_line(logs.JsonFormatter(), record))
        text = _line(logs.TextFormatter(), _record("plain"))
    finally:
        logs.TASK.reset(token)
    assert line["task"] == "spoc.delivery.push"
    assert line["task_id"] == "task-1"
    assert "ValueError: boom" in line["exc"]
    assert "[spoc.delivery.push task-1] plain" in text


@contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger without pytest's handlers (added anew for each phase of a test, so taken off inside
    the test), as a server process starts; restored after."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in logs.QUIET}
    root.handlers.clear()
    try:
        yield root
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
        for name, was in quiet.items():
            logging.getLogger(name).setLevel(was)
        logging.captureWarnings(False)


def test_configure_sets_up_json_once_and_leaves_foreign_set_ups_alone() -> None:
    with bare_root() as root:
        _configure_on(root)


def _configure_on(bare_root: logging.Logger) -> None:
    stream = io.StringIO()
    settings = Settings(environment="test")  # JSON at INFO, as outside development
    assert logs.configure(settings, stream=stream)
    assert logs.configure(settings, stream=stream)  # again: replaces its own handler, adds none
    assert len(bare_root.handlers) == 1
    with logs.bound("rid-9"):
        logging.getLogger("spoc.anything").info("hello")
    logging.getLogger("celery.worker").info("a task received")  # kept at WARNING
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [(x["message"], x["request_id"]) for x in lines] == [("hello", "rid-9")]
    bare_root.addHandler(logging.NullHandler())  # someone else's set-up (an operator's --log-config)
    assert not logs.configure(settings, stream=stream)


def test_the_outbox_keeps_the_request_id_for_the_worker(
    db: Session, caplog: pytest.LogCaptureFixture
) -> None:
    with logs.bound("rid-outbox"):
        outbox.enqueue(db, kind="ops-test", payload={"n": 1})
    outbox.enqueue(db, kind="ops-test", payload={"n": 2})
    db.flush()
    rows = db.scalars(select(OutboxItem).where(OutboxItem.kind == "ops-test").order_by(OutboxItem.id)).all()
    assert [r.payload for r in rows] == [{"n": 1, "request_id": "rid-outbox"}, {"n": 2}]

    seen: list[str | None] = []

    def handler(session: Session, row: OutboxItem) -> None:
        seen.append(logs.REQUEST_ID.get())
        if row.payload["n"] == 2:
            raise RuntimeError("row 2 fails")

    with caplog.at_level(logging.WARNING, logger="spoc.outbox"):
        assert outbox.process(db, [r.id for r in rows], {"ops-test": handler}) == 1
    assert seen == ["rid-outbox", None]
    assert any("failed: RuntimeError" in r.getMessage() for r in caplog.records)
