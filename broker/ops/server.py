"""A worker's own metrics port: ``GET /metrics`` of the worker's processes, for a worker with no API beside it.

A worker sharing ``PROMETHEUS_MULTIPROC_DIR`` with an API (``spoc run``: one directory per node) needs none,
the API's ``/metrics`` already adds its counters up; a worker in its own container or on its own host (the
docker-compose layout) sets ``SPOC_WORKER_METRICS_PORT`` and is scraped there. (Both at once would count the
worker twice.) The port serves the per-process counters only: the node's state is read by the API.

The same rule as the API decides who may read (``broker.ops.access``). A refusal is logged (once a minute per
source address) rather than audited: the worker's main process has no database session, and a port that
only the operator's network reaches is not where an agency or an officer knocks.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from broker.config import Settings
from broker.errors import InvalidInput
from broker.ops.access import admitted
from broker.ops.metrics import MULTIPROC_ENV, multiprocess_dir, scrape_registry

log = logging.getLogger("spoc.ops")
PROBLEM = "application/problem+json"
REFUSAL_LOG_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 10.0
REFUSALS_REMEMBERED = 1024

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    # A caller that connects and sends nothing (or trickles) is dropped after this many seconds, rather than
    # holding a thread for ever (StreamRequestHandler sets it on the socket).
    timeout = REQUEST_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged line by line (Prometheus scrapes every few seconds)."""


def _problem(start_response: StartResponse, status: int, title: str, detail: str) -> list[bytes]:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": "/metrics"}
    start_response(f"{status} {title}", [("Content-Type", PROBLEM)])
    return [orjson.dumps(body)]


def metrics_app(settings: Settings) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI app of the port: ``/metrics`` for admitted callers, 403 and 404 as problem+json."""
    refused_at: dict[str, float] = {}

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            return _problem(start_response, 404, "Not Found", "this port serves /metrics only")
        client = environ.get("REMOTE_ADDR")
        if not admitted(settings, client=client, authorization=environ.get("HTTP_AUTHORIZATION")):
            source = str(client)
            now = time.monotonic()
            if len(refused_at) >= REFUSALS_REMEMBERED:  # bounded: many sources only log more often
                refused_at.clear()
            if now - refused_at.get(source, -REFUSAL_LOG_SECONDS) >= REFUSAL_LOG_SECONDS:
                refused_at[source] = now
                log.warning("worker metrics refused to %s (not in SPOC_METRICS_ALLOW, no token)", source)
            return _problem(
                start_response,
                403,
                "Forbidden",
                "metrics are read from the allowed networks or with the token",
            )
        output = generate_latest(scrape_registry())
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [output]

    return app


def serve(settings: Settings) -> WSGIServer:
    """Start the port in a daemon thread of this process (the worker's main process, before it forks)."""
    if multiprocess_dir() is None:
        raise InvalidInput(
            f"SPOC_WORKER_METRICS_PORT needs {MULTIPROC_ENV} (an empty directory, per host) in the worker's "
            "environment: without it the pool's processes keep their counters to themselves"
        )
    host = settings.worker_metrics_host
    server = make_server(
        host,
        settings.worker_metrics_port,
        metrics_app(settings),
        server_class=_Server6 if ":" in host else _Server,
        handler_class=_Quiet,
    )
    threading.Thread(target=server.serve_forever, name="spoc-metrics", daemon=True).start()
    log.info("worker metrics on %s:%d/metrics", host, settings.worker_metrics_port)
    return server
