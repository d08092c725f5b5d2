"""The direct opening path (jwcrypto's ECDH-ES+A256KW and A256GCM algorithm objects after our own checks,
no jwcrypto ``JWE`` object) and the direct EdDSA verification: the same answers as the library's full
objects, and every tamper still refused.

The reference below is jwcrypto's own ``JWE``, given the Flattened JSON of the reader's entry (what
``open_sealed`` fed it before): wherever both answer, they must agree. The new path is stricter in two
places only, each pinned here: base64url must be canonical, and ``epk`` must be a bare X25519 public key.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwe as joserfc_jwe
from joserfc.jwk import OKPKey
from jwcrypto import jwe as jwcrypto_jwe

from broker.crypto import (
    KeyPair,
    PublicKey,
    add_reader,
    open_sealed,
    open_with_any,
    opening_key,
    seal,
    sign_envelope,
    signing_input,
    verify_envelope,
)
from broker.crypto._b64 import b64url_decode, b64url_encode
from broker.crypto.envelope import _KEY_MGMT
from broker.errors import VerificationError

Resolver = Callable[[str], PublicKey]
PLAINTEXT = b'{"subject":"vehicle","plate":"TR-123-AB"}'
HEADER: dict[str, Any] = {"sender": "AL-ASP", "destination": "RS", "type": "request"}


def reference_open(jwe: dict[str, Any], key: KeyPair) -> bytes | None:
    """jwcrypto's full JWE object on the reader's own entry; None where it refuses."""
    (entry,) = [r for r in jwe["recipients"] if r["header"]["kid"] == key.kid]
    flat = {k: v for k, v in jwe.items() if k != "recipients"} | entry
    obj = jwcrypto_jwe.JWE()
    obj.allowed_algs = ["ECDH-ES+A256KW", "A256GCM"]
    try:
        obj.deserialize(json.dumps(flat))
        obj.decrypt(key.to_jwcrypto())
    except Exception:  # any refusal of the library's is "None" here
        return None
    plaintext: bytes = obj.plaintext
    return plaintext


def ours(jwe: dict[str, Any], key: KeyPair) -> bytes | None:
    try:
        return open_sealed(jwe, key=key)
    except VerificationError:
        return None


def flip_bit(text: str, *, at: int | None = None) -> str:
    raw = bytearray(b64url_decode(text))
    raw[len(raw) // 2 if at is None else at] ^= 0x01
    return b64url_encode(bytes(raw))


def other_spelling(text: str) -> str:
    """A non-canonical spelling of the same bytes (a non-zero unused trailing bit), which lenient decoders
    accept; only possible when the length leaves unused bits."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(text) % 4 in (2, 3)
    return text[:-1] + alphabet[alphabet.index(text[-1]) | 1]


@pytest.fixture
def sealed(reader_a: KeyPair, reader_b: KeyPair) -> dict[str, Any]:
    return seal(PLAINTEXT, readers=[reader_a.public, reader_b.public], aad=b"routing")


# --- the same answers as jwcrypto's JWE -------------------------------------------------------------------


def test_opens_what_the_library_opens(sealed: dict[str, Any], reader_a: KeyPair, reader_b: KeyPair) -> None:
    for key in (reader_a, reader_b):
        assert ours(sealed, key) == reference_open(sealed, key) == PLAINTEXT


def _entry(jwe: dict[str, Any], i: int = 0) -> dict[str, Any]:
    entry: dict[str, Any] = jwe["recipients"][i]
    return entry


def _swap_kids(jwe: dict[str, Any]) -> None:
    _entry(jwe)["header"]["kid"] = _entry(jwe, 1)["header"]["kid"]
    _entry(jwe, 1)["header"]["kid"] = "someone-else"


