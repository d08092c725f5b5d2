"""Agency authentication: HTTP Message Signatures (RFC 9421) with Ed25519, over ``http-message-signatures``.

Why signatures and not bearer tokens: an agency system proves every call with the same key it signs its
envelopes with, so the broker holds no shared secret that could leak and be replayed from elsewhere.

What a request must sign (``COVERED``): ``@method``, ``@path``, ``@query`` and, when there is a body,
``content-digest`` (RFC 9530, SHA-512 or SHA-256 of the exact bytes). ``@authority`` is deliberately not
covered: an agency may reach the broker through a reverse proxy under another host name, and the key id
already binds the call to the agency. Signature parameters: ``keyid`` (the RFC 7638 thumbprint of the
agency's signing key), ``alg="ed25519"``, ``created`` and a random ``nonce``.

What the broker checks (``verify_request``): exactly one signature, every covered component present,
the digest matches the body, ``created`` within ``max_age`` seconds (and not in the future beyond the
library's 5 s skew), a nonce present. Remembering nonces (replay) is the caller's job, because it needs
storage; ``VerifiedRequest.nonce`` gives it what to remember. Any failure is one
:class:`broker.errors.NotAuthenticated` with a fixed message.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

import http_message_signatures as hms
from http_message_signatures import algorithms

from broker.crypto.keys import KeyPair, PublicKey
from broker.errors import NotAuthenticated, NotFound, VerificationError

COVERED: Final = ("@method", "@path", "@query")
TAG: Final = "spoc-agency"
_FAILED: Final = "the request signature is missing, expired, replayed or does not verify"


@dataclass
class _Message:
    """The minimal message interface the library resolves components from."""

    method: str
    url: str
    headers: MutableMapping[str, str]


class _OneKey(hms.HTTPSignatureKeyResolver):
    def __init__(self, kid: str, *, private: Any = None, public: Any = None) -> None:
        self._kid, self._private, self._public = kid, private, public

    def resolve_private_key(self, key_id: str) -> Any:
        if key_id != self._kid or self._private is None:
            raise KeyError(key_id)
        return self._private

    def resolve_public_key(self, key_id: str) -> Any:
        return self._public if key_id == self._kid else None


def sign_request(
    method: str,
    url: str,
    headers: MutableMapping[str, str],
    body: bytes,
    *,
    key: KeyPair,
    created: datetime.datetime | None = None,
    nonce: str | None = None,
) -> None:
    """Add ``Signature-Input``, ``Signature`` (and ``Content-Digest`` for a body) to ``headers`` in place."""
    if key.use != "sig":
        raise ValueError("HTTP requests are signed with a 'sig' key")
    signer = hms.HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=_OneKey(key.kid, private=key.to_jwcrypto().get_op_key("sign")),
    )
    message = _Message(method.upper(), url, headers)
    signer.sign(
        message,
        key_id=key.kid,
        created=created or datetime.datetime.now(datetime.UTC),
        nonce=nonce or secrets.token_urlsafe(16),
        tag=TAG,
        covered_component_ids=COVERED,
        body=body if body else None,
    )


@dataclass(frozen=True)
class VerifiedRequest:
    kid: str
    nonce: str
    created: datetime.datetime


def signature_kid(headers: Mapping[str, str]) -> str:
    """The ``keyid`` a request claims (unverified), to look up the agency and its key."""
    raw = headers.get("signature-input", "")
    marker = 'keyid="'
    start = raw.find(marker)
    end = raw.find('"', start + len(marker)) if start >= 0 else -1
    if start < 0 or end < 0:
        raise NotAuthenticated(_FAILED)
    return raw[start + len(marker) : end]


def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    resolve: Callable[[str], PublicKey],
    max_age: int,
) -> VerifiedRequest:
    """Verify an agency's request signature; return who signed it, with the nonce to remember."""
    try:
        kid = signature_kid(headers)
        public = resolve(kid)
        if public.use != "sig":
            raise NotAuthenticated(_FAILED)
        verifier = hms.HTTPMessageVerifier(
            signature_algorithm=algorithms.ED25519,
            key_resolver=_OneKey(kid, public=public.to_jwcrypto().get_op_key("verify")),
        )
        message = _Message(method.upper(), url, {k.lower(): v for k, v in headers.items()})
        required = [*COVERED, "content-digest"] if body else list(COVERED)
        (result,) = verifier.verify(
            message,
            max_age=datetime.timedelta(seconds=max_age),
            expect_tag=TAG,
            require_components=required,
            body=body,
        )
        nonce = result.parameters.get("nonce")
        created = result.parameters.get("created")
        if not isinstance(nonce, str) or not nonce or not isinstance(created, int):
            raise NotAuthenticated(_FAILED)
        return VerifiedRequest(kid, nonce, datetime.datetime.fromtimestamp(created, datetime.UTC))
    except (hms.HTTPMessageSignaturesException, NotFound, VerificationError, ValueError, KeyError) as exc:
        raise NotAuthenticated(_FAILED) from exc
