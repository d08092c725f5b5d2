"""A small synchronous HTTP client for agency systems, used by ``spoc demo`` and the tests."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from broker.client.credentials import AgencyCredentials
from broker.client.custody import CustodyError, CustodyReport, check_chain, envelope_digest
from broker.crypto import (
    KeyPair,
    PublicKey,
    open_sealed,
    seal,
    sign_envelope,
    sign_receipt,
    verify_envelope,
    verify_receipt,
)
from broker.crypto.httpsig import sign_request
from broker.errors import VerificationError
from schemas.content import Content, claims_structure
from schemas.envelope import RoutingHeader


class SignedRequests(httpx.Auth):
    """Sign every request with the agency's key (RFC 9421): the broker holds no secret of ours."""

    requires_request_body = True

    def __init__(self, key: KeyPair) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sign_request(request.method, str(request.url), request.headers, request.content, key=self._key)
        yield request


_JSON = {"Content-Type": "application/json"}


def _json(body: Any) -> bytes:
    """Bodies through orjson: a batch of 100 envelopes is 400 KB, and the standard library's encoder was the
    load generator's largest cost in ``spoc bench``. (The envelope signature covers the canonical signing
    view, never these bytes, so how they are spaced is free.)"""
    return orjson.dumps(body)


class ClientError(Exception):
    """A non-2xx answer from the broker, with its RFC 9457 problem body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status}: {problem.get('detail') or problem}")
        self.status = status
        self.problem = problem


@dataclass(frozen=True)
class OpenedMessage:
    """A delivered message after every check: the originator's signature and each hop's countersignature."""

    message_id: str
    header: RoutingHeader
    plaintext: bytes
    custody: list[dict[str, Any]]
    digest: str

    @property
    def content(self) -> Content | None:
        """The payload as structured content (``schemas.content``) if it claims that format, else None
        (read ``plaintext`` as text). Raises pydantic's ValidationError if it claims it and does not fit:
        the sender's node checks this at intake, so that means a sender on a node without the check."""
        try:
            document = json.loads(self.plaintext)
        except (ValueError, UnicodeDecodeError):
            return None
        return Content.model_validate(document) if claims_structure(document) else None


