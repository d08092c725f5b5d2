"""Every HTTP request counted, timed and logged by its route template, never by its path.

The route label is the matched route's template (``/v1/messages/{message_id}``): a path with ids in it would
make a series per message and put ids in the metrics. A mounted app (static files) is labelled by its mount
point, an unmatched path ``unmatched``, an unusual method ``OTHER``: whatever a caller sends, the labels stay
a small fixed set. The access log line (logger ``spoc.access``) carries the same fields, the status, the
time taken and the request id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.ops.metrics import HTTP_DURATION, HTTP_REQUESTS

access = logging.getLogger("spoc.access")
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED: Final = "unmatched"


def route_template(scope: MutableMapping[str, Any]) -> str:
    """The template of the route that handled ``scope`` (after the app ran), bounded whatever was asked."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(template, str) and template.startswith("/"):
        return template
    mount = scope.get("root_path") or ""
    if isinstance(mount, str) and mount.startswith("/"):
        return f"{mount}/{{path}}"
    return UNMATCHED


class RequestMetrics:
    """ASGI middleware, outermost: counts each request by route template, method and status class, observes
    its duration up to the last byte of the response, and writes its access log line. (A plain ASGI class:
    see ``broker.app.RequestEdge``.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before it starts a response

        async def send_seeing_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_seeing_status)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            HTTP_REQUESTS.labels(route, method, f"{status // 100}xx").inc()
            HTTP_DURATION.labels(route, method).observe(elapsed)
            if access.isEnabledFor(logging.INFO):
                access.info(
                    "%s %s %d",
                    method,
                    route,
                    status,
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 1),
                        "request_id": scope.get("state", {}).get("request_id"),
                    },
                )
