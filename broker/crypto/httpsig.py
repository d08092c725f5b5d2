"""Agency authentication: HTTP Message Signatures (RFC 9421) with Ed25519, over ``http-message-signatures``.

Why signatures and not bearer tokens: an agency system proves every call with the same key it signs its
envelopes with, so the broker holds no shared secret that could leak and be replayed from elsewhere.

The profile (byte for byte in ``docs/agency-signing.md``): one signature, labelled ``spoc-agency``, whose
covered components are exactly ``"@method" "@path" "@query"`` and, when the request has a body,
``"content-digest"`` (RFC 9530, ``sha-256`` or ``sha-512`` of the exact body bytes), in that order; its
parameters are ``created``, ``keyid`` (the RFC 7638 thumbprint of the agency's Ed25519 signing key),
``nonce`` (random, at most 128 characters), ``tag="spoc-agency"`` and optionally ``alg="ed25519"`` and
``expires``. ``@authority`` is deliberately not covered: an agency may reach the broker through a reverse
proxy under another host name, and the key id already binds the call to the agency.

What the broker checks (``verify_request``), in this order, each failure a
:class:`broker.errors.NotAuthenticated` whose ``reason`` names the check (:data:`REASONS`): the two headers
are there and parse; the label and tag; the parameters; the covered components; the key id; ``created``
within the window (``max_age`` seconds old at most, :data:`CLOCK_SKEW` in the future at most); the body's
digest; the signature itself. The details say what was expected, never anything secret (the broker holds
no secret of the agency's; a failing signature says only that it failed). Remembering nonces (replay,
reason ``nonce``) is the caller's job, because it needs storage; ``VerifiedRequest.nonce`` gives it what to
remember.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import secrets
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn
from urllib.parse import urlsplit

import http_message_signatures as hms
import http_sf
from http_message_signatures import algorithms
from http_message_signatures.digests import ContentDigest

from broker.crypto.keys import KeyPair, PublicKey
from broker.errors import NotAuthenticated, NotFound, VerificationError

__all__ = [
    "ALG",
    "CLOCK_SKEW",
    "COVERED",
    "LABEL",
    "MAX_NONCE",
    "NODE_LABEL",
    "REASONS",
    "TAG",
    "RequestSigner",
    "VerifiedRequest",
    "covered_components",
    "request_failure",
    "sign_request",
    "signature_kid",
    "verify_request",
]

COVERED: Final = ("@method", "@path", "@query")
DIGEST: Final = "content-digest"
LABEL: Final = "spoc-agency"
NODE_LABEL: Final = "spoc-node"
"""The label (and tag) of a node's transport signature on a hop between nodes (``broker.hop``)."""
TAG: Final = "spoc-agency"
ALG: Final = "ed25519"
MAX_NONCE: Final = 128
# How far in the future ``created`` may be (the agency's clock ahead of ours); also the library's own skew.
CLOCK_SKEW: Final = datetime.timedelta(seconds=5)
_PARAMETERS: Final = frozenset({"created", "keyid", "nonce", "tag", "alg", "expires"})

#: The ``reason`` member of a 401 problem, one per check, in the order they are made.
REASONS: Final = (
    "missing-headers",
    "malformed-headers",
    "signature-label",
    "signature-parameters",
    "covered-components",
    "key-id",
    "window",
    "digest",
    "signature",
    "nonce",
    "unlisted-node",  # a hop between nodes signed by a key the regional directory does not list (broker.hop)
)
_PROFILE: Final = "see docs/agency-signing.md"


def request_failure(reason: str, detail: str) -> NotAuthenticated:
    """The one error of request authentication, naming the check that failed (one of :data:`REASONS`)."""
    if reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r}")
    return NotAuthenticated(detail, reason=reason)


def _fail(reason: str, detail: str) -> NoReturn:
    raise request_failure(reason, detail)


def covered_components(body: bytes) -> tuple[str, ...]:
    """The components a request must cover, in this order: with a body, its ``content-digest`` too."""
    return (*COVERED, DIGEST) if body else COVERED


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
    label: str = LABEL,
) -> None:
    """Add ``Signature-Input``, ``Signature`` (and ``Content-Digest`` for a body) to ``headers`` in place.

    ``label`` (also the ``tag``) says who signs: ``spoc-agency`` for an agency, ``spoc-node`` for a node's
    transport key on a hop between nodes; a signature made for one is never accepted as the other."""
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
        label=label,
        tag=label,
        covered_component_ids=COVERED,
        body=body if body else None,
    )


