"""The worker's wiring on Celery's signals (``workers.signals``): the request id rides a task's header into the
task's log context, and every finished task is counted."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from celery import signals as celery_signals

from broker.ops import logs
from broker.ops.metrics import REGISTRY
from workers import signals


class Task:
    """What the handlers read of a Celery task: its name and its request (the message's headers)."""

    name = "spoc.test"

    def __init__(self, request: SimpleNamespace) -> None:
        self.request = request


def _tasks(name: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("spoc_tasks_total", {"task": name, "outcome": outcome})
    return value or 0.0


def test_a_task_sent_during_a_request_runs_with_its_id() -> None:
    headers: dict[str, Any] = {}
    with logs.bound("rid-in-request"):
        celery_signals.before_task_publish.send(sender="spoc.test", headers=headers, body=None)
    assert headers == {signals.HEADER: "rid-in-request"}

    task = Task(request=SimpleNamespace(**headers))
    before = _tasks("spoc.test", "success")
    celery_signals.task_prerun.send(sender=task, task_id="t-1", task=task, args=(), kwargs={})
    assert logs.REQUEST_ID.get() == "rid-in-request"
    assert logs.TASK.get() == ("spoc.test", "t-1")
    celery_signals.task_postrun.send(sender=task, task_id="t-1", task=task, state="SUCCESS", retval=None)
    assert logs.REQUEST_ID.get() is None
    assert logs.TASK.get() is None
    assert _tasks("spoc.test", "success") == before + 1


def test_a_task_sent_outside_a_request_carries_no_id() -> None:
    headers: dict[str, Any] = {}
    celery_signals.before_task_publish.send(sender="spoc.test", headers=headers, body=None)
    assert headers == {}