TAMPERS: dict[str, Callable[[dict[str, Any]], object]] = {
    "ciphertext": lambda j: j.update(ciphertext=flip_bit(j["ciphertext"])),
    "ciphertext-truncated": lambda j: j.update(ciphertext=j["ciphertext"][:-4]),
    "tag": lambda j: j.update(tag=flip_bit(j["tag"])),
    "tag-short": lambda j: j.update(tag=b64url_encode(b64url_decode(j["tag"])[:12])),
    "iv": lambda j: j.update(iv=flip_bit(j["iv"])),
    "aad": lambda j: j.update(aad=flip_bit(j["aad"])),
    "aad-removed": lambda j: j.pop("aad"),
    "aad-added": lambda j: j.update(aad=b64url_encode(b"more")),
    "protected": lambda j: j.update(protected=b64url_encode(b'{"enc":"A256GCM","cty":"x"}')),
    "encrypted_key": lambda j: _entry(j).update(encrypted_key=flip_bit(_entry(j)["encrypted_key"])),
    "encrypted_key-removed": lambda j: _entry(j).pop("encrypted_key"),
    "epk-x": lambda j: _entry(j)["header"]["epk"].update(x=flip_bit(_entry(j)["header"]["epk"]["x"], at=3)),
    "epk-of-the-other-entry": lambda j: _entry(j)["header"].update(epk=_entry(j, 1)["header"]["epk"]),
    "epk-removed": lambda j: _entry(j)["header"].pop("epk"),
    "epk-curve": lambda j: _entry(j)["header"]["epk"].update(crv="X448"),
    "epk-kty": lambda j: _entry(j)["header"]["epk"].update(kty="EC"),
    "epk-short": lambda j: _entry(j)["header"]["epk"].update(x=b64url_encode(bytes(31))),
    "epk-not-object": lambda j: _entry(j)["header"].update(epk="OKP"),
    "apu-added": lambda j: _entry(j)["header"].update(apu=b64url_encode(b"someone")),
    "alg": lambda j: _entry(j)["header"].update(alg="ECDH-ES+A128KW"),
    "enc-in-unprotected": lambda j: j.update(unprotected={"enc": "A128GCM"}),
    "zip": lambda j: _entry(j)["header"].update(zip="DEF"),
    "crit": lambda j: _entry(j)["header"].update(crit=["exp"], exp=1),
    "kid-swapped": _swap_kids,
}


@pytest.mark.parametrize("tamper", TAMPERS.values(), ids=TAMPERS.keys())
def test_every_tamper_is_refused_as_by_the_library(
    sealed: dict[str, Any], reader_a: KeyPair, tamper: Callable[[dict[str, Any]], object]
) -> None:
    jwe = copy.deepcopy(sealed)
    tamper(jwe)
    with pytest.raises(VerificationError, match=r"^could not decrypt$"):
        open_sealed(jwe, key=reader_a)
    with pytest.raises(VerificationError, match=r"^could not decrypt$"):
        open_with_any(jwe, keys=[reader_a])
    if [r["header"].get("kid") for r in jwe["recipients"]].count(reader_a.kid) == 1:
        assert reference_open(jwe, reader_a) is None


def test_the_other_readers_entry_is_untouched_by_tampering_with_mine(
    sealed: dict[str, Any], reader_a: KeyPair, reader_b: KeyPair
) -> None:
    jwe = copy.deepcopy(sealed)
    TAMPERS["encrypted_key"](jwe)
    TAMPERS["epk-x"](jwe)
    assert open_sealed(jwe, key=reader_b) == PLAINTEXT


_READERS = [KeyPair.generate("enc") for _ in range(2)]


@settings(max_examples=20, deadline=None)
@given(
    plaintext=st.binary(min_size=1, max_size=300),
    aad=st.none() | st.binary(max_size=24),
    cty=st.none() | st.sampled_from(["application/json", "text/plain"]),
)
def test_property_same_plaintext_as_the_library(plaintext: bytes, aad: bytes | None, cty: str | None) -> None:
    jwe = seal(plaintext, readers=[k.public for k in _READERS], aad=aad, content_type=cty)
    for key in _READERS:
        assert ours(jwe, key) == reference_open(jwe, key) == plaintext


# --- where the direct path is stricter --------------------------------------------------------------------


@pytest.mark.parametrize("member", ["ciphertext", "tag", "aad", "encrypted_key", "epk"])
def test_a_second_spelling_of_the_same_bytes_is_refused(
    sealed: dict[str, Any], reader_a: KeyPair, member: str
) -> None:
    """jwcrypto's lenient base64url decoder accepts a spelling with non-zero unused bits; we do not (one
    spelling per value, as everywhere in broker.crypto)."""
    jwe = copy.deepcopy(sealed)
    if member == "encrypted_key":
        holder, name = _entry(jwe), member
    elif member == "epk":
        holder, name = _entry(jwe)["header"]["epk"], "x"
    else:
        holder, name = jwe, member
    holder[name] = other_spelling(holder[name])
    with pytest.raises(VerificationError):
        open_sealed(jwe, key=reader_a)
    assert reference_open(jwe, reader_a) == PLAINTEXT  # the library reads the same bytes


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"kid": "eph"}, id="kid"),
        pytest.param({"use": "sig"}, id="use"),
        pytest.param({"d": "A" * 43}, id="private-d"),
        pytest.param({"alg": "ECDH-ES+A256KW"}, id="alg"),
    ],
)
def test_epk_must_be_a_bare_public_key(
    sealed: dict[str, Any], reader_a: KeyPair, extra: dict[str, str]
) -> None:
    jwe = copy.deepcopy(sealed)
    _entry(jwe)["header"]["epk"].update(extra)
    with pytest.raises(VerificationError):
        open_sealed(jwe, key=reader_a)


