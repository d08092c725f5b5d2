"""Keys for the crypto tests: real, freshly generated per test, never mocked."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from broker.crypto import KeyPair, PublicKey
from broker.errors import NotFound


@pytest.fixture
def signer() -> KeyPair:
    """The originating agency's Ed25519 key."""
    return KeyPair.generate("sig")


@pytest.fixture
def reader_a() -> KeyPair:
    return KeyPair.generate("enc")


@pytest.fixture
def reader_b() -> KeyPair:
    return KeyPair.generate("enc")


@pytest.fixture
def reader_c() -> KeyPair:
    return KeyPair.generate("enc")


def directory_of(*keys: KeyPair) -> Callable[[str], PublicKey]:
    """A ``resolve(kid)`` over the given keys that raises NotFound like the real directory does."""
    known = {k.kid: k.public for k in keys}

    def resolve(kid: str) -> PublicKey:
        try:
            return known[kid]
        except KeyError:
            raise NotFound("no such key") from None

    return resolve


@pytest.fixture
def directory() -> Callable[..., Callable[[str], PublicKey]]:
    """Factory fixture: ``directory(key, ...)`` builds a resolver over those keys."""
    return directory_of


@pytest.fixture
def resolve(signer: KeyPair) -> Callable[[str], PublicKey]:
    """A directory that knows only the signer."""
    return directory_of(signer)