class RequestSigner:
    """:func:`sign_request` for one key and the fixed profile, precomputed: the same headers, byte for byte.

    The profile fixes every choice (components, parameter order, algorithm), so the signature base is a
    format string; the general library spends about 0.4 ms per request serialising structured fields, which
    made the benchmark's load generator (``broker.bench.generator``) cost as much CPU as the API it drives.
    ``sign_request`` stays the reference: ``tests/broker/crypto`` checks that both give identical headers for
    the same ``created`` and ``nonce`` (Ed25519 is deterministic) and that ``verify_request`` accepts them.
    """

    __slots__ = ("_kid", "_label", "_private")

    def __init__(self, key: KeyPair, *, label: str = LABEL) -> None:
        if key.use != "sig":
            raise ValueError("HTTP requests are signed with a 'sig' key")
        if label not in (LABEL, NODE_LABEL):
            raise ValueError(f"unknown signature label {label!r}")
        self._private = key.to_jwcrypto().get_op_key("sign")
        self._kid = key.kid
        self._label = label

    def sign(
        self,
        method: str,
        url: str,
        headers: MutableMapping[str, str],
        body: bytes,
        *,
        created: datetime.datetime | None = None,
        nonce: str | None = None,
    ) -> None:
        """Add ``Signature-Input``, ``Signature`` (and ``Content-Digest`` for a body) to ``headers`` in place."""
        nonce = nonce or secrets.token_urlsafe(16)
        if not nonce.isascii() or not nonce.isprintable() or '"' in nonce or "\\" in nonce:
            raise ValueError("a nonce is printable ASCII without quotes or backslashes")
        when = int((created or datetime.datetime.now(datetime.UTC)).timestamp())
        parts = urlsplit(url)
        lines = [f'"@method": {method.upper()}', f'"@path": {parts.path or "/"}', f'"@query": ?{parts.query}']
        components = '"@method" "@path" "@query"'
        if body:
            digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
            headers["Content-Digest"] = digest
            lines.append(f'"content-digest": {digest}')
            components += ' "content-digest"'
        params = f'({components});created={when};keyid="{self._kid}";alg="{ALG}";nonce="{nonce}";tag="{self._label}"'
        lines.append(f'"@signature-params": {params}')
        signature = self._private.sign("\n".join(lines).encode())
        headers["Signature-Input"] = f"{self._label}={params}"
        headers["Signature"] = f"{self._label}=:{base64.b64encode(signature).decode()}:"


@dataclass(frozen=True)
class VerifiedRequest:
    kid: str
    nonce: str
    created: datetime.datetime


