"""The KeyStore seam (what a KMS/HSM would implement) and the rule that no secret leaks."""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from broker.crypto import KeyPair, MasterKey, countersign, verify_countersignature
from broker.errors import NotFound
from broker.keys.models import PartyKey
from broker.keys.service import DatabaseKeyStore, KeyStore

ROOT = Path(__file__).resolve().parents[3]


def test_database_keystore_conforms(keys: DatabaseKeyStore) -> None:
    assert isinstance(keys, KeyStore)
    signing = keys.signing_key("AL-SPOC")
    assert signing.use == "sig"
    assert all(k.use == "enc" for k in keys.encryption_keys("AL-SPOC"))
    token = countersign({"x": 1}, key=signing)
    assert verify_countersignature(token, resolve=lambda kid: keys.resolve(kid, party_id="AL-SPOC")) == {
        "x": 1
    }


def test_agency_private_keys_are_not_held(keys: DatabaseKeyStore) -> None:
    with pytest.raises(NotFound):
        keys.signing_key("AL-ASP")
    assert keys.encryption_keys("AL-ASP") == []


def test_held_keys_are_sealed_at_rest(db: Session, keys: DatabaseKeyStore, settings: object) -> None:
    row = db.get(PartyKey, keys.signing_key("RS-SPOC").kid)
    assert row is not None
    assert row.private_sealed is not None
    assert row.private_sealed.startswith("v1.")
    assert '"d"' not in row.private_sealed
    # Sealed under one master key, it does not open under another.
    other = DatabaseKeyStore(db, MasterKey.from_secret(MasterKey.generate_secret()))
    from broker.keys import service

    service._private_cache.pop(row.kid, None)
    with pytest.raises(Exception, match=r"decrypt|verif"):
        other.signing_key("RS-SPOC")


PRIVATE_D = re.compile(r'"d"\s*:\s*"[A-Za-z0-9_-]{32,}"')


def test_no_private_key_or_master_key_in_the_repository() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    allowed = {
        "schemas/examples/keys.example.private.jwks.json",  # throwaway example keys, labelled so
        "tests/broker/crypto/test_crypto_keys.py",  # RFC 8037 Appendix A's published test vector
        # The request-signing worked example's published throwaway key (docs/agency-signing.md says so):
        "docs/agency-signing.md",
        "schemas/examples/agency-signing.example.json",
        "tests/interop/make_signing_example.py",
    }
    offenders = []
    for name in files:
        path = ROOT / name
        if name in allowed or not path.is_file() or path.suffix in {".png"}:
            continue
        text = path.read_text(errors="ignore")
        # A private JWK is a "kty" plus a long base64url "d" value; this file's own pattern is neither.
        if PRIVATE_D.search(text) and '"kty"' in text:
            offenders.append(name)
        if name.endswith(("master.key", ".pem")):
            offenders.append(name)
    assert offenders == []


def test_keys_never_reach_logs_or_reprs(keys: DatabaseKeyStore, caplog: pytest.LogCaptureFixture) -> None:
    pair = keys.signing_key("HR-SPOC")
    secret_d = __import__("json").loads(pair.private_jwk_json())["d"]
    caplog.set_level(logging.DEBUG)
    logging.getLogger("spoc").info("using %r", pair)
    assert secret_d not in caplog.text
    assert secret_d not in repr(pair)
    assert secret_d not in str(KeyPair.generate("sig"))
