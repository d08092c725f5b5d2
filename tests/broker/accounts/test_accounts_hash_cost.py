"""The test suite's cheap password hash (SPOC_TEST_CHEAP_PASSWORD_HASH) never reaches a deployment: without
it spoc hashes with argon2id's default cost, and a production configuration that sets it is refused."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from pydantic import SecretStr

from broker.accounts.service import CHEAP_HASH_VARIABLE, _hasher
from broker.config import Settings
from broker.crypto import MasterKey


def test_without_the_variable_spoc_hashes_at_argon2s_default_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CHEAP_HASH_VARIABLE, raising=False)
    made = _hasher.__wrapped__()
    default = PasswordHasher()
    assert (made.time_cost, made.memory_cost, made.parallelism) == (
        default.time_cost,
        default.memory_cost,
        default.parallelism,
    )


def test_with_it_hashes_are_cheap_and_still_argon2id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CHEAP_HASH_VARIABLE, "1")
    made = _hasher.__wrapped__()
    assert made.memory_cost == CHEAPEST.memory_cost
    hashed = made.hash("a long enough password")
    assert hashed.startswith("$argon2id$")
    assert PasswordHasher().verify(hashed, "a long enough password")  # parameters travel with the hash


def test_production_refuses_the_cheap_hash() -> None:
    with pytest.raises(ValueError, match="SPOC_TEST_CHEAP_PASSWORD_HASH"):
        Settings(
            environment="production",
            master_key=SecretStr(MasterKey.generate_secret()),
            test_cheap_password_hash=True,
        )