def _dictionary(headers: Mapping[str, str], name: str) -> dict[str, Any]:
    try:
        parsed = http_sf.parse(headers[name].encode("ascii"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError):
        _fail("malformed-headers", f"{name} is not an RFC 8941 structured dictionary; {_PROFILE}")
    if not isinstance(parsed, dict):
        _fail("malformed-headers", f"{name} is not an RFC 8941 structured dictionary; {_PROFILE}")
    return parsed


def _selected(headers: Mapping[str, str], label: str = LABEL) -> tuple[list[str], dict[str, Any]]:
    """The one signature's covered component names and parameters, after the label and tag checks."""
    if "signature-input" not in headers or "signature" not in headers:
        _fail(
            "missing-headers",
            f"the request is not signed: send Signature-Input and Signature (RFC 9421); {_PROFILE}",
        )
    inputs, signatures = _dictionary(headers, "signature-input"), _dictionary(headers, "signature")
    if list(inputs) != [label] or list(signatures) != [label]:
        _fail(
            "signature-label",
            f"expected exactly one signature labelled {label!r} in both Signature-Input and Signature, "
            f"got {sorted(set(inputs) | set(signatures))[:4]}",
        )
    (members, params), (value, _) = inputs[label], signatures[label]
    if not isinstance(members, list) or not isinstance(value, bytes):
        _fail("malformed-headers", "Signature-Input must hold an inner list and Signature a byte sequence")
    if params.get("tag") != label:
        _fail("signature-label", f'the signature parameter tag must be "{label}"')
    names = [name if isinstance(name, str) and not p else repr((name, p)) for name, p in members]
    return names, dict(params)


def signature_kid(headers: Mapping[str, str]) -> str:
    """The ``keyid`` a request claims, unverified: for the record of a refused call, never for a decision.
    NotAuthenticated (with its reason) when the signature headers do not even name one."""
    _names, params = _selected({k.lower(): v for k, v in headers.items()})
    kid = params.get("keyid")
    if not isinstance(kid, str) or not kid:
        _fail("key-id", "the signature parameter keyid (the RFC 7638 thumbprint of your key) is missing")
    return kid


def _check_parameters(params: Mapping[str, Any]) -> tuple[str, str, int]:
    unknown = sorted(set(params) - _PARAMETERS)
    if unknown:
        _fail("signature-parameters", f"unexpected signature parameters {unknown[:4]}; {_PROFILE}")
    if "alg" in params and params["alg"] != ALG:
        _fail("signature-parameters", f'the signature parameter alg, if sent, must be "{ALG}"')
    created, kid, nonce = params.get("created"), params.get("keyid"), params.get("nonce")
    if type(created) is not int:
        _fail("signature-parameters", "the signature parameter created (an integer, Unix seconds) is missing")
    if not isinstance(kid, str) or not kid:
        _fail("key-id", "the signature parameter keyid (the RFC 7638 thumbprint of your key) is missing")
    if not isinstance(nonce, str) or not 1 <= len(nonce) <= MAX_NONCE:
        _fail("nonce", f"the signature parameter nonce (a random string of 1 to {MAX_NONCE}) is missing")
    return kid, nonce, created


def _check_window(created: int, *, max_age: int, now: datetime.datetime) -> datetime.datetime:
    try:
        when = datetime.datetime.fromtimestamp(created, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        _fail("window", "the signature parameter created is not a usable time")
    if when > now + CLOCK_SKEW:
        ahead = int((when - now).total_seconds())
        _fail(
            "window",
            f"the signature was created {ahead} s in the future (at most {int(CLOCK_SKEW.total_seconds())} s "
            "of clock skew is accepted); check the clock",
        )
    age = int((now - when).total_seconds())
    if age > max_age + CLOCK_SKEW.total_seconds():
        _fail("window", f"the signature was created {age} s ago; at most {max_age} s is accepted")
    return when


def _check_digest(headers: Mapping[str, str], body: bytes) -> None:
    if "content-digest" not in headers:
        _fail("digest", "a request with a body needs a Content-Digest header (RFC 9530, sha-256)")
    try:
        ContentDigest.verify(headers["content-digest"], body)
    except (hms.HTTPMessageSignaturesException, ValueError, UnicodeEncodeError):
        _fail("digest", "the Content-Digest does not match the body as received (RFC 9530, sha-256)")


def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    resolve: Callable[[str], PublicKey],
    max_age: int,
    now: datetime.datetime | None = None,
    label: str = LABEL,
) -> VerifiedRequest:
    """Verify an agency's request signature; return who signed it, with the nonce to remember.

    ``url`` is the request target as received (path not percent-decoded). ``resolve(kid)`` returns the
    signer's public key or raises (``NotFound``, ``VerificationError``, ``KeyError``; or a
    ``NotAuthenticated`` of its own, which passes through). Every failure is a ``NotAuthenticated`` with a
    ``reason`` (see the module docstring)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    names, params = _selected(lowered, label)
    kid, nonce, created = _check_parameters(params)
    expected = list(covered_components(body))
    if names != expected:
        _fail(
            "covered-components",
            f"the signature must cover exactly {' '.join(expected)} in this order "
            f"({'the request has a body' if body else 'the request has no body'}); it covers {' '.join(names)}",
        )
    try:
        public = resolve(kid)
    except (NotFound, VerificationError, KeyError, ValueError):
        _fail("key-id", f"the keyid {kid[:64]!r} is not an active signing key of an active agency")
    if public.use != "sig" or public.kid != kid:
        _fail("key-id", f"the keyid {kid[:64]!r} is not an active signing key of an active agency")
    when = _check_window(created, max_age=max_age, now=now or datetime.datetime.now(datetime.UTC))
    if body:
        _check_digest(lowered, body)
    verifier = hms.HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=_OneKey(kid, public=public.to_jwcrypto().get_op_key("verify")),
    )
    try:
        verifier.verify(
            _Message(method.upper(), url, lowered),
            max_age=datetime.timedelta(seconds=max_age),
            expect_tag=label,
            expect_label=label,
            require_components=expected,
            body=body,
        )
    except (hms.HTTPMessageSignaturesException, ValueError, KeyError) as exc:
        raise request_failure(
            "signature",
            f"the signature does not verify with the key {kid[:64]} over this request's method, path, "
            "query and content digest",
        ) from exc
    return VerifiedRequest(kid, nonce, when)
