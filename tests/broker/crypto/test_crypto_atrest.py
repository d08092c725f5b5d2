"""Keys at rest under the master key: round trip, binding to the context, and no leaks."""

from __future__ import annotations

import base64
import pickle

import pytest

from broker.crypto import AtRestCipher, KeyPair, MasterKey
from broker.errors import VerificationError


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def secret() -> str:
    return MasterKey.generate_secret()


@pytest.fixture
def master(secret: str) -> MasterKey:
    return MasterKey.from_secret(secret)


def test_conforms_to_the_at_rest_seam(master: MasterKey) -> None:
    assert isinstance(master, AtRestCipher)


def test_round_trip_of_a_private_key(master: MasterKey) -> None:
    key = KeyPair.generate("sig")
    token = master.encrypt(key.private_jwk_json().encode(), context=key.kid)
    assert KeyPair.from_private_jwk(master.decrypt(token, context=key.kid).decode()) == key


def test_token_format(master: MasterKey) -> None:
    token = master.encrypt(b"secret", context="kid-1")
    version, nonce, sealed = token.split(".")
    assert version == "v1"
    assert len(unb64(nonce)) == 12
    assert len(unb64(sealed)) == len(b"secret") + 16
    assert master.encrypt(b"secret", context="kid-1") != token, "nonces must be fresh"


def test_same_secret_same_key(secret: str, master: MasterKey) -> None:
    token = master.encrypt(b"secret", context="kid-1")
    assert MasterKey.from_secret(f"  {secret}=\n").decrypt(token, context="kid-1") == b"secret"


def test_wrong_context_is_refused(master: MasterKey) -> None:
    token = master.encrypt(b"secret", context="kid-1")
    with pytest.raises(VerificationError, match=r"^could not decrypt$"):
        master.decrypt(token, context="kid-2")


def test_wrong_master_key_is_refused(master: MasterKey) -> None:
    token = master.encrypt(b"secret", context="kid-1")
    with pytest.raises(VerificationError, match=r"^could not decrypt$"):
        MasterKey.from_secret(MasterKey.generate_secret()).decrypt(token, context="kid-1")


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: "v2" + t[2:], id="unknown-version"),
        pytest.param(lambda t: t.rsplit(".", 1)[0], id="two-parts"),
        pytest.param(lambda t: t + ".x", id="four-parts"),
        pytest.param(lambda t: t[:-4], id="truncated"),
        pytest.param(lambda t: t.replace(".", ".!", 1), id="bad-base64"),
        pytest.param(lambda t: "v1.AAAA.AAAA", id="short-nonce"),
        pytest.param(lambda t: "", id="empty"),
    ],
)
def test_mangled_tokens_are_refused(master: MasterKey, mangle: object) -> None:
    token = master.encrypt(b"secret", context="kid-1")
    with pytest.raises(VerificationError):
        master.decrypt(mangle(token), context="kid-1")  # type: ignore[operator]


def test_context_is_required(master: MasterKey) -> None:
    with pytest.raises(ValueError, match="context"):
        master.encrypt(b"secret", context="")


@pytest.mark.parametrize(
    "bad",
    ["", "c2hvcnQ", "!" * 43, MasterKey.generate_secret()[:40]],
    ids=["empty", "short", "not-base64url", "truncated"],  # fixed ids: the last value is random per process
)
def test_weak_or_malformed_secrets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="master key secret") as info:
        MasterKey.from_secret(bad)
    assert not bad or bad not in str(info.value)


def test_generate_secret_is_32_random_bytes() -> None:
    assert len(unb64(MasterKey.generate_secret())) == 32
    assert MasterKey.generate_secret() != MasterKey.generate_secret()


def test_repr_hides_the_key(secret: str, master: MasterKey) -> None:
    assert repr(master) == str(master) == "MasterKey(<hidden>)"
    assert secret not in repr(master)
    with pytest.raises(TypeError):
        pickle.dumps(master)
