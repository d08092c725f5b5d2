"""Keys: RFC 7638 / RFC 8037 known answers, what a public key may look like, and that secrets stay hidden."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from broker.crypto import KeyPair, PublicKey, thumbprint
from broker.errors import InvalidInput

# RFC 8037 Appendix A.1 (private Ed25519 key) and A.3 (its thumbprint).
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
RFC8037_PUBLIC = {"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X}


def test_thumbprint_known_answer_rfc8037_a3() -> None:
    assert thumbprint(RFC8037_PUBLIC) == RFC8037_THUMBPRINT


def test_thumbprint_ignores_non_required_members() -> None:
    assert thumbprint({**RFC8037_PUBLIC, "kid": "x", "use": "sig", "alg": "EdDSA"}) == RFC8037_THUMBPRINT


def test_thumbprint_of_garbage_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        thumbprint({"kty": "nope"})


def test_public_key_kid_is_the_thumbprint() -> None:
    key = PublicKey.from_jwk(RFC8037_PUBLIC)
    assert key.kid == RFC8037_THUMBPRINT
    assert key.use == "sig"
    assert key.jwk == {**RFC8037_PUBLIC, "kid": RFC8037_THUMBPRINT, "use": "sig", "alg": "EdDSA"}


def test_private_key_derives_rfc8037_public_key() -> None:
    key = KeyPair.from_private_jwk({**RFC8037_PUBLIC, "d": RFC8037_D})
    assert key.kid == RFC8037_THUMBPRINT
    assert key.public.x == RFC8037_X


@pytest.mark.parametrize(
    ("use", "crv", "alg"), [("sig", "Ed25519", "EdDSA"), ("enc", "X25519", "ECDH-ES+A256KW")]
)
def test_generate(use: Any, crv: str, alg: str) -> None:
    key = KeyPair.generate(use)
    jwk = key.public.jwk
    assert (key.use, jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == (use, "OKP", crv, alg, use)
    assert key.kid == thumbprint(jwk) == jwk["kid"]
    assert "d" not in jwk
    assert KeyPair.generate(use).kid != key.kid


def test_generate_refuses_unknown_use() -> None:
    with pytest.raises(InvalidInput):
        KeyPair.generate("both")  # type: ignore[arg-type]


def test_from_jwk_accepts_matching_kid_and_drops_other_members() -> None:
    key = PublicKey.from_jwk(
        {**RFC8037_PUBLIC, "kid": RFC8037_THUMBPRINT, "x5c": ["..."], "key_ops": ["verify"]}
    )
    assert set(key.jwk) == {"kty", "crv", "x", "kid", "use", "alg"}


def _x25519_public() -> dict[str, Any]:
    return {k: v for k, v in KeyPair.generate("enc").public.jwk.items() if k in ("kty", "crv", "x")}


@pytest.mark.parametrize(
    "jwk",
    [
        pytest.param({**RFC8037_PUBLIC, "d": RFC8037_D}, id="private-member-d"),
        pytest.param({"kty": "RSA", "n": "AQAB", "e": "AQAB"}, id="rsa"),
        pytest.param({"kty": "EC", "crv": "P-256", "x": RFC8037_X, "y": RFC8037_X}, id="ec-p256"),
        pytest.param({"kty": "OKP", "crv": "Ed448", "x": RFC8037_X}, id="ed448"),
        pytest.param({"kty": "OKP", "crv": "X448", "x": RFC8037_X}, id="x448"),
        pytest.param({"kty": "oct", "k": "c2VjcmV0"}, id="symmetric"),
        pytest.param({**RFC8037_PUBLIC, "use": "enc"}, id="ed25519-as-enc"),
        pytest.param({**RFC8037_PUBLIC, "alg": "ES256"}, id="wrong-alg"),
        pytest.param({**RFC8037_PUBLIC, "kid": "my-own-kid"}, id="chosen-kid"),
        pytest.param({**RFC8037_PUBLIC, "x": RFC8037_X + "="}, id="padded-x"),
        pytest.param({**RFC8037_PUBLIC, "x": RFC8037_X[:-1] + "p"}, id="non-canonical-x"),
        pytest.param({**RFC8037_PUBLIC, "x": RFC8037_X[:-4]}, id="short-x"),
        pytest.param({**RFC8037_PUBLIC, "x": 12}, id="x-not-string"),
        pytest.param({"kty": "OKP", "crv": "Ed25519"}, id="missing-x"),
    ],
)
def test_from_jwk_refuses(jwk: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        PublicKey.from_jwk(jwk)


def test_from_jwk_refuses_non_mapping() -> None:
    with pytest.raises(InvalidInput):
        PublicKey.from_jwk(["not", "a", "jwk"])  # type: ignore[arg-type]


def test_x25519_public_key_is_enc() -> None:
    key = PublicKey.from_jwk(_x25519_public())
    assert key.use == "enc"
    assert key.jwk["alg"] == "ECDH-ES+A256KW"


def test_direct_construction_is_validated() -> None:
    with pytest.raises(InvalidInput):
        PublicKey(kid="chosen", use="sig", x=RFC8037_X)
    with pytest.raises(InvalidInput):
        PublicKey(kid=RFC8037_THUMBPRINT, use="enc", x=RFC8037_X)  # thumbprint covers crv


def test_jwk_is_a_fresh_copy() -> None:
    key = PublicKey.from_jwk(RFC8037_PUBLIC)
    key.jwk["x"] = "tampered"
    assert key.jwk["x"] == RFC8037_X


def test_public_key_equality_is_key_material() -> None:
    assert PublicKey.from_jwk(RFC8037_PUBLIC) == PublicKey.from_jwk({**RFC8037_PUBLIC, "use": "sig"})
    assert len({PublicKey.from_jwk(RFC8037_PUBLIC), PublicKey.from_jwk(RFC8037_PUBLIC)}) == 1


@pytest.mark.parametrize("use", ["sig", "enc"])
def test_private_jwk_round_trip(use: Any) -> None:
    key = KeyPair.generate(use)
    text = key.private_jwk_json()
    assert KeyPair.from_private_jwk(text) == key
    assert KeyPair.from_private_jwk(json.loads(text)).public == key.public
    assert json.loads(text)["kid"] == key.kid


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda j: j.pop("d"), id="missing-d"),
        pytest.param(lambda j: j.update(x=RFC8037_X), id="x-of-another-key"),
        pytest.param(lambda j: j.pop("x"), id="missing-x"),
        pytest.param(lambda j: j.update(kid="chosen"), id="wrong-kid"),
        pytest.param(lambda j: j.update(d=j["d"][:-2]), id="short-d"),
        pytest.param(lambda j: j.update(crv="P-256"), id="wrong-curve"),
    ],
)
def test_from_private_jwk_refuses(mutate: Any) -> None:
    jwk = json.loads(KeyPair.generate("enc").private_jwk_json())
    mutate(jwk)
    with pytest.raises(InvalidInput):
        KeyPair.from_private_jwk(jwk)


def test_from_private_jwk_refuses_bad_json() -> None:
    with pytest.raises(InvalidInput):
        KeyPair.from_private_jwk("{not json")
    with pytest.raises(InvalidInput):
        KeyPair.from_private_jwk("[1]")


@pytest.mark.parametrize("use", ["sig", "enc"])
def test_repr_and_str_hide_private_material(use: Any) -> None:
    key = KeyPair.generate(use)
    d = json.loads(key.private_jwk_json())["d"]
    for text in (repr(key), str(key), f"{key!r} {key}", repr(key.public), repr([key])):
        assert d not in text
    assert key.kid in repr(key)


def test_key_pair_cannot_be_pickled() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(KeyPair.generate("sig"))


def test_errors_do_not_echo_private_material() -> None:
    jwk = {**RFC8037_PUBLIC, "d": RFC8037_D}
    with pytest.raises(InvalidInput) as info:
        PublicKey.from_jwk(jwk)
    assert RFC8037_D not in str(info.value)
    with pytest.raises(InvalidInput) as info:
        KeyPair.from_private_jwk({**jwk, "x": _x25519_public()["x"]})
    assert RFC8037_D not in str(info.value)


def test_the_shared_jwcrypto_key_of_a_public_key_is_not_changed_by_use() -> None:
    """``to_jwcrypto`` hands every caller one object per key: sealing to it and verifying with it must leave
    it exactly the public JWK it was built from."""
    from broker.crypto import seal, sign_envelope, verify_envelope

    reader, signer = KeyPair.generate("enc"), KeyPair.generate("sig")
    for key in (reader.public, signer.public):
        assert key.to_jwcrypto() is key.to_jwcrypto()
    before = {k.kid: json.loads(k.to_jwcrypto().export_public()) for k in (reader.public, signer.public)}
    sealed = seal(b'{"q": 1}', readers=[reader.public], aad=b"")
    header = {"message_id": "m"}
    signature = sign_envelope(header, sealed, key=signer)
    verify_envelope(header, sealed, signature, resolve=lambda kid: signer.public)
    after = {k.kid: json.loads(k.to_jwcrypto().export_public()) for k in (reader.public, signer.public)}
    assert after == before
    assert {k: v["x"] for k, v in after.items()} == {reader.kid: reader.public.x, signer.kid: signer.public.x}
    assert not any(k.to_jwcrypto().has_private for k in (reader.public, signer.public))