def test_what_we_seal_has_a_bare_epk(sealed: dict[str, Any]) -> None:
    for entry in sealed["recipients"]:
        assert set(entry["header"]["epk"]) == {"kty", "crv", "x"}


# --- the content key's length -----------------------------------------------------------------------------


def _hand_sealed(reader: KeyPair, cek: bytes, *, content_key: bytes | None = None) -> dict[str, Any]:
    """A JWE built from the parts: ``cek`` wrapped by jwcrypto's ECDH-ES+A256KW, the content encrypted by
    AES-GCM under ``content_key`` (default: ``cek``)."""
    protected = b64url_encode(b'{"enc":"A256GCM"}')
    header = {"alg": "ECDH-ES+A256KW", "kid": reader.kid, "enc": "A256GCM"}
    wrapped = _KEY_MGMT.wrap(reader.public.to_jwcrypto(), 256, cek, header)
    iv = os.urandom(12)
    sealed = AESGCM(content_key or cek).encrypt(iv, PLAINTEXT, protected.encode())
    return {
        "protected": protected,
        "iv": b64url_encode(iv),
        "ciphertext": b64url_encode(sealed[:-16]),
        "tag": b64url_encode(sealed[-16:]),
        "recipients": [
            {
                "header": {"alg": "ECDH-ES+A256KW", "kid": reader.kid, **wrapped["header"]},
                "encrypted_key": b64url_encode(wrapped["ek"]),
            }
        ],
    }


def test_a_hand_built_jwe_opens(reader_a: KeyPair) -> None:
    """Control for the next test: the construction itself is sound."""
    jwe = _hand_sealed(reader_a, os.urandom(32))
    assert open_sealed(jwe, key=reader_a) == reference_open(jwe, reader_a) == PLAINTEXT


