"""Interop with joserfc, an independent JOSE implementation, in both directions (DESIGN §4).

Two joserfc behaviours worth knowing, each pinned by a test below:

* ``jwe.decrypt_json`` on a General JSON JWE tries to decrypt *every* recipient entry, so a reader holding
  only its own key fails on the others' entries. A reader therefore reduces the General JSON to the
  Flattened JSON of its own entry (shared members + its ``header``/``encrypted_key``; RFC 7516 §7.2.2)
  and decrypts that — the same thing ``open_sealed`` does internally, and what integrators should do.
* joserfc 1.8 emits ``SecurityWarning("EdDSA is deprecated via RFC 9864")`` whenever the ``EdDSA`` alg is
  used (RFC 9864 prefers the fully-specified ``Ed25519``). Our wire format still says ``EdDSA``; with
  ``filterwarnings = error`` the tests expect that warning explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
from joserfc import jwe, jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import OctKey, OKPKey

from broker.crypto import (
    KeyPair,
    PublicKey,
    add_reader,
    countersign,
    open_sealed,
    seal,
    sign_envelope,
    signing_input,
    verify_countersignature,
    verify_envelope,
)
from broker.crypto.canonical import canonical
from broker.errors import VerificationError

Resolver = Callable[[str], PublicKey]
HEADER: dict[str, Any] = {
    "sender": "AL-ASP",
    "destination": "RS",
    "type": "request",
    "classification": "RESTRICTED",
}
PLAINTEXT = b'{"question":"owner of vehicle TR-123-AB?"}'


@contextmanager
def eddsa_deprecation() -> Iterator[None]:
    with pytest.warns(SecurityWarning, match="RFC 9864"):
        yield


def private(key: KeyPair) -> OKPKey:
    return OKPKey.import_key(json.loads(key.private_jwk_json()))


def public(key: KeyPair) -> OKPKey:
    return OKPKey.import_key(key.public.jwk)


def flattened_for(general: dict[str, Any], kid: str) -> jwe.FlattenedJSONSerialization:
    """RFC 7516 §7.2.2: the Flattened JSON of one recipient of a General JSON JWE."""
    flat = {k: v for k, v in general.items() if k != "recipients"}
    (entry,) = [r for r in general["recipients"] if r["header"]["kid"] == kid]
    flat.update(entry)
    return cast(jwe.FlattenedJSONSerialization, flat)


# --- (a) what we produce, joserfc consumes --------------------------------------------------------------


def test_joserfc_opens_our_jwe_as_each_reader(reader_a: KeyPair, reader_b: KeyPair) -> None:
    sealed = seal(PLAINTEXT, readers=[reader_a.public, reader_b.public], aad=b"routing")
    for reader in (reader_a, reader_b):
        opened = jwe.decrypt_json(flattened_for(sealed, reader.kid), private(reader))
        assert opened.plaintext == PLAINTEXT
        assert opened.aad == b"routing"


def test_joserfc_general_json_decrypt_needs_every_readers_key(reader_a: KeyPair, reader_b: KeyPair) -> None:
    """Why the reduction above is needed (documents joserfc 1.8 behaviour)."""
    sealed = seal(PLAINTEXT, readers=[reader_a.public, reader_b.public])
    with pytest.raises(Exception):  # noqa: B017, PT011 - joserfc raises DecodeError; any error proves the point
        jwe.decrypt_json(cast(jwe.GeneralJSONSerialization, sealed), private(reader_a))


def test_joserfc_opens_an_added_readers_entry(reader_a: KeyPair, reader_c: KeyPair) -> None:
    widened = add_reader(seal(PLAINTEXT, readers=[reader_a.public]), key=reader_a, reader=reader_c.public)
    assert jwe.decrypt_json(flattened_for(widened, reader_c.kid), private(reader_c)).plaintext == PLAINTEXT


def test_joserfc_verifies_our_detached_envelope_signature(signer: KeyPair, reader_a: KeyPair) -> None:
    sealed = seal(PLAINTEXT, readers=[reader_a.public])
    signature = sign_envelope(HEADER, sealed, key=signer)
    with eddsa_deprecation():
        # Detached content (RFC 7515 Appendix F): the verifier re-attaches the payload it computes itself.
        verified = jws.deserialize_compact(
            signature, public(signer), algorithms=["EdDSA"], payload=signing_input(HEADER, sealed)
        )
    assert verified.headers() == {"alg": "EdDSA", "kid": signer.kid, "typ": "spoc-envelope+jws"}
    with eddsa_deprecation(), pytest.raises(Exception):  # noqa: B017, PT011 - joserfc's BadSignatureError
        jws.deserialize_compact(
            signature, public(signer), algorithms=["EdDSA"], payload=signing_input({**HEADER, "x": 1}, sealed)
        )


def test_joserfc_verifies_our_countersignature(signer: KeyPair) -> None:
    statement = {"decision": "approved", "message_id": "m-1"}
    with eddsa_deprecation():
        verified = jws.deserialize_compact(
            countersign(statement, key=signer), public(signer), algorithms=["EdDSA"]
        )
    assert json.loads(verified.payload) == statement


# --- (b) what joserfc produces, we consume ---------------------------------------------------------------


def joserfc_seal(plaintext: bytes, readers: list[KeyPair], **protected: str) -> dict[str, Any]:
    obj = jwe.GeneralJSONEncryption({"enc": "A256GCM", **protected}, plaintext, aad=b"routing")
    for reader in readers:
        obj.add_recipient({"alg": "ECDH-ES+A256KW", "kid": reader.kid}, public(reader))
    return dict(jwe.encrypt_json(obj, None))


def test_we_open_a_joserfc_jwe(reader_a: KeyPair, reader_b: KeyPair, reader_c: KeyPair) -> None:
    produced = joserfc_seal(PLAINTEXT, [reader_a, reader_b])
    assert open_sealed(produced, key=reader_a) == PLAINTEXT
    assert open_sealed(produced, key=reader_b) == PLAINTEXT
    with pytest.raises(VerificationError):
        open_sealed(produced, key=reader_c)
    widened = add_reader(produced, key=reader_b, reader=reader_c.public)
    assert open_sealed(widened, key=reader_c) == PLAINTEXT


def test_we_verify_a_joserfc_detached_signature(
    signer: KeyPair, reader_a: KeyPair, resolve: Resolver
) -> None:
    produced = joserfc_seal(PLAINTEXT, [reader_a])
    header = {"alg": "EdDSA", "kid": signer.kid, "typ": "spoc-envelope+jws"}
    with eddsa_deprecation():
        attached = jws.serialize_compact(
            header, signing_input(HEADER, produced), private(signer), algorithms=["EdDSA"]
        )
    detached = jws.detach_content(attached)
    assert detached.split(".")[1] == ""
    assert verify_envelope(HEADER, produced, detached, resolve=resolve) == signer.kid
    with pytest.raises(VerificationError):
        verify_envelope({**HEADER, "destination": "HR"}, produced, detached, resolve=resolve)


def test_we_verify_a_joserfc_countersignature(signer: KeyPair, resolve: Resolver) -> None:
    statement = {"decision": "routed", "agency": "RS-MUP"}
    with eddsa_deprecation():
        token = jws.serialize_compact(
            {"alg": "EdDSA", "kid": signer.kid, "typ": "spoc-custody+jws"},
            canonical(statement),
            private(signer),
            algorithms=["EdDSA"],
        )
    assert verify_countersignature(token, resolve=resolve) == statement


@pytest.mark.parametrize(
    ("alg", "enc"),
    [
        ("ECDH-ES", "A256GCM"),
        ("ECDH-ES+A128KW", "A256GCM"),
        ("ECDH-ES+A256KW", "A128GCM"),
        ("ECDH-ES+A256KW", "A256CBC-HS512"),
    ],
)
def test_we_refuse_other_jwe_algorithms(reader_a: KeyPair, alg: str, enc: str) -> None:
    obj = jwe.GeneralJSONEncryption({"enc": enc}, PLAINTEXT)
    obj.add_recipient({"alg": alg, "kid": reader_a.kid}, public(reader_a))
    produced = jwe.encrypt_json(obj, None, algorithms=[alg, enc])
    with pytest.raises(VerificationError):
        open_sealed(produced, key=reader_a)


def test_we_refuse_compressed_jwe(reader_a: KeyPair) -> None:
    produced = joserfc_seal(PLAINTEXT, [reader_a], zip="DEF")
    with pytest.raises(VerificationError):
        open_sealed(produced, key=reader_a)


def test_we_refuse_joserfc_hs256_keyed_with_the_public_key(
    signer: KeyPair, reader_a: KeyPair, resolve: Resolver
) -> None:
    produced = joserfc_seal(PLAINTEXT, [reader_a])
    header = {"alg": "HS256", "kid": signer.kid, "typ": "spoc-envelope+jws"}
    token = jws.serialize_compact(header, signing_input(HEADER, produced), OctKey.import_key(signer.public.x))
    with pytest.raises(VerificationError):
        verify_envelope(HEADER, produced, jws.detach_content(token), resolve=resolve)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"b64": False, "crit": ["b64"]}, id="rfc7797-unencoded-payload"),
        pytest.param({"x5u": "https://attacker.example/key.pem"}, id="key-by-url"),
        pytest.param({"nonce": "abc"}, id="unlisted-member"),
        pytest.param({"jwk": {"kty": "OKP"}}, id="embedded-key"),
    ],
)
def test_we_refuse_headers_outside_the_profile(
    signer: KeyPair, reader_a: KeyPair, resolve: Resolver, extra: dict[str, Any]
) -> None:
    produced = joserfc_seal(PLAINTEXT, [reader_a])
    header = {"alg": "EdDSA", "kid": signer.kid, "typ": "spoc-envelope+jws", **extra}
    # joserfc itself refuses to *produce* unregistered header names unless told not to check.
    lenient = jws.JWSRegistry(algorithms=["EdDSA"], strict_check_header=False)
    with eddsa_deprecation():
        token = jws.serialize_compact(
            header, signing_input(HEADER, produced), private(signer), registry=lenient
        )
    with pytest.raises(VerificationError):
        verify_envelope(HEADER, produced, jws.detach_content(token), resolve=resolve)
