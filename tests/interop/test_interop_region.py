"""The regional directory's signature with an implementation that is not spoc's, following docs/region.md only:
joserfc + rfc8785 verify a directory that ``spoc region sign`` made, and ``spoc region verify`` accepts one that
joserfc signed (and refuses it once a byte of the document changes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import rfc8785
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey

from tests.broker.region.region_builders import draft, nodes

SPOC = Path(sys.executable).parent / "spoc"


@contextmanager
def eddsa_deprecation() -> Iterator[None]:
    """joserfc warns on every use of the polymorphic ``EdDSA`` name (RFC 9864); the wire format keeps it."""
    with pytest.warns(SecurityWarning, match="RFC 9864"):
        yield


def _spoc(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")}
    return subprocess.run(
        [str(SPOC), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_joserfc_verifies_what_spoc_signs_and_spoc_verifies_what_joserfc_signs(tmp_path: Path) -> None:
    key_file, anchor = tmp_path / "gov.key.json", tmp_path / "anchor.jwks.json"
    assert _spoc("region", "keygen", "--out", str(key_file), "--anchor-out", str(anchor)).returncode == 0
    (tmp_path / "draft.json").write_text(json.dumps(draft(nodes("AL", "XK"))))
    made = _spoc(
        "region",
        "sign",
        str(tmp_path / "draft.json"),
        "--key",
        str(key_file),
        "--out",
        str(tmp_path / "s.json"),
    )
    assert made.returncode == 0, made.stderr

    # docs/region.md, "The signature, byte for byte": JCS of the `directory` member, detached compact JWS.
    signed = json.loads((tmp_path / "s.json").read_text())
    governance = OKPKey.import_key(json.loads(anchor.read_text())["keys"][0])
    with eddsa_deprecation():
        verified = jws.deserialize_compact(
            signed["signature"], governance, algorithms=["EdDSA"], payload=rfc8785.dumps(signed["directory"])
        )
    assert verified.headers() == {"alg": "EdDSA", "kid": governance.thumbprint(), "typ": "spoc-directory+jws"}

    # The other way: a governance tool written with joserfc signs; spoc verifies with only the anchor.
    own = OKPKey.generate_key("Ed25519")
    (tmp_path / "own-anchor.json").write_text(json.dumps({"keys": [own.as_dict(private=False)]}))
    document = draft(nodes("AL", "XK", "MK"), version=7)
    protected = {"alg": "EdDSA", "kid": own.thumbprint(), "typ": "spoc-directory+jws"}
    with eddsa_deprecation():
        attached = jws.serialize_compact(protected, rfc8785.dumps(document), own, algorithms=["EdDSA"])
    theirs = {"directory": document, "signature": jws.detach_content(attached)}
    (tmp_path / "theirs.json").write_text(json.dumps(theirs, indent=4))  # another serialisation: JCS decides
    ok = _spoc(
        "region", "verify", str(tmp_path / "theirs.json"), "--anchor", str(tmp_path / "own-anchor.json")
    )
    assert ok.returncode == 0, ok.stderr
    assert "version 7" in ok.stdout

    document["agreements"][0]["max_classification"] = "SECRET"
    (tmp_path / "changed.json").write_text(json.dumps(theirs))
    refused = _spoc(
        "region", "verify", str(tmp_path / "changed.json"), "--anchor", str(tmp_path / "own-anchor.json")
    )
    assert refused.returncode == 1
    assert "[directory-signature]" in refused.stderr