@pytest.mark.parametrize("bits", [128, 192, 384, 512])
def test_a_content_key_of_another_length_is_refused(reader_a: KeyPair, bits: int) -> None:
    """AES-GCM runs with a 128- or 192-bit key as well; ``enc`` says A256GCM, so only 256 bits are accepted
    (a longer key is refused too, not cut to size)."""
    cek = os.urandom(bits // 8)
    jwe = _hand_sealed(reader_a, cek, content_key=cek if bits < 256 else cek[:32])
    with pytest.raises(VerificationError):
        open_sealed(jwe, key=reader_a)
    assert reference_open(jwe, reader_a) is None


# --- the key, its entry and the shared algorithm objects --------------------------------------------------


def test_keys_open_only_their_own_entries_in_any_order(
    reader_a: KeyPair, reader_b: KeyPair, reader_c: KeyPair
) -> None:
    """The algorithm objects are shared by every call: interleaved readers of different messages must each
    get their own message, and a key never opens an entry named for another."""
    to_a = seal(b"for a", readers=[reader_a.public])
    to_b = seal(b"for b", readers=[reader_b.public])
    to_ab = seal(b"for both", readers=[reader_a.public, reader_b.public])
    for _ in range(2):
        assert open_sealed(to_a, key=reader_a) == b"for a"
        assert open_sealed(to_b, key=reader_b) == b"for b"
        assert open_sealed(to_ab, key=reader_b) == b"for both"
        assert open_sealed(to_ab, key=reader_a) == b"for both"
        for jwe, stranger in ((to_a, reader_b), (to_b, reader_a), (to_ab, reader_c)):
            with pytest.raises(VerificationError):
                open_sealed(jwe, key=stranger)
    assert open_with_any(to_ab, keys=[reader_c, reader_b]) == (reader_b, b"for both")
    assert opening_key(to_a, keys=[reader_b, reader_c, reader_a]) is reader_a
    with pytest.raises(VerificationError):
        open_with_any(to_a, keys=[reader_b, reader_c])


def test_an_entry_relabelled_with_the_right_kid_but_another_readers_wrap_is_refused(
    reader_a: KeyPair, reader_b: KeyPair
) -> None:
    """b's entry (its epk and wrapped key) under a's kid: a's key derives the wrong key-encryption key."""
    jwe = seal(PLAINTEXT, readers=[reader_a.public, reader_b.public])
    a_entry, b_entry = jwe["recipients"]
    jwe["recipients"] = [{**b_entry, "header": {**b_entry["header"], "kid": reader_a.kid}}]
    with pytest.raises(VerificationError):
        open_sealed(jwe, key=reader_a)
    assert a_entry["header"]["kid"] == reader_a.kid


# --- interop: the KDF's party info, and an added reader ---------------------------------------------------


def _joserfc_with_party_info(reader: KeyPair, apu: str) -> dict[str, Any]:
    obj = joserfc_jwe.GeneralJSONEncryption({"enc": "A256GCM"}, PLAINTEXT, aad=b"routing")
    header = {"alg": "ECDH-ES+A256KW", "kid": reader.kid, "apu": apu, "apv": b64url_encode(b"RS-SPOC")}
    obj.add_recipient(header, OKPKey.import_key(reader.public.jwk))
    return dict(joserfc_jwe.encrypt_json(obj, None))


def test_party_info_enters_the_key_derivation(reader_a: KeyPair, reader_c: KeyPair) -> None:
    """apu/apv (RFC 7518 §4.6.2) are read from the joint header exactly as jwcrypto's unwrap reads them."""
    produced = _joserfc_with_party_info(reader_a, b64url_encode(b"AL-SPOC"))
    assert open_sealed(produced, key=reader_a) == reference_open(produced, reader_a) == PLAINTEXT
    widened = add_reader(produced, key=reader_a, reader=reader_c.public)
    assert open_sealed(widened, key=reader_c) == PLAINTEXT
    changed = copy.deepcopy(produced)
    _entry(changed)["header"]["apu"] = b64url_encode(b"XX-SPOC")
    with pytest.raises(VerificationError):
        open_sealed(changed, key=reader_a)


def test_an_added_entry_is_what_the_library_would_add(
    sealed: dict[str, Any], reader_a: KeyPair, reader_c: KeyPair
) -> None:
    widened = add_reader(sealed, key=reader_a, reader=reader_c.public)
    new = widened["recipients"][-1]
    assert set(new) == {"header", "encrypted_key"}
    assert set(new["header"]) == {"alg", "kid", "epk"}
    assert new["header"]["alg"] == "ECDH-ES+A256KW"
    assert new["header"]["kid"] == reader_c.kid
    assert set(new["header"]["epk"]) == {"kty", "crv", "x"}
    assert len(b64url_decode(new["encrypted_key"])) == 40
    assert reference_open(widened, reader_c) == open_sealed(widened, key=reader_c) == PLAINTEXT


# --- verification: the signing input is the received protected text ---------------------------------------


def _hand_signed(signer: KeyPair, header_json: bytes, message: bytes) -> str:
    """A detached EdDSA JWS over exactly ``header_json`` (any spelling), signed with cryptography directly."""
    private = Ed25519PrivateKey.from_private_bytes(b64url_decode(json.loads(signer.private_jwk_json())["d"]))
    protected = b64url_encode(header_json)
    signature = private.sign(f"{protected}.{b64url_encode(message)}".encode())
    return f"{protected}..{b64url_encode(signature)}"


def test_a_header_in_another_json_spelling_verifies_as_signed(
    signer: KeyPair, sealed: dict[str, Any], resolve: Resolver
) -> None:
    """The signature covers the header's bytes as sent (RFC 7515): spaces and member order are the
    signer's; a re-spelling of the same JSON value by anyone else breaks it."""
    message = signing_input(HEADER, sealed)
    spaced = b'{ "typ" : "spoc-envelope+jws", "kid" : "%s", "alg" : "EdDSA" }' % signer.kid.encode()
    token = _hand_signed(signer, spaced, message)
    assert verify_envelope(HEADER, sealed, token, resolve=resolve) == signer.kid
    compact = json.dumps(json.loads(spaced), separators=(",", ":")).encode()
    respelled = f"{b64url_encode(compact)}.{token.split('.', 1)[1]}"
    with pytest.raises(VerificationError, match=r"^signature did not verify$"):
        verify_envelope(HEADER, sealed, respelled, resolve=resolve)


def test_a_second_spelling_of_the_signature_is_refused(
    signer: KeyPair, sealed: dict[str, Any], resolve: Resolver
) -> None:
    token = sign_envelope(HEADER, sealed, key=signer)
    protected, _, signature = token.split(".")
    assert verify_envelope(HEADER, sealed, token, resolve=resolve) == signer.kid
    with pytest.raises(VerificationError):
        verify_envelope(HEADER, sealed, f"{protected}..{other_spelling(signature)}", resolve=resolve)


def test_a_validly_signed_jwe_with_a_deeply_nested_protected_header_is_refused_one_way(
    signer: KeyPair, sealed: dict[str, Any], resolve: Resolver
) -> None:
    """The sender signs whatever it likes: a protected header nested past the parser's limit must still
    end as the one VerificationError, not a RecursionError."""
    jwe = {
        **sealed,
        "protected": b64url_encode(b'{"enc":"A256GCM","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    }
    signature = sign_envelope(HEADER, jwe, key=signer)
    with pytest.raises(VerificationError):
        verify_envelope(HEADER, jwe, signature, resolve=resolve)
    with pytest.raises(VerificationError):
        open_sealed(jwe, key=KeyPair.generate("enc"))
