"""The envelope: JWE seal/open/add_reader and the originator's detached JWS, on real keys."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.crypto import (
    KeyPair,
    PublicKey,
    _jws,
    add_reader,
    canonical,
    countersign,
    open_sealed,
    seal,
    sign_envelope,
    signing_input,
    unverified_kid,
    verify_envelope,
)
from broker.errors import InvalidInput, NotFound, Unavailable, VerificationError

HEADER: dict[str, Any] = {
    "message_id": "0192c1d0-7e3a-7b7e-9a61-2f1d3c4b5a69",
    "type": "request",
    "sender": "AL-ASP",
    "destination": "RS",
    "classification": "RESTRICTED",
    "handling": ["H0", "H2"],
    "priority": "urgent",
}
PLAINTEXT = json.dumps({"subject": "vehicle", "plate": "TR-123-AB"}).encode()

Resolver = Callable[[str], PublicKey]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def flip(text: str) -> str:
    """Flip one bit of a base64url field's decoded bytes and re-encode (a real, well-formed tamper)."""
    raw = bytearray(unb64(text))
    raw[len(raw) // 2] ^= 0x01
    return b64(bytes(raw))


# --- seal / open ------------------------------------------------------------------------------------


def test_seal_is_general_json_with_one_entry_per_reader(reader_a: KeyPair, reader_b: KeyPair) -> None:
    jwe = seal(PLAINTEXT, readers=[reader_a.public, reader_b.public])
    assert json.loads(unb64(jwe["protected"])) == {"enc": "A256GCM"}
    assert [r["header"]["kid"] for r in jwe["recipients"]] == [reader_a.kid, reader_b.kid]
    for entry in jwe["recipients"]:
        assert entry["header"]["alg"] == "ECDH-ES+A256KW"
        assert entry["header"]["epk"]["crv"] == "X25519"
        assert len(unb64(entry["encrypted_key"])) == 40  # AES-KW of a 256-bit key
    assert len(unb64(jwe["iv"])) == 12
    assert "unprotected" not in jwe
    assert "aad" not in jwe


def test_single_reader_is_still_general_json(reader_a: KeyPair) -> None:
    jwe = seal(PLAINTEXT, readers=[reader_a.public])
    assert len(jwe["recipients"]) == 1
    assert "encrypted_key" not in jwe


def test_round_trip_for_every_reader(reader_a: KeyPair, reader_b: KeyPair) -> None:
    jwe = seal(
        PLAINTEXT, readers=[reader_a.public, reader_b.public], aad=b"routing", content_type="application/json"
    )
    assert json.loads(unb64(jwe["protected"]))["cty"] == "application/json"
    assert unb64(jwe["aad"]) == b"routing"
    assert open_sealed(jwe, key=reader_a) == PLAINTEXT
    assert open_sealed(jwe, key=reader_b) == PLAINTEXT


def test_other_key_cannot_open(reader_a: KeyPair, reader_b: KeyPair, reader_c: KeyPair) -> None:
    jwe = seal(PLAINTEXT, readers=[reader_a.public, reader_b.public])
    with pytest.raises(VerificationError, match=r"^could not decrypt$"):
        open_sealed(jwe, key=reader_c)


def test_a_recipient_entry_relabelled_for_another_key_does_not_open(
    reader_a: KeyPair, reader_c: KeyPair
) -> None:
    jwe = seal(PLAINTEXT, readers=[reader_a.public])
    jwe["recipients"][0]["header"]["kid"] = reader_c.kid
    with pytest.raises(VerificationError):
        open_sealed(jwe, key=reader_c)


@pytest.mark.parametrize("member", ["ciphertext", "tag", "iv", "aad", "protected"])
def test_tampering_is_refused(reader_a: KeyPair, member: str) -> None:
    jwe = seal(PLAINTEXT, readers=[reader_a.public], aad=b"routing")
    if member == "protected":
        jwe[member] = b64(json.dumps({"enc": "A256GCM", "cty": "text/plain"}).encode())
    else:
        jwe[member] = flip(jwe[member])
    with pytest.raises(VerificationError, match=r"^could not decrypt$"):
        open_sealed(jwe, key=reader_a)


def test_tampered_wrapped_key_is_refused(reader_a: KeyPair) -> None:
    jwe = seal(PLAINTEXT, readers=[reader_a.public])
    jwe["recipients"][0]["encrypted_key"] = flip(jwe["recipients"][0]["encrypted_key"])
    with pytest.raises(VerificationError):
        open_sealed(jwe, key=reader_a)


def test_two_entries_for_the_same_kid_are_refused(reader_a: KeyPair) -> None:
    jwe = seal(PLAINTEXT, readers=[reader_a.public])
    jwe["recipients"].append(copy.deepcopy(jwe["recipients"][0]))
    with pytest.raises(VerificationError):
        open_sealed(jwe, key=reader_a)


@pytest.mark.parametrize(
    "jwe",
    [
        pytest.param({}, id="empty"),
        pytest.param({"recipients": "nope"}, id="recipients-not-list"),
        pytest.param(
            {"recipients": [], "protected": "e30", "iv": "", "ciphertext": "", "tag": ""}, id="none"
        ),
        pytest.param({"recipients": [1], "protected": "e30"}, id="entry-not-object"),
        pytest.param({"recipients": [{}], "protected": "!!"}, id="bad-base64"),
        pytest.param({"recipients": [{}], "protected": b64(b"[1]")}, id="header-not-object"),
        pytest.param({"ciphertext": "AA", "iv": "AA", "tag": "AA", "encrypted_key": "AA"}, id="flattened"),
    ],
)
def test_malformed_is_refused(reader_a: KeyPair, jwe: dict[str, Any]) -> None:
    with pytest.raises(VerificationError, match=r"^could not decrypt$"):
        open_sealed(jwe, key=reader_a)


def test_not_a_mapping_is_refused(reader_a: KeyPair) -> None:
    with pytest.raises(VerificationError):
        open_sealed("eyJ.compact.jwe.is.refused", key=reader_a)  # type: ignore[arg-type]


def test_opening_with_a_signing_key_is_a_programming_error(reader_a: KeyPair, signer: KeyPair) -> None:
    jwe = seal(PLAINTEXT, readers=[reader_a.public])
    with pytest.raises(ValueError, match="'enc'"):
        open_sealed(jwe, key=signer)


def test_seal_refuses_bad_readers(reader_a: KeyPair, signer: KeyPair) -> None:
    with pytest.raises(InvalidInput):
        seal(PLAINTEXT, readers=[])
    with pytest.raises(InvalidInput):
        seal(PLAINTEXT, readers=[reader_a.public, signer.public])
    with pytest.raises(InvalidInput):
        seal(PLAINTEXT, readers=[reader_a.public, reader_a.public])
    with pytest.raises(InvalidInput):
        seal(b"", readers=[reader_a.public])


_ROUND_TRIP_READERS = [KeyPair.generate("enc") for _ in range(2)]


@settings(max_examples=25, deadline=None)
@given(plaintext=st.binary(min_size=1, max_size=512), aad=st.none() | st.binary(max_size=32))
def test_property_seal_open_round_trips(plaintext: bytes, aad: bytes | None) -> None:
    jwe = seal(plaintext, readers=[k.public for k in _ROUND_TRIP_READERS], aad=aad)
    for key in _ROUND_TRIP_READERS:
        assert open_sealed(jwe, key=key) == plaintext


# --- add_reader ---------------------------------------------------------------------------------------


def test_add_reader_lets_the_new_reader_open_and_changes_only_recipients(
    signer: KeyPair, reader_a: KeyPair, reader_b: KeyPair, reader_c: KeyPair, resolve: Resolver
) -> None:
    jwe = seal(PLAINTEXT, readers=[reader_a.public, reader_b.public], aad=b"routing")
    before = copy.deepcopy(jwe)
    signature = sign_envelope(HEADER, jwe, key=signer)

    widened = add_reader(jwe, key=reader_b, reader=reader_c.public)

    assert jwe == before, "the input must not be mutated"
    assert open_sealed(widened, key=reader_c) == PLAINTEXT
    assert open_sealed(widened, key=reader_a) == PLAINTEXT
    for member in ("protected", "iv", "ciphertext", "tag", "aad"):
        assert widened[member] == jwe[member]
    assert widened["recipients"][:2] == jwe["recipients"]
    assert widened["recipients"][2]["header"]["kid"] == reader_c.kid
    assert signing_input(HEADER, widened) == signing_input(HEADER, jwe)
    assert verify_envelope(HEADER, widened, signature, resolve=resolve) == signer.kid


def test_add_reader_is_idempotent(reader_a: KeyPair, reader_c: KeyPair) -> None:
    jwe = seal(PLAINTEXT, readers=[reader_a.public])
    once = add_reader(jwe, key=reader_a, reader=reader_c.public)
    assert add_reader(once, key=reader_a, reader=reader_c.public) == once
    assert add_reader(once, key=reader_c, reader=reader_a.public) == once


def test_add_reader_needs_a_current_reader(reader_a: KeyPair, reader_b: KeyPair, reader_c: KeyPair) -> None:
    jwe = seal(PLAINTEXT, readers=[reader_a.public])
    with pytest.raises(VerificationError):
        add_reader(jwe, key=reader_b, reader=reader_c.public)


def test_add_reader_never_rewraps_a_tampered_message(reader_a: KeyPair, reader_c: KeyPair) -> None:
    jwe = seal(PLAINTEXT, readers=[reader_a.public])
    jwe["ciphertext"] = flip(jwe["ciphertext"])
    with pytest.raises(VerificationError):
        add_reader(jwe, key=reader_a, reader=reader_c.public)


def test_add_reader_refuses_a_signing_key_as_reader(reader_a: KeyPair, signer: KeyPair) -> None:
    jwe = seal(PLAINTEXT, readers=[reader_a.public])
    with pytest.raises(InvalidInput):
        add_reader(jwe, key=reader_a, reader=signer.public)


# --- signing input ------------------------------------------------------------------------------------


def test_signing_input_is_canonical_header_and_jwe_without_recipients(reader_a: KeyPair) -> None:
    jwe = seal(PLAINTEXT, readers=[reader_a.public], aad=b"x")
    jwe["unprotected"] = {"note": "not covered"}
    expected = {
        "header": HEADER,
        "payload": {k: jwe[k] for k in ("protected", "iv", "ciphertext", "tag", "aad")},
    }
    assert signing_input(HEADER, jwe) == canonical(expected)
    reordered = dict(reversed(list(HEADER.items())))
    assert signing_input(reordered, {**jwe, "recipients": []}) == signing_input(HEADER, jwe)


# --- sign / verify ------------------------------------------------------------------------------------


@pytest.fixture
def sealed(reader_a: KeyPair, reader_b: KeyPair) -> dict[str, Any]:
    return seal(PLAINTEXT, readers=[reader_a.public, reader_b.public])


def test_signature_is_detached_compact_eddsa(
    signer: KeyPair, sealed: dict[str, Any], resolve: Resolver
) -> None:
    signature = sign_envelope(HEADER, sealed, key=signer)
    protected, payload, sig = signature.split(".")
    assert payload == ""
    assert json.loads(unb64(protected)) == {"alg": "EdDSA", "kid": signer.kid, "typ": "spoc-envelope+jws"}
    assert len(unb64(sig)) == 64
    assert verify_envelope(HEADER, sealed, signature, resolve=resolve) == signer.kid
    assert unverified_kid(signature) == signer.kid


def test_tampered_header_is_refused(signer: KeyPair, sealed: dict[str, Any], resolve: Resolver) -> None:
    signature = sign_envelope(HEADER, sealed, key=signer)
    with pytest.raises(VerificationError, match=r"^signature did not verify$"):
        verify_envelope({**HEADER, "destination": "HR"}, sealed, signature, resolve=resolve)


@pytest.mark.parametrize("member", ["ciphertext", "iv", "tag", "protected"])
def test_tampered_ciphertext_is_refused(
    signer: KeyPair, sealed: dict[str, Any], resolve: Resolver, member: str
) -> None:
    signature = sign_envelope(HEADER, sealed, key=signer)
    with pytest.raises(VerificationError, match=r"^signature did not verify$"):
        verify_envelope(HEADER, {**sealed, member: flip(sealed[member])}, signature, resolve=resolve)


def test_tampered_signature_is_refused(signer: KeyPair, sealed: dict[str, Any], resolve: Resolver) -> None:
    protected, _, sig = sign_envelope(HEADER, sealed, key=signer).split(".")
    with pytest.raises(VerificationError):
        verify_envelope(HEADER, sealed, f"{protected}..{flip(sig)}", resolve=resolve)


def test_signature_by_another_key_under_the_signers_kid_is_refused(
    signer: KeyPair, sealed: dict[str, Any], resolve: Resolver
) -> None:
    forger = KeyPair.generate("sig")
    _, _, forged_sig = sign_envelope(HEADER, sealed, key=forger).split(".")
    protected, _, _ = sign_envelope(HEADER, sealed, key=signer).split(".")
    with pytest.raises(VerificationError):
        verify_envelope(HEADER, sealed, f"{protected}..{forged_sig}", resolve=resolve)


def _token(header: dict[str, Any], signature: bytes, payload: str = "") -> str:
    return f"{b64(json.dumps(header).encode())}.{payload}.{b64(signature)}"


def test_alg_none_is_refused(signer: KeyPair, sealed: dict[str, Any], resolve: Resolver) -> None:
    token = _token({"alg": "none", "kid": signer.kid, "typ": "spoc-envelope+jws"}, b"")
    with pytest.raises(VerificationError):
        verify_envelope(HEADER, sealed, token, resolve=resolve)


def test_hs256_with_the_public_key_as_secret_is_refused(
    signer: KeyPair, sealed: dict[str, Any], resolve: Resolver
) -> None:
    """The classic algorithm confusion: an HMAC keyed with the (public) verification key."""
    header = {"alg": "HS256", "kid": signer.kid, "typ": "spoc-envelope+jws"}
    protected = b64(json.dumps(header).encode())
    message = f"{protected}.{b64(signing_input(HEADER, sealed))}".encode()
    for secret in (unb64(signer.public.x), signer.public.x.encode(), json.dumps(signer.public.jwk).encode()):
        mac = hmac.new(secret, message, hashlib.sha256).digest()
        with pytest.raises(VerificationError):
            verify_envelope(HEADER, sealed, f"{protected}..{b64(mac)}", resolve=resolve)


def test_unknown_kid_is_refused(sealed: dict[str, Any], resolve: Resolver) -> None:
    stranger = KeyPair.generate("sig")
    with pytest.raises(VerificationError):
        verify_envelope(HEADER, sealed, sign_envelope(HEADER, sealed, key=stranger), resolve=resolve)


def test_directory_outage_is_not_a_verification_failure(signer: KeyPair, sealed: dict[str, Any]) -> None:
    def down(kid: str) -> PublicKey:
        raise Unavailable("directory unavailable")

    with pytest.raises(Unavailable):
        verify_envelope(HEADER, sealed, sign_envelope(HEADER, sealed, key=signer), resolve=down)


def test_resolver_returning_the_wrong_key_is_refused(
    signer: KeyPair, sealed: dict[str, Any], reader_a: KeyPair
) -> None:
    signature = sign_envelope(HEADER, sealed, key=signer)
    for wrong in (reader_a.public, KeyPair.generate("sig").public):

        def liar(kid: str, wrong: PublicKey = wrong) -> PublicKey:
            return wrong

        with pytest.raises(VerificationError):
            verify_envelope(HEADER, sealed, signature, resolve=liar)


def test_resolver_not_found_is_refused(signer: KeyPair, sealed: dict[str, Any]) -> None:
    def revoked(kid: str) -> PublicKey:
        raise NotFound("no such key")

    with pytest.raises(VerificationError):
        verify_envelope(HEADER, sealed, sign_envelope(HEADER, sealed, key=signer), resolve=revoked)


def test_custody_token_is_not_an_envelope_signature(
    signer: KeyPair, sealed: dict[str, Any], resolve: Resolver
) -> None:
    token = countersign({"header": HEADER}, key=signer)
    protected, _, sig = token.split(".")
    for candidate in (token, f"{protected}..{sig}"):
        with pytest.raises(VerificationError):
            verify_envelope(HEADER, sealed, candidate, resolve=resolve)


def test_typ_with_media_type_prefix_is_accepted(
    signer: KeyPair, sealed: dict[str, Any], resolve: Resolver
) -> None:
    token = _jws.sign_compact(
        signing_input(HEADER, sealed), key=signer, typ="application/SPOC-envelope+jws", detached=True
    )
    assert verify_envelope(HEADER, sealed, token, resolve=resolve) == signer.kid


def test_attached_payload_is_refused(signer: KeyPair, sealed: dict[str, Any], resolve: Resolver) -> None:
    token = _jws.sign_compact(
        signing_input(HEADER, sealed), key=signer, typ="spoc-envelope+jws", detached=False
    )
    with pytest.raises(VerificationError):
        verify_envelope(HEADER, sealed, token, resolve=resolve)


def test_non_i_json_header_is_refused(signer: KeyPair, sealed: dict[str, Any], resolve: Resolver) -> None:
    signature = sign_envelope(HEADER, sealed, key=signer)
    with pytest.raises(VerificationError):
        verify_envelope({**HEADER, "priority": float("nan")}, sealed, signature, resolve=resolve)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a..b.c",
        "!!..AA",
        f"{b64(b'[1]')}..AA",
        f"{b64(b'not json')}..AA",
        b64(b'{"alg":"EdDSA","alg":"none","kid":"k","typ":"spoc-envelope+jws"}') + "..AA",
        12,
    ],
)
def test_malformed_tokens_are_refused(sealed: dict[str, Any], resolve: Resolver, token: Any) -> None:
    with pytest.raises(VerificationError, match=r"^signature did not verify$"):
        verify_envelope(HEADER, sealed, token, resolve=resolve)
    with pytest.raises(VerificationError):
        unverified_kid(token)


def test_unverified_kid_needs_a_kid() -> None:
    with pytest.raises(VerificationError):
        unverified_kid(b64(b'{"alg":"EdDSA"}') + "..AA")


def test_signing_with_an_encryption_key_is_a_programming_error(
    reader_a: KeyPair, sealed: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="'sig'"):
        sign_envelope(HEADER, sealed, key=reader_a)