class AgencyClient:
    def __init__(
        self,
        base_url: str,
        credentials: AgencyCredentials,
        *,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.credentials = credentials
        self.agency_id = credentials.agency_id
        self.country = credentials.agency_id.split("-", 1)[0]
        self._sig = KeyPair.from_private_jwk(credentials.signing_key)
        self._enc = KeyPair.from_private_jwk(credentials.encryption_key)
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout, transport=transport, auth=SignedRequests(self._sig)
        )
        self._keys: dict[str, list[PublicKey]] = {}
        self._registries: dict[str, list[dict[str, Any]]] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgencyClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- HTTP -----------------------------------------------------------------------------------

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, url, **kwargs)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text[:500]}
            raise ClientError(response.status_code, problem)
        return response

    def party_keys(self, party_id: str) -> list[PublicKey]:
        if party_id not in self._keys:
            jwks = self._call("GET", f"/v1/directory/parties/{party_id}/jwks").json()
            self._keys[party_id] = [PublicKey.from_jwk(k) for k in jwks["keys"]]
        return self._keys[party_id]

    def forget_keys(self, party_id: str) -> None:
        """Drop the cached keys of ``party_id`` (it rotated); the next use fetches them again."""
        self._keys.pop(party_id, None)
        self._registries.pop(party_id, None)

    def _key(self, party_id: str, use: str) -> PublicKey:
        for key in reversed(self.party_keys(party_id)):
            if key.use == use:
                return key
        raise VerificationError(f"no {use} key published for {party_id}")

    def _resolver(self, party_id: str) -> Any:
        def resolve(kid: str) -> PublicKey:
            for key in self.party_keys(party_id):
                if key.kid == kid:
                    return key
            raise VerificationError("unknown signing key")

        return resolve

    def _originator_resolver(self, party_id: str, *, signed_at: datetime) -> Any:
        """Keys from the registry: a key revoked later still verifies what was signed before its revocation.

        The signing time is the sender's claim; it is trusted here only together with the chain of custody
        (checked next), because the broker refuses revoked keys at intake, so a message that went through
        the contact points was accepted before the revocation.
        """

        def resolve(kid: str) -> PublicKey:
            for entry in self.key_registry(party_id):
                if entry["kid"] != kid or entry["use"] != "sig":
                    continue
                revoked = entry.get("revoked_at")
                if revoked and datetime.fromisoformat(revoked) <= signed_at:
                    raise VerificationError("signed after the key was revoked")
                return PublicKey.from_jwk(entry["jwk"])
            raise VerificationError("unknown signing key")

        return resolve

    # --- sending --------------------------------------------------------------------------------

    def build(
        self,
        *,
        payload: bytes | Content,
        destination_country: str,
        category: str,
        classification: str = "RESTRICTED",
        legal_basis: str = "bilateral police-cooperation agreement",
        message_type: str = "request",
        destination_agency: str | None = None,
        conversation_id: str | None = None,
        in_reply_to: str | None = None,
        handling_codes: tuple[str, ...] = ("H0",),
        priority: dict[str, Any] | None = None,
        evaluation: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A signed envelope whose payload is encrypted to every reader on the route.

        ``payload`` is structured content (``schemas.content.Content``: persons, vehicles, phones...,
        which the contact points cross-check and show as labelled fields) or bytes sent as they are (text
        or any JSON, shown to officers as text). Structured content is checked here by pydantic already;
        the sender's node checks it again and refuses what does not fit (422, ``reason: content-schema``).
        """
        if isinstance(payload, Content):
            payload = payload.to_payload()
        header = RoutingHeader.model_validate(
            {
                "message_id": str(uuid.uuid4()),
                "conversation_id": conversation_id or str(uuid.uuid4()),
                "in_reply_to": in_reply_to,
                "type": message_type,
                "sender_agency": self.agency_id,
                "origin_country": self.country,
                "destination_country": destination_country,
                "destination_agency": destination_agency,
                "category": category,
                "legal_basis": legal_basis,
                "classification": classification,
                "handling_codes": list(handling_codes),
                "evaluation": evaluation or {"source_reliability": "B", "information_accuracy": "2"},
                "priority": priority or {"level": "normal"},
                "created_at": datetime.now(UTC),
            }
        )
        readers = [self._key(f"{self.country}-SPOC", "enc"), self._key(f"{destination_country}-SPOC", "enc")]
        if destination_agency:
            readers.append(self._key(destination_agency, "enc"))
        jwe = seal(payload, readers=readers)
        header_json = header.model_dump(mode="json", exclude_none=True)
        return {
            "spoc": "1",
            "header": header_json,
            "payload": jwe,
            "signature": sign_envelope(header_json, jwe, key=self._sig),
        }

    def submit(
        self, envelope: dict[str, Any], *, idempotency_key: str | None = None, attempts: int = 3
    ) -> dict[str, Any]:
        """Post ``envelope`` under an ``Idempotency-Key`` (its message id unless given).

        A connection lost before the answer arrived (the server closed an idle keep-alive connection as
        the request went out, a proxy dropped it, a read timed out) leaves the sender not knowing whether
        the message was accepted. Because of the key, sending it again is safe: the broker answers a
        repeat with the first answer (``Idempotent-Replayed``) and never stores the message twice. So
        transport failures are retried, ``attempts`` times in all; every attempt is signed afresh (a new
        nonce), and HTTP errors are never retried here.
        """
        key = idempotency_key or envelope["header"]["message_id"]
        return self._post_idempotent("/v1/messages", _json(envelope), key=key, attempts=attempts)

    def submit_batch(
        self, envelopes: list[dict[str, Any]], *, idempotency_key: str | None = None, attempts: int = 3
    ) -> dict[str, Any]:
        """Post several envelopes in one request (``POST /v1/messages/batches``); the answer lists, in order,
        each envelope's receipt or problem (``results``), with ``accepted`` and ``refused`` counts.

        Retried on transport failures like :meth:`submit`, under an ``Idempotency-Key`` that is the
        SHA-256 of the request body unless given, so a batch whose answer was lost is stored once, and a
        corrected batch (envelopes signed again) is a new request. (An envelope already stored by an earlier
        batch comes back as 409 in its slot.)
        """
        body = _json({"envelopes": envelopes})
        key = idempotency_key or "batch-" + hashlib.sha256(body).hexdigest()
        return self._post_idempotent("/v1/messages/batches", body, key=key, attempts=attempts)

    def _post_idempotent(self, path: str, body: bytes, *, key: str, attempts: int) -> dict[str, Any]:
        """POST ``body`` under ``Idempotency-Key: key``, sent again on transport failures (see :meth:`submit`)."""
        attempt = 1
        while True:
            try:
                response = self._call("POST", path, content=body, headers={**_JSON, "Idempotency-Key": key})
            except httpx.TransportError:
                if attempt >= attempts:
                    raise
                time.sleep(0.05 * 4 ** (attempt - 1))
                attempt += 1
                continue
            result: dict[str, Any] = response.json()
            return result

    def status(self, message_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/messages/{message_id}").json()
        return result

    # --- receiving ------------------------------------------------------------------------------

    def inbox(self, *, limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        """Look at unacknowledged messages without leasing them (``lease`` is for consuming)."""
        params = {"limit": limit, "visibility_timeout": 0, "after": after}
        result: list[dict[str, Any]] = self._call("GET", "/v1/inbox", params=params).json()
        return result

    def inbox_all(self, *, page: int = 200) -> Iterator[dict[str, Any]]:
        """Every unacknowledged message without leasing, following the server's ``Link: rel=next``."""
        url: str | None = "/v1/inbox"
        params: dict[str, int] | None = {"limit": page, "visibility_timeout": 0}
        while url is not None:
            response = self._call("GET", url, params=params)
            rows: list[dict[str, Any]] = response.json()
            yield from rows
            url, params = response.links.get("next", {}).get("url"), None

    def lease(self, *, limit: int = 100, visibility_timeout: int | None = None) -> list[dict[str, Any]]:
        """Lease unacknowledged messages: hidden from other readers for ``visibility_timeout`` seconds
        (the server's default if None). Acknowledge each (``ack``) or it comes back; a message can thus
        arrive twice, so de-duplicate by ``message_id``."""
        params: dict[str, int] = {"limit": limit}
        if visibility_timeout is not None:
            params["visibility_timeout"] = visibility_timeout
        result: list[dict[str, Any]] = self._call("GET", "/v1/inbox", params=params).json()
        return result

    def set_push_endpoint(self, url: str | None) -> dict[str, Any]:
        """Register the HTTPS endpoint the broker pushes deliveries to (None: pull only)."""
        result: dict[str, Any] = self._call("PUT", "/v1/inbox/push-endpoint", json={"url": url}).json()
        return result

    def key_registry(self, party_id: str) -> list[dict[str, Any]]:
        """Every key ``party_id`` has had, with its status (for judging signatures made in the past)."""
        if party_id not in self._registries:
            self._registries[party_id] = self._call("GET", f"/v1/directory/parties/{party_id}/keys").json()
        return self._registries[party_id]

    def custody(self, item: dict[str, Any]) -> CustodyReport:
        """The hop-by-hop report of an inbox item's chain of custody (never raises)."""
        return check_chain(item, registry=self.key_registry)

    def open(self, item: dict[str, Any]) -> OpenedMessage:
        """Verify the originator's signature and every hop's countersignature, then decrypt.

        Raises ``VerificationError`` if the originator's signature fails and ``CustodyError`` naming
        the first missing or bad hop; decrypts only a message whose whole chain verified.
        """
        envelope = item["envelope"]
        header = RoutingHeader.model_validate(envelope["header"])
        verify_envelope(
            envelope["header"],
            envelope["payload"],
            envelope["signature"],
            resolve=self._originator_resolver(header.sender_agency, signed_at=header.created_at),
        )
        report = self.custody(item)
        problem = report.problem()
        if problem is not None:
            raise CustodyError(problem)
        plaintext = open_sealed(envelope["payload"], key=self._enc)
        statements = [dict(h.statement) for h in report.hops if h.statement is not None]
        return OpenedMessage(item["message_id"], header, plaintext, statements, envelope_digest(envelope))

    def receipt(self, opened: OpenedMessage) -> str:
        """A signed receipt naming the message and the digest of what was received."""
        return self.receipt_for(opened.message_id, opened.digest)

    def receipt_for(self, message_id: str, digest: str) -> str:
        """A signed receipt for ``message_id`` over ``digest``, received now (docs/receipts.md)."""
        statement = {
            "type": "receipt",
            "message_id": message_id,
            "digest": digest,
            "agency": self.agency_id,
            "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        return sign_receipt(statement, key=self._sig)

    def ack(self, opened: OpenedMessage, *, receipt: str | None = None) -> None:
        """Acknowledge receipt with a signed receipt; the message leaves the inbox for good."""
        body = {"receipt": receipt or self.receipt(opened)}
        self._call("POST", f"/v1/inbox/{opened.message_id}/ack", json=body)  # acknowledging twice is harmless

    def verify_receipts(self, status: dict[str, Any]) -> list[dict[str, Any]]:
        """Verify the signed receipts in a message status (as its sender); returns their statements."""
        statements = []
        for entry in status.get("receipts", []):
            statement = verify_receipt(entry["receipt"], resolve=self._resolver(entry["agency"]))
            if (
                statement.get("message_id") != status["message_id"]
                or statement.get("agency") != entry["agency"]
            ):
                raise VerificationError("a receipt names another message or agency")
            statements.append(statement)
        return statements

    def reply(
        self, original: OpenedMessage, *, payload: bytes | Content, message_type: str = "response"
    ) -> dict[str, Any]:
        h = original.header
        return self.build(
            payload=payload,
            destination_country=h.origin_country,
            destination_agency=h.sender_agency,
            category=h.category,
            classification=h.classification,
            legal_basis=h.legal_basis,
            message_type=message_type,
            conversation_id=str(h.conversation_id),
            in_reply_to=str(h.message_id),
            handling_codes=tuple(h.handling_codes),
        )
