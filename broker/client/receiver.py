"""The receiving side of push delivery, for agency systems: verify, de-duplicate, handle, acknowledge.

The broker POSTs each delivery to the agency's registered endpoint as the same JSON document as a pull
inbox item, signed (RFC 9421) by the contact point of the agency's country. ``PushReceiver.receive``:

1. verifies that HTTP signature with the contact point's published key (401 otherwise);
2. answers a message id it has seen without handling it again, with a **fresh** receipt: the statement it
   signed the first time (same message id, digest and agency; the pushed envelope must still have that
   digest) with ``received_at`` now. The broker delivers at least once (after a lost answer or a killed
   worker the same push comes again, possibly much later), and it refuses a receipt whose ``received_at``
   is more than ``SPOC_RECEIPT_MAX_AGE_SECONDS`` (1 h) old, so the first receipt cannot simply be replayed;
3. verifies the originator's signature and every contact point's countersignature, and decrypts
   (``AgencyClient.open``; 422 if anything fails);
4. calls the application's ``handle`` exactly once per message id, then stores and returns the signed
   receipt (200 ``{"receipt": ...}``). If ``handle`` raises, the answer is 500 and the broker retries.

``serve`` runs it as a small threaded HTTP server (tests, a reference integration); a real agency
system puts ``receive`` behind its own web server and keeps the seen ids in its own database
(``SeenStore``), so that de-duplication survives its restarts.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import orjson

from broker.client.agency import AgencyClient, OpenedMessage
from broker.client.custody import envelope_digest
from broker.crypto import PublicKey, statement_of
from broker.crypto.httpsig import verify_request
from broker.errors import NotAuthenticated, VerificationError

__all__ = ["MemoryStore", "PushReceiver", "ReceiverServer", "SeenStore", "serve"]

MAX_PUSH_BYTES = 16 * 1024 * 1024


class SeenStore(Protocol):
    """Message ids already handled, with the receipt given for each."""

    def get(self, message_id: str) -> str | None: ...

    def put(self, message_id: str, receipt: str) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._seen: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, message_id: str) -> str | None:
        with self._lock:
            return self._seen.get(message_id)

    def put(self, message_id: str, receipt: str) -> None:
        with self._lock:
            self._seen.setdefault(message_id, receipt)


@dataclass
class Counters:
    received: int = 0  # pushes handled for the first time
    duplicates: int = 0  # pushes of a message already handled (answered with a fresh receipt, not handled)
    refused: int = 0  # pushes refused (signature, chain of custody)


class PushReceiver:
    def __init__(
        self,
        client: AgencyClient,
        handle: Callable[[OpenedMessage], None],
        *,
        store: SeenStore | None = None,
        max_age: int = 300,
    ) -> None:
        self.client = client
        self.handle = handle
        self.store: SeenStore = store or MemoryStore()
        self.max_age = max_age
        self.counters = Counters()
        self._count_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(64)]  # one message id is handled by one thread

    def _contact_point_key(self, kid: str) -> PublicKey:
        party = f"{self.client.country}-SPOC"
        for refresh in (False, True):
            if refresh:
                self.client.forget_keys(party)  # rotated since we cached its keys
            for key in self.client.party_keys(party):
                if key.kid == kid and key.use == "sig":
                    return key
        raise VerificationError("not a key of the contact point")

    def _count(self, name: str) -> None:
        with self._count_lock:
            setattr(self.counters, name, getattr(self.counters, name) + 1)

    def receive(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """Handle one push; returns (HTTP status, JSON body)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            verify_request(method, url, lowered, body, resolve=self._contact_point_key, max_age=self.max_age)
        except NotAuthenticated:
            self._count("refused")
            return 401, {"title": "the push is not signed by the contact point"}
        try:
            item = orjson.loads(body)
            message_id = str(item["message_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._count("refused")
            return 400, {"title": "not an inbox item"}
        stripe = self._stripes[
            int(hashlib.sha256(message_id.encode()).hexdigest()[:8], 16) % len(self._stripes)
        ]
        with stripe:
            seen = self.store.get(message_id)
            if seen is not None:
                try:
                    receipt = self._receipt_again(seen, item)
                except (VerificationError, KeyError, ValueError, TypeError) as exc:
                    self._count("refused")
                    return 422, {"title": "not the message acknowledged before", "detail": str(exc)[:300]}
                self._count("duplicates")
                return 200, {"receipt": receipt, "duplicate": True}
            try:
                opened = self.client.open(item)
            except (VerificationError, KeyError, ValueError) as exc:
                self._count("refused")
                return 422, {"title": "the message does not verify", "detail": str(exc)[:300]}
            self.handle(opened)
            receipt = self.client.receipt(opened)
            self.store.put(message_id, receipt)
        self._count("received")
        return 200, {"receipt": receipt}

    def _receipt_again(self, first: str, item: Mapping[str, Any]) -> str:
        """A new receipt for a message handled before: the first statement, signed again with ``received_at``
        now, provided the pushed envelope is still the one signed for (same digest)."""
        statement = statement_of(first)  # our own token, taken from our own store
        if envelope_digest(item["envelope"]) != statement.get("digest"):
            raise VerificationError("the envelope's digest is not the one acknowledged before")
        return self.client.receipt_for(str(statement["message_id"]), str(statement["digest"]))


class ReceiverServer:
    """A running ``serve``: its URL, and ``stop()``."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server, self._thread = server, thread
        host, port = server.server_address[:2]
        self.url = f"http://{host!s}:{port}/push"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve(receiver: PushReceiver, *, host: str = "127.0.0.1", port: int = 0) -> ReceiverServer:
    """Run ``receiver`` on ``host:port`` (0: any free port) in a background thread."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_PUSH_BYTES:
                self._answer(413, {"title": "too large"})
                return
            body = self.rfile.read(length)
            url = f"http://{self.headers.get('host', host)}{self.path}"
            try:
                status, answer = receiver.receive("POST", url, dict(self.headers.items()), body)
            except Exception as exc:  # the application's handler failed: the broker retries
                status, answer = (
                    500,
                    {"title": "the receiving application failed", "detail": type(exc).__name__},
                )
            self._answer(status, answer)

        def _answer(self, status: int, answer: dict[str, Any]) -> None:
            data = orjson.dumps(answer)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: the broker and the tests count what matters

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            return  # a client that hung up (the broker's worker was killed mid-push) is not our error

    server = Server((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="spoc-push-receiver", daemon=True)
    thread.start()
    return ReceiverServer(server, thread)
