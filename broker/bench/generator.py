"""The benchmark's envelopes, made cheaply enough that the load generator never bounds the figures.

A real agency seals each payload to its readers (an X25519 agreement and key wrap per reader, AES-GCM:
about 1 ms of CPU) and signs the envelope (Ed25519 over the RFC 8785 form of header + ciphertext: about
0.08 ms). Sealing every message made building a run's envelopes take longer than the run itself, so the
benchmark seals one payload per route, once, before any timed window, through the real client
(``AgencyClient.build``, which fetches the readers' keys from the directory), and then gives every message
its own routing header (a fresh ``message_id``, ``conversation_id`` and ``created_at``) signed afresh with
the sender's key. The originator signature therefore still covers one unique message, and every check the
broker makes at intake (schema, sender, signature, key status, created-at window, policy, readers,
duplicates) runs as for real traffic; only the ciphertext repeats within a route, which the broker never
compares. The client itself is unchanged: this is the benchmark's fast path only.

Each request is signed (RFC 9421) by :class:`broker.crypto.httpsig.RequestSigner`: the same headers as
the client's ``sign_request`` at about a tenth of the CPU.

``fake_exchange`` stands in for the server when the generator is measured alone (``spoc bench
--generator-only``): an in-process ``httpx.MockTransport`` that serves readers' keys and answers every
submission at once, so the figures are the generator's own CPU, HTTP client included, network excluded.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from broker.client.agency import AgencyClient
from broker.client.credentials import AgencyCredentials
from broker.crypto import KeyPair, sign_envelope
from broker.crypto.httpsig import RequestSigner

__all__ = ["EnvelopeFactory", "fake_credentials", "fake_exchange", "route_payload"]


def route_payload(size: int = 2048) -> bytes:
    """The plaintext sealed once per route: ``size`` bytes of JSON around random padding."""
    return orjson.dumps({"bench": True, "pad": os.urandom(size // 2).hex()[: max(0, size - 32)]})


class EnvelopeFactory:
    """One sender's envelopes: each route's payload sealed once, a fresh header signed per message."""

    def __init__(self, key: KeyPair, templates: Mapping[str, Mapping[str, Any]]) -> None:
        self.key = key
        self.signer = RequestSigner(key)
        self._templates = {target: (dict(t["header"]), t["payload"]) for target, t in templates.items()}

    @classmethod
    def sealed_by(cls, client: AgencyClient, targets: Iterable[str], *, payload: bytes) -> EnvelopeFactory:
        """Seal ``payload`` once per target agency through the real client (its readers, its header)."""
        templates = {
            target: client.build(
                payload=payload,
                destination_country=target.split("-")[0],
                destination_agency=target,
                category="fraud",
                classification="RESTRICTED",
            )
            for target in targets
        }
        return cls(KeyPair.from_private_jwk(client.credentials.signing_key), templates)

    def envelope(self, target: str, message_id: str, *, conversation_id: str | None = None) -> dict[str, Any]:
        """A signed envelope to ``target`` with its own header: ``message_id``, a new conversation, now.

        The header is the client's own (``RoutingHeader`` as ``build`` dumped it) with those three fields
        replaced, so it is exactly what the client would have sent for this message."""
        header_template, jwe = self._templates[target]
        header = dict(header_template)
        header["message_id"] = message_id
        header["conversation_id"] = conversation_id or str(uuid.uuid4())
        header["created_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {
            "spoc": "1",
            "header": header,
            "payload": jwe,
            "signature": sign_envelope(header, jwe, key=self.key),
        }


def fake_credentials(agency_id: str) -> AgencyCredentials:
    """Fresh keys for ``agency_id``, for the generator measured alone (no server, no seeded directory)."""
    return AgencyCredentials(
        agency_id,
        KeyPair.generate("sig").private_jwk_json(),
        KeyPair.generate("enc").private_jwk_json(),
    )


_JWKS = re.compile(r"^/v1/directory/parties/([^/]+)/jwks$")
_ENVELOPE = b'"spoc":"1"'


def fake_exchange() -> httpx.MockTransport:
    """An in-process stand-in for the broker: each party's encryption key, and 202 to every submission.

    A batch is answered with ``accepted`` = the number of envelopes in its body (counted on the bytes, so
    the stand-in costs next to nothing and the figures stay the generator's).
    """
    keys: dict[str, KeyPair] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        found = _JWKS.match(request.url.path)
        if request.method == "GET" and found:
            key = keys.setdefault(found.group(1), KeyPair.generate("enc"))
            return httpx.Response(200, json={"keys": [key.public.jwk]})
        if request.method == "POST" and request.url.path == "/v1/messages":
            return httpx.Response(202, content=b'{"status":"accepted"}')
        if request.method == "POST" and request.url.path == "/v1/messages/batches":
            count = request.content.count(_ENVELOPE)
            return httpx.Response(200, content=b'{"accepted":%d,"refused":0,"results":[]}' % count)
        return httpx.Response(404, json={"detail": "not in the stand-in"})

    return httpx.MockTransport(handle)
