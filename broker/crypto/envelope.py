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
understood, and we understand none), headers that repeat a name (RFC 7516 §7.2.1), an ``epk`` that is
anything but a bare X25519 public key (``kty``, ``crv``, ``x`` and nothing else), members that are not
canonical base64url (one spelling per value, as everywhere in :mod:`broker.crypto`), and empty plaintexts
(jwcrypto cannot tell an empty plaintext from a failed decryption, so :func:`seal` refuses them and
:func:`open_sealed` does not return one).

Sealing goes through jwcrypto's ``JWE`` object. Opening, which intake does for every envelope, does not:
after the checks above have fixed every choice, it calls jwcrypto's ECDH-ES+A256KW and A256GCM algorithm
objects and ``cryptography``'s AES key unwrap directly (see :func:`_open`), because the ``JWE`` object's
per-call header-registry copy, re-parsing and key objects cost more than the cryptography itself.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap
from jwcrypto import jwe as _jwe
from jwcrypto.common import json_encode
from jwcrypto.jwa import JWA

from broker.crypto import _jws
from broker.crypto._b64 import b64url_decode, b64url_encode
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
#: The one shape of an ephemeral key: a bare X25519 public JWK (RFC 7518 §4.6.1.1: public members only).
_EPK_MEMBERS: Final = frozenset({"kty", "crv", "x"})
#: jwcrypto's implementations of the profile's two algorithms, made once: they keep no per-use state.
_KEY_MGMT: Final = JWA.keymgmt_alg(KEY_ALG)
_CONTENT: Final = JWA.encryption_alg(CONTENT_ENC)


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


def _headers(jwe: Any) -> tuple[dict[str, Any], Mapping[str, Any], list[Any]]:
    """(protected header, shared unprotected header, recipient entries) of a General JSON JWE (ValueError
    otherwise). The protected header is decoded and parsed here, once per call, strictly (canonical
    base64url, I-JSON, no duplicate names); everything after works on this one parse."""
    if not isinstance(jwe, Mapping) or not isinstance(jwe.get("recipients"), list):
        raise ValueError("not a General JSON JWE")
    protected = _jws.strict_json(b64url_decode(jwe["protected"]))
    if not isinstance(protected, dict):
        raise ValueError("protected header is not an object")
    unprotected = jwe.get("unprotected", {})
    if not isinstance(unprotected, Mapping):
        raise ValueError("unprotected header is not an object")
    return protected, unprotected, jwe["recipients"]


def _recipient_kid(shared: Mapping[str, Any], recipient: Any) -> Any:
    """The kid that names ``recipient``: its own header's, else the shared one (``shared`` is protected +
    unprotected)."""
    if not isinstance(recipient, Mapping):
        raise ValueError("recipient entry is not an object")
    header = recipient.get("header", {})
    if not isinstance(header, Mapping):
        raise ValueError("recipient header is not an object")
    return header.get("kid", shared.get("kid"))


def _joint_header(protected: dict[str, Any], unprotected: Mapping[str, Any], entry: Any) -> dict[str, Any]:
    """The JOSE header of one recipient entry, if it is in this exchange's profile (ValueError otherwise).

    RFC 7516 §7.2.1: the protected, shared unprotected and per-recipient header names must be disjoint, so
    no header can override another (a protected ``alg: none`` "overridden" by a per-recipient ``alg``).
    """
    own = entry.get("header", {}) if isinstance(entry, Mapping) else None
    if not isinstance(own, Mapping):
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
    return header


def _check_profile(jwe: Mapping[str, Any]) -> None:
    """Every recipient entry of a General JSON JWE is in the profile (ValueError otherwise); no decryption."""
    protected, unprotected, recipients = _headers(jwe)
    if not recipients:
        raise ValueError("a JWE without recipients")
    for entry in recipients:
        _joint_header(protected, unprotected, entry)


def _ephemeral_key(epk: Any) -> X25519PublicKey:
    """The sender's ephemeral X25519 public key from a bare ``{"kty": "OKP", "crv": "X25519", "x": …}``.

    Read here rather than through a jwcrypto JWK (building one cost about as much as the key agreement it
    feeds): exactly those three members (RFC 7518 §4.6.1.1 allows public members only; ``docs/envelope.md``
    asks for nothing else, and jwcrypto, joserfc and our Node.js example send nothing else), ``x`` in
    canonical base64url. ``cryptography`` checks that the 32 bytes are a key, and refuses a low-order point
    when the shared secret is computed.
    """
    if (
        not isinstance(epk, Mapping)
        or epk.keys() != _EPK_MEMBERS
        or epk["kty"] != "OKP"
        or epk["crv"] != "X25519"
    ):
        raise ValueError("epk is not a bare X25519 public key")
    return X25519PublicKey.from_public_bytes(b64url_decode(epk["x"]))


