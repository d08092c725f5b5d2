"""Compact JWS (RFC 7515) with EdDSA/Ed25519: the one signing and verifying path of spoc.

Both the originator's envelope signature (detached payload) and a contact point's custody
countersignature (attached payload) go through here, so the rules are written once:

* **Only ``EdDSA``** (RFC 8037) is accepted. The algorithm comes from an attacker-controlled header, so
  it is compared to the constant before any key is touched: ``none``, ``HS256`` (the classic
  "verify an HMAC with the public key as secret" confusion) and everything else are refused.
  (RFC 9864 deprecates the polymorphic ``EdDSA`` name in favour of ``Ed25519``; the wire format still
  names ``EdDSA`` because that is what every JOSE library ships today.)
* **``typ`` is required and must match** (RFC 8725 §3.11 explicit typing), so an envelope signature can
  never be replayed as a custody statement or the other way round. Per RFC 7515 §4.1.9 a ``typ`` may be
  written with or without the ``application/`` prefix and is compared case-insensitively.
* **The header is an allow-list** (``alg``, ``kid``, ``typ``, ``cty``): ``crit``, ``b64`` (RFC 7797
  changes what the signature covers), ``jwk``/``jku``/``x5u``/``x5c`` (a token must not bring its own
  key) are refused. Keys are found only by ``kid`` through the caller's ``resolve``.
* **Strict parsing**: three parts, canonical base64url, a JSON object header without duplicate names
  (two libraries must not read two different headers out of one token).

Every failure is the same :class:`broker.errors.VerificationError` with a fixed message; the reason is
kept on ``__cause__`` for our logs only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from jwcrypto import jws as _jws
from jwcrypto.common import json_encode
from jwcrypto.jwa import JWA

from broker.crypto._b64 import b64url_decode, b64url_encode
from broker.crypto.keys import KeyPair, PublicKey
from broker.errors import InvalidInput, NotFound, VerificationError

ALG: Final = "EdDSA"
_ALLOWED_HEADER: Final = frozenset({"alg", "kid", "typ", "cty"})
_FAILED: Final = "signature did not verify"
#: jwcrypto's EdDSA (Ed25519 here: keys are checked to be ``sig`` keys first), made once: it keeps no state.
_EDDSA: Final = JWA.signing_alg(ALG)

Resolver = Callable[[str], PublicKey]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError("duplicate member")
        out[name] = value
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-JSON constant {name}")


def strict_json(data: bytes) -> Any:
    """Parse I-JSON strictly: UTF-8, no duplicate member names, no NaN/Infinity (ValueError otherwise)."""
    return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)


def _typ_matches(found: Any, expected: str) -> bool:
    if not isinstance(found, str):
        return False
    return found.lower().removeprefix("application/") == expected.lower()


def sign_compact(payload: bytes, *, key: KeyPair, typ: str, detached: bool) -> str:
    """Compact JWS over ``payload`` with header ``{"alg": "EdDSA", "kid": key.kid, "typ": typ}``.

    ``detached=True`` gives RFC 7515 Appendix F form ``<header>..<signature>``: the verifier must
    rebuild the payload itself, which is the point (it is recomputed from the envelope it received).
    """
    if key.use != "sig":
        raise ValueError("signing needs a 'sig' (Ed25519) key")
    # JWSCore, not JWS: the header is ours and fixed, and JWS's per-token copy of its header registry cost
    # more than the signature. sign() gives the protected header and payload base64url-coded.
    core = _jws.JWSCore(
        ALG, key.to_jwcrypto(), json_encode({"alg": ALG, "kid": key.kid, "typ": typ}), payload, algs=[ALG]
    )
    signed = core.sign()
    body = "" if detached else signed["payload"].decode("ascii")
    return f"{signed['protected']}.{body}.{signed['signature']}"


def _split(token: str) -> tuple[str, dict[str, Any], str, bytes, bytes]:
    """``(protected text, protected header, payload text, payload, signature)`` of a compact JWS, each
    part decoded strictly and the header parsed once (VerificationError otherwise)."""
    try:
        if not isinstance(token, str):
            raise TypeError("token must be a string")
        parts = token.split(".")
        if len(parts) != 3:
            raise ValueError("a compact JWS has three parts")
        header = strict_json(b64url_decode(parts[0]))
        if not isinstance(header, dict):
            raise ValueError("protected header is not a JSON object")
        return parts[0], header, parts[1], b64url_decode(parts[1]), b64url_decode(parts[2])
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise VerificationError(_FAILED) from exc


def split_compact(token: str) -> tuple[dict[str, Any], bytes, bytes]:
    """Parse a compact JWS without verifying it: (protected header, payload bytes, signature bytes)."""
    _protected, header, _payload_text, payload, signature = _split(token)
    return header, payload, signature


def header_kid(header: dict[str, Any]) -> str:
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise VerificationError(_FAILED)
    return kid


def verify_compact(
    token: str, *, typ: str, resolve: Resolver, detached_payload: bytes | None
) -> tuple[str, bytes]:
    """Verify a compact EdDSA JWS and return ``(kid, payload)``; VerificationError on any failure.

    With ``detached_payload`` the token's payload part must be empty and the given bytes are verified
    instead; without it the token must carry its payload.

    ``resolve(kid)`` raising NotFound, VerificationError or InvalidInput is a verification failure; any
    other error (e.g. ``Unavailable`` when the directory is down) propagates, because "could not check
    now" must stay retryable and must not be recorded as "forged".
    """
    protected, header, payload_text, payload, signature = _split(token)
    if (
        header.get("alg") != ALG
        or not _typ_matches(header.get("typ"), typ)
        or not header.keys() <= _ALLOWED_HEADER
        or (detached_payload is not None and payload != b"")
        or (detached_payload is None and payload == b"")
    ):
        raise VerificationError(_FAILED)
    kid = header_kid(header)
    try:
        public = resolve(kid)
    except (NotFound, VerificationError, InvalidInput) as exc:
        raise VerificationError(_FAILED) from exc
    if not isinstance(public, PublicKey) or public.use != "sig" or public.kid != kid:
        raise VerificationError(_FAILED)
    # jwcrypto's EdDSA algorithm object, called directly as JWSCore.verify would: every check JWS adds (alg
    # allow-list, header registry, ``b64``, ``crit``) is made above, stricter, and JWS deep-copied its header
    # registry per token, which cost more than the Ed25519 verification itself; JWSCore in turn re-parsed
    # and re-encoded the header parsed above. The signing input (RFC 7515 §5.2 step 8) is the received
    # protected text, a dot and the payload's base64url: _split accepted only canonical base64url, so the
    # received text is the one spelling of the header's bytes, as the signer encoded it.
    encoded = payload_text if detached_payload is None else b64url_encode(detached_payload)
    try:
        _EDDSA.verify(public.to_jwcrypto(), f"{protected}.{encoded}".encode("ascii"), signature)
    except Exception as exc:  # jwcrypto's exception surface is wide; every one of them means "no"
        raise VerificationError(_FAILED) from exc
    return kid, payload if detached_payload is None else detached_payload
