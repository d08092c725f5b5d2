"""``/health`` (the process answers), ``/ready`` (it can work: database, queue, keys) and ``/metrics``.

``/ready`` and ``/metrics`` are for operators' tools, not integrators, and stay out of the OpenAPI document.
A refused ``/metrics`` is a ``NotPermitted`` like any other denial: 403 problem+json and an ``access:denied``
audit entry, throttled per source address (``broker.audit.denials``), so a scanner is seen but cannot flood
the log.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from broker.errors import NotPermitted, Unavailable
from broker.ops.access import admitted
from broker.ops.metrics import scrape_registry
from broker.ops.ready import OK

router = APIRouter(tags=["ops"])
READY_RETRY_AFTER = 5


@router.get("/health", operation_id="health")
def health() -> dict[str, str]:
    """The process is up and answers; says nothing about what it depends on (that is ``/ready``)."""
    return {"status": "ok"}


@router.get("/ready", include_in_schema=False)
def ready(request: Request) -> dict[str, Any]:
    checks = request.app.state.readiness.check()
    failed = [name for name, result in checks.items() if result != OK]
    if failed:
        raise Unavailable(f"not ready: {', '.join(failed)}", checks=checks, retry_after=READY_RETRY_AFTER)
    return {"status": "ready", "checks": checks}


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text format: every process's counters and the node's state (``broker.ops``)."""
    client = request.client.host if request.client is not None else None
    if not admitted(
        request.app.state.settings, client=client, authorization=request.headers.get("authorization")
    ):
        raise NotPermitted(
            "metrics are read from the allowed networks (SPOC_METRICS_ALLOW) or with the token"
        )
    registry = scrape_registry(request.app.state.state_collector)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