def _open(jwe: Mapping[str, Any], key: KeyPair) -> tuple[bytes, bytes]:
    """``(plaintext, content key)`` of the JWE, opened with ``key``'s own recipient entry only.

    Only this reader's entry is ever unwrapped: the work does not grow with the number of recipients an
    attacker adds, and no other entry can influence the result (jwcrypto's ``JWE``, given the General JSON,
    would try every entry and keep the *last* that decrypts).

    The steps are RFC 7516 §5.2's, in jwcrypto's and ``cryptography``'s code, called directly once our own
    checks have fixed every choice (like JWSCore for signatures, :mod:`broker.crypto._jws`): jwcrypto's
    ``JWE`` object deep-copied its header registry per call, re-parsed the headers we had parsed, and built
    two jwcrypto keys per entry, together more than the X25519 agreement itself. Step by step:

    1. the entry is chosen by kid and its joint header checked (:func:`_joint_header`: ECDH-ES+A256KW,
       A256GCM, no ``zip``, no ``crit``, disjoint header names); ``epk`` read by :func:`_ephemeral_key`;
    2. key agreement and Concat KDF (RFC 7518 §4.6.2): jwcrypto's ECDH-ES+A256KW ``_derive``, given the
       joint header for ``apu``/``apv`` as its ``unwrap`` would. It is the step of that ``unwrap`` that
       takes ready ``cryptography`` keys (``unwrap`` itself builds two jwcrypto keys per call); being
       private to jwcrypto, a rename would make every opening fail, loudly in the tests, never silently;
    3. AES Key Wrap (RFC 3394) undone by ``cryptography``, which checks the wrap's integrity; the content
       key must then be 256 bits, since AES-GCM would also accept a 128- or 192-bit key;
    4. AES-256-GCM by jwcrypto's A256GCM over the additional data of RFC 7516 §5.2 step 14: the received
       ``protected`` text, and ``.`` + the received ``aad`` text if present. Every member is decoded as
       canonical base64url, so the received text is the one spelling of those bytes, the one the sender
       authenticated.

    Every failure is the same VerificationError("could not decrypt"), its cause chained for our logs; a
    ``sig`` key is a programming error (ValueError).
    """
    if key.use != "enc":
        raise ValueError("decryption needs an 'enc' (X25519) key pair")
    try:
        protected, unprotected, recipients = _headers(jwe)
        shared = {**unprotected, **protected}
        mine = [r for r in recipients if _recipient_kid(shared, r) == key.kid]
        if len(mine) != 1:
            raise ValueError("no (or more than one) recipient entry for this key")
        header = _joint_header(protected, unprotected, mine[0])
        ephemeral = _ephemeral_key(header.get("epk"))
        own = key.to_jwcrypto().get_op_key("unwrapKey")
        kek = _KEY_MGMT._derive(own, ephemeral, KEY_ALG, _KEY_MGMT.keysize, header)
        cek = aes_key_unwrap(kek, b64url_decode(mine[0]["encrypted_key"]))
        if len(cek) * 8 != _CONTENT.wrap_key_size:
            raise ValueError("the content key is not 256 bits")
        aad = jwe["protected"]
        if "aad" in jwe:
            b64url_decode(jwe["aad"])  # canonical spelling only (and a string)
            aad = f"{aad}.{jwe['aad']}"
        iv, ciphertext, tag = (b64url_decode(jwe[name]) for name in ("iv", "ciphertext", "tag"))
        plaintext = _CONTENT.decrypt(cek, aad.encode("ascii"), iv, ciphertext, tag)
        if not isinstance(plaintext, bytes) or not plaintext:
            raise ValueError("no plaintext")
    except Exception as exc:  # jwcrypto's and cryptography's exception surfaces are wide: each means "no"
        raise VerificationError(_CANNOT_DECRYPT) from exc
    return plaintext, cek


def open_sealed(jwe: Mapping[str, Any], *, key: KeyPair) -> bytes:
    """Decrypt with one reader's private key; VerificationError("could not decrypt") on any failure.

    The recipient entry is chosen by ``key.kid``: a JWE not addressed to this key, tampered with
    (AES-GCM authenticates protected header, aad, IV and ciphertext), or using other algorithms all
    fail the same way. Passing a ``sig`` key is a programming error (ValueError).
    """
    plaintext, _cek = _open(jwe, key)
    return plaintext


def opening_key(jwe: Mapping[str, Any], *, keys: Sequence[KeyPair]) -> KeyPair:
    """The first of ``keys`` that opens ``jwe``; VerificationError("could not decrypt") if none does.

    "Opens" means the whole decryption succeeds: this key's recipient entry unwraps a content key that
    authenticates the protected header, aad, IV, ciphertext and tag. A reader's ``kid`` listed among the
    recipients proves nothing (its ``encrypted_key`` may be garbage); this is the check that a party can
    actually read what it is asked to vouch for. Keys of another use are skipped.
    """
    return open_with_any(jwe, keys=keys)[0]


def open_with_any(jwe: Mapping[str, Any], *, keys: Sequence[KeyPair]) -> tuple[KeyPair, bytes]:
    """The first of ``keys`` that opens ``jwe`` and the plaintext it gives (one decryption, where
    :func:`opening_key` followed by :func:`open_sealed` would take two); the same failure otherwise."""
    for key in keys:
        if key.use != "enc":
            continue
        try:
            plaintext, _cek = _open(jwe, key)
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
    _plaintext, cek = _open(jwe, key)
    result: dict[str, Any] = copy.deepcopy(dict(jwe))
    try:
        protected, unprotected, recipients = _headers(jwe)
        shared = {**unprotected, **protected}
        if any(_recipient_kid(shared, r) == reader.kid for r in recipients):
            return result
        # The new entry's header is checked like any other (names disjoint from the shared headers), then
        # jwcrypto's ECDH-ES+A256KW wraps the authenticated content key under a fresh ephemeral key and
        # returns the wrapped key and the ``epk`` to publish, as its JWE.add_recipient would.
        own = {"alg": KEY_ALG, "kid": reader.kid}
        header = _joint_header(protected, unprotected, {"header": own})
        wrapped = _KEY_MGMT.wrap(reader.to_jwcrypto(), _CONTENT.wrap_key_size, cek, header)
        new_entry = {"header": {**own, **wrapped["header"]}, "encrypted_key": b64url_encode(wrapped["ek"])}
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
    except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
        raise VerificationError(_NOT_IN_PROFILE) from exc
    return kid


def unverified_kid(signature: str) -> str:
    """The ``kid`` of a compact JWS's protected header, NOT verified; for routing to the right key only."""
    header, _payload, _sig = _jws.split_compact(signature)
    return _jws.header_kid(header)
