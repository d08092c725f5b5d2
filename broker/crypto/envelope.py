"""The envelope's payload encryption (JWE) and the originator's signature (JWS) — DESIGN §4.

Encryption: RFC 7516 General JSON Serialization. The content is encrypted once with a random content
key (A256GCM); that key is wrapped separately for every reader (ECDH-ES+A256KW with the reader's X25519
key, one ``recipients`` entry per reader, named by the reader's ``kid``). Any JOSE library can open it
with one reader's key.

Signature: the originator signs the RFC 8785 canonical form of ``{"header": <routing header>,
"payload": <JWE without its recipients>}`` with Ed25519 (compact JWS, detached payload). Why without
recipients: a contact point may need to add a reader on the way (e.g. the competent agency, known only
after routing). The content key, IV, ciphertext, tag and protected header — everything that determines
*what* the plaintext is — stay under the originator's signature, so adding a reader cannot change the
message; it only changes who can read it, and that is the contact point's audited, countersigned act.

What is deliberately not accepted when opening: any key-management algorithm but ECDH-ES+A256KW, any
content encryption but A256GCM, compression (``zip``: it leaks plaintext structure through length, and
we never produce it), critical extensions (``crit``: RFC 7516 §4.1.13 requires refusing those not
understood, and we understand none), headers that repeat a name (RFC 7516 §7.2.1), and empty plaintexts
(jwcrypto cannot tell an empty plaintext from a failed decryption, so :func:`seal` refuses them and
:func:`open_sealed` cannot return one).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from jwcrypto import jwe as _jwe
from jwcrypto.common import json_encode

from broker.crypto import _jws
from broker.crypto._b64 import b64url_decode
from broker.crypto.canonical import canonical
from broker.crypto.keys import KeyPair, PublicKey
from broker.errors import InvalidInput, VerificationError

__all__ = [
    "ENVELOPE_TYP",
    "add_reader",
    "open_sealed",
    "open_with_any",
    "opening_key",
    "seal",
    "sign_envelope",
    "signing_input",
    "unverified_kid",
    "verify_envelope",
]

KEY_ALG: Final = "ECDH-ES+A256KW"
CONTENT_ENC: Final = "A256GCM"
ENVELOPE_TYP: Final = "spoc-envelope+jws"
#: The JWE members the originator's signature covers (``recipients`` and ``unprotected`` are not).
SIGNED_JWE_MEMBERS: Final = ("protected", "iv", "ciphertext", "tag", "aad")
_CANNOT_DECRYPT: Final = "could not decrypt"
_NOT_IN_PROFILE: Final = "the payload is not sealed with ECDH-ES+A256KW and A256GCM (no zip, no crit)"
_TOP_LEVEL: Final = (*SIGNED_JWE_MEMBERS, "unprotected")


def _new_jwe(**kwargs: Any) -> _jwe.JWE:
    obj = _jwe.JWE(**kwargs)
    obj.allowed_algs = [KEY_ALG, CONTENT_ENC]
    return obj


def seal(
    plaintext: bytes,
    *,
    readers: Sequence[PublicKey],
    aad: bytes | None = None,
    content_type: str | None = None,
) -> dict[str, Any]:
    """Encrypt ``plaintext`` so that each of ``readers`` (X25519 ``enc`` keys) can open it.

    Returns the JWE General JSON Serialization as a dict. ``aad`` is authenticated but not encrypted
    (JWE ``aad`` member); ``content_type`` sets ``cty`` in the protected header. Readers must be
    non-empty, all ``enc`` keys, without duplicate kids (a duplicate would make "which entry is mine"
    ambiguous for every reader).
    """
    if not isinstance(plaintext, bytes) or not plaintext:
        raise InvalidInput("nothing to seal: plaintext must be non-empty bytes")
    if not readers:
        raise InvalidInput("a sealed payload needs at least one reader")
    if any(not isinstance(r, PublicKey) or r.use != "enc" for r in readers):
        raise InvalidInput("every reader must be an 'enc' (X25519) public key")
    if len({r.kid for r in readers}) != len(readers):
        raise InvalidInput("the same reader is listed twice")
    protected: dict[str, str] = {"enc": CONTENT_ENC}
    if content_type is not None:
        protected["cty"] = content_type
    obj = _new_jwe(plaintext=plaintext, protected=json_encode(protected), aad=aad, flattened=False)
    for reader in readers:
        obj.add_recipient(reader.to_jwcrypto(), header={"alg": KEY_ALG, "kid": reader.kid})
    result: dict[str, Any] = json.loads(obj.serialize())
    return result


def _decoded_protected(jwe: Mapping[str, Any]) -> dict[str, Any]:
    header = _jws.strict_json(b64url_decode(jwe["protected"]))
    if not isinstance(header, dict):
        raise ValueError("protected header is not an object")
    return header


def _shared_header(jwe: Mapping[str, Any]) -> dict[str, Any]:
    """Protected + shared unprotected header: what every recipient entry inherits."""
    unprotected = jwe.get("unprotected", {})
    if not isinstance(unprotected, Mapping):
        raise ValueError("unprotected header is not an object")
    return {**dict(unprotected), **_decoded_protected(jwe)}


def _recipient_kid(shared: dict[str, Any], recipient: Any) -> Any:
    if not isinstance(recipient, Mapping):
        raise ValueError("recipient entry is not an object")
    header = recipient.get("header", {})
    if not isinstance(header, Mapping):
        raise ValueError("recipient header is not an object")
    return header.get("kid", shared.get("kid"))


def _entry_in_profile(jwe: Mapping[str, Any], entry: Any) -> None:
    """One recipient entry is in this exchange's profile (ValueError otherwise).

    RFC 7516 §7.2.1: the protected, shared unprotected and per-recipient header names must be disjoint, so
    no header can override another (a protected ``alg: none`` "overridden" by a per-recipient ``alg``).
    """
    protected = _decoded_protected(jwe)
    unprotected = jwe.get("unprotected", {})
    own = entry.get("header", {}) if isinstance(entry, Mapping) else None
    if not isinstance(unprotected, Mapping) or not isinstance(own, Mapping):
        raise ValueError("a JWE header is not an object")
    p, u, r = set(protected), set(unprotected), set(own)
    if p & u or p & r or u & r:
        raise ValueError("JWE header names are not disjoint")
    header = {**protected, **unprotected, **own}
    if (
        header.get("alg") != KEY_ALG
        or header.get("enc") != CONTENT_ENC
        or "zip" in header
        or "crit" in header
    ):
        raise ValueError("algorithms not accepted")


def _check_profile(jwe: Mapping[str, Any]) -> None:
    """Every recipient entry of a General JSON JWE is in the profile (ValueError otherwise); no decryption."""
    if not isinstance(jwe, Mapping) or not isinstance(jwe.get("recipients"), list) or not jwe["recipients"]:
        raise ValueError("not a General JSON JWE")
    for entry in jwe["recipients"]:
        _entry_in_profile(jwe, entry)


def _for_reader(jwe: Mapping[str, Any], kid: str) -> dict[str, Any]:
    """Reduce the General JSON to the Flattened JSON of ``kid``'s entry, after checking the algorithms.

    Only this reader's entry is ever unwrapped: the work does not grow with the number of recipients
    an attacker adds, and no other entry can influence the result (jwcrypto, given the General JSON,
    would try every entry and keep the *last* that decrypts).
    """
    if not isinstance(jwe, Mapping) or not isinstance(jwe.get("recipients"), list):
        raise ValueError("not a General JSON JWE")
    shared = _shared_header(jwe)
    mine = [r for r in jwe["recipients"] if _recipient_kid(shared, r) == kid]
    if len(mine) != 1:
        raise ValueError("no (or more than one) recipient entry for this key")
    entry = mine[0]
    _entry_in_profile(jwe, entry)
    flat = {name: jwe[name] for name in _TOP_LEVEL if name in jwe}
    flat.update({name: entry[name] for name in ("header", "encrypted_key") if name in entry})
    return flat


def _decrypt(jwe: Mapping[str, Any], key: KeyPair) -> _jwe.JWE:
    if key.use != "enc":
        raise ValueError("decryption needs an 'enc' (X25519) key pair")
    try:
        flat = _for_reader(jwe, key.kid)
        obj = _new_jwe()
        obj.deserialize(json.dumps(flat))
        obj.decrypt(key.to_jwcrypto())
        if not isinstance(obj.plaintext, bytes) or obj.cek is None:
            raise ValueError("no plaintext")
    except Exception as exc:  # jwcrypto's exception surface is wide; every one of them means "no"
        raise VerificationError(_CANNOT_DECRYPT) from exc
    return obj


def open_sealed(jwe: Mapping[str, Any], *, key: KeyPair) -> bytes:
    """Decrypt with one reader's private key; VerificationError("could not decrypt") on any failure.

    The recipient entry is chosen by ``key.kid``: a JWE not addressed to this key, tampered with
    (AES-GCM authenticates protected header, aad, IV and ciphertext), or using other algorithms all
    fail the same way. Passing a ``sig`` key is a programming error (ValueError).
    """
    plaintext: bytes = _decrypt(jwe, key).plaintext
    return plaintext


def opening_key(jwe: Mapping[str, Any], *, keys: Sequence[KeyPair]) -> KeyPair:
    """The first of ``keys`` that opens ``jwe``; VerificationError("could not decrypt") if none does.

    "Opens" means the whole decryption succeeds: this key's recipient entry unwraps a content key that
    authenticates the protected header, aad, IV, ciphertext and tag. A reader's ``kid`` listed among the
    recipients proves nothing (its ``encrypted_key`` may be garbage); this is the check that a party can
    actually read what it is asked to vouch for. Keys of another use are skipped.
    """
    for key in keys:
        if key.use != "enc":
            continue
        try:
            _decrypt(jwe, key)
        except VerificationError:
            continue
        return key
    raise VerificationError(_CANNOT_DECRYPT)


def open_with_any(jwe: Mapping[str, Any], *, keys: Sequence[KeyPair]) -> tuple[KeyPair, bytes]:
    """The first of ``keys`` that opens ``jwe`` and the plaintext it gives (one decryption, where
    :func:`opening_key` followed by :func:`open_sealed` would take two); the same failure otherwise."""
    for key in keys:
        if key.use != "enc":
            continue
        try:
            plaintext: bytes = _decrypt(jwe, key).plaintext
        except VerificationError:
            continue
        return key, plaintext
    raise VerificationError(_CANNOT_DECRYPT)


def add_reader(jwe: Mapping[str, Any], *, key: KeyPair, reader: PublicKey) -> dict[str, Any]:
    """Return a copy of ``jwe`` that ``reader`` can also open; ``key`` must be a current reader's.

    The content key is unwrapped with ``key`` (after the whole JWE has been authenticated, so a tampered
    message is never re-wrapped) and wrapped afresh for ``reader``. Only ``recipients`` gains an entry:
    protected header, IV, ciphertext, tag and aad are byte-for-byte unchanged, so the originator's
    signature (:func:`signing_input`) still verifies. Idempotent: if ``reader`` is already a recipient
    the copy is returned unchanged (the check that ``key`` can open it still runs).
    """
    if not isinstance(reader, PublicKey) or reader.use != "enc":
        raise InvalidInput("the new reader must be an 'enc' (X25519) public key")
    obj = _decrypt(jwe, key)
    result: dict[str, Any] = copy.deepcopy(dict(jwe))
    try:
        shared = _shared_header(jwe)
        if any(_recipient_kid(shared, r) == reader.kid for r in jwe["recipients"]):
            return result
        # Re-use the authenticated object: its ``cek`` is the content key. With an empty ``recipients``
        # list jwcrypto appends exactly one new entry, wrapped under a fresh ephemeral key.
        obj.objects["recipients"] = []
        obj.add_recipient(reader.to_jwcrypto(), header={"alg": KEY_ALG, "kid": reader.kid})
        new_entry = json.loads(obj.serialize())["recipients"][-1]
    except Exception as exc:  # pragma: no cover - the JWE was just authenticated and parsed
        raise VerificationError(_CANNOT_DECRYPT) from exc
    result["recipients"].append(new_entry)
    return result


def signing_input(header: Mapping[str, Any], payload: Mapping[str, Any]) -> bytes:
    """The bytes the originator signs: RFC 8785 form of the routing header and the JWE minus recipients.

    ``recipients`` (and the JWE ``unprotected`` header, which :func:`seal` never sets) are excluded on
    purpose, so that a contact point may add a reader (:func:`add_reader`) without breaking the
    originator's signature; see the module docstring for why that is safe. InvalidInput if the header
    or payload is not I-JSON.
    """
    covered = {name: payload[name] for name in SIGNED_JWE_MEMBERS if name in payload}
    return canonical({"header": header, "payload": covered})


def sign_envelope(header: Mapping[str, Any], payload: Mapping[str, Any], *, key: KeyPair) -> str:
    """The originator's signature: compact JWS ``<protected>..<signature>`` over :func:`signing_input`.

    Protected header ``{"alg": "EdDSA", "kid": key.kid, "typ": "spoc-envelope+jws"}``.
    """
    return _jws.sign_compact(signing_input(header, payload), key=key, typ=ENVELOPE_TYP, detached=True)


def verify_envelope(
    header: Mapping[str, Any],
    payload: Mapping[str, Any],
    signature: str,
    *,
    resolve: Callable[[str], PublicKey],
) -> str:
    """Verify the originator's signature and return the kid that verified.

    ``resolve(kid)`` returns the signer's public key (NotFound / VerificationError if unknown or revoked).
    Malformed token, any ``alg`` but EdDSA, wrong ``typ``, unknown kid, or a header or JWE that differs
    from what was signed: all raise the same VerificationError("signature did not verify"). The caller
    still has to check that the kid belongs to the party the header names as sender.

    Then, without decrypting, every recipient entry of ``payload`` must be in the profile that
    :func:`open_sealed` accepts (ECDH-ES+A256KW, A256GCM, no ``zip``, no ``crit``): a validly signed
    envelope that no reader could open (``alg: none``, another cipher) is refused at the door, with its
    own fixed message, rather than stored and found unreadable by the first officer.
    """
    if not isinstance(header, Mapping) or not isinstance(payload, Mapping):  # parsed from the wire
        raise VerificationError("signature did not verify")
    try:
        message = signing_input(header, payload)
    except (InvalidInput, RecursionError) as exc:  # not I-JSON, or nested past the interpreter's limit
        raise VerificationError("signature did not verify") from exc
    kid, _ = _jws.verify_compact(signature, typ=ENVELOPE_TYP, resolve=resolve, detached_payload=message)
    try:
        _check_profile(payload)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise VerificationError(_NOT_IN_PROFILE) from exc
    return kid


def unverified_kid(signature: str) -> str:
    """The ``kid`` of a compact JWS's protected header, NOT verified; for routing to the right key only."""
    header, _payload, _sig = _jws.split_compact(signature)
    return _jws.header_kid(header)
