"""The worked example in ``schemas/examples/`` (docs/envelope.md) is valid, verifies and opens.

The files are generated once by ``tests/interop/make_example.py`` and committed; these tests keep them honest
against the schema, spoc's verifier, an independent JOSE library (joserfc) and the exported JSON Schema.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any, Final, cast

import pytest
import rfc8785
from joserfc import jwe, jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey
from pydantic import JsonValue

from broker.crypto import KeyPair, PublicKey, open_sealed, signing_input, verify_envelope
from broker.errors import NotFound, VerificationError
from schemas.envelope import Envelope
from schemas.export import schema_documents

ROOT: Final = Path(__file__).resolve().parents[2]
EXAMPLES: Final = ROOT / "schemas" / "examples"


def load(name: str) -> dict[str, Any]:
    value = json.loads((EXAMPLES / name).read_text("utf-8"))
    assert isinstance(value, dict)
    return value


@pytest.fixture(scope="module")
def envelope() -> dict[str, Any]:
    return load("envelope.example.json")


@pytest.fixture(scope="module")
def public_jwks() -> dict[str, Any]:
    return load("keys.example.jwks.json")


@pytest.fixture(scope="module")
def private_jwks() -> dict[str, Any]:
    return load("keys.example.private.jwks.json")


def private_jwk(private_jwks: dict[str, Any], party: str) -> dict[str, Any]:
    kid = private_jwks["parties"][party]
    (jwk,) = [k for k in private_jwks["keys"] if k["kid"] == kid]
    return cast(dict[str, Any], jwk)


def flattened_for(general: dict[str, Any], kid: str) -> jwe.FlattenedJSONSerialization:
    """RFC 7516 §7.2.2: the Flattened JSON of the one recipient entry named ``kid``."""
    flat = {k: v for k, v in general.items() if k != "recipients"}
    (entry,) = [r for r in general["recipients"] if r["header"]["kid"] == kid]
    flat.update(entry)
    return cast(jwe.FlattenedJSONSerialization, flat)


def test_example_is_a_valid_envelope_as_described(envelope: dict[str, Any]) -> None:
    model = Envelope.model_validate(envelope)
    header = model.header
    assert (header.sender_agency, header.destination_country, header.type) == ("AL-ASP", "RS", "request")
    assert (header.category, header.classification) == ("migrant-smuggling", "RESTRICTED")
    assert header.handling_codes == ("H0", "H2")
    assert header.priority.level == "urgent"
    assert header.priority.urgency_reason == "risk-information-loses-relevance"
    assert header.priority.urgency_explanation
    assert header.priority.information_access == "direct"
    # The header in the file is exactly the validated header's canonical dump, so signing_view agrees.
    assert model.signing_view()["header"] == envelope["header"]


def test_example_keys_are_named_by_their_thumbprints_and_private_keys_are_labelled(
    public_jwks: dict[str, Any], private_jwks: dict[str, Any]
) -> None:
    assert set(public_jwks["parties"]) == {"AL-ASP", "AL-SPOC", "RS-SPOC"}
    assert private_jwks["parties"] == public_jwks["parties"]
    assert "THROWAWAY EXAMPLE KEYS" in private_jwks["warning"]
    public = {k["kid"]: PublicKey.from_jwk(k) for k in public_jwks["keys"]}
    assert all("d" not in k for k in public_jwks["keys"])
    for jwk in private_jwks["keys"]:
        pair = KeyPair.from_private_jwk(jwk)  # checks d matches x and kid is the thumbprint
        assert public[pair.kid] == pair.public
    assert {public[kid].use for kid in public_jwks["parties"].values()} == {"sig", "enc"}
    assert public[public_jwks["parties"]["AL-ASP"]].use == "sig"


def test_example_signature_verifies_with_the_public_jwks(
    envelope: dict[str, Any], public_jwks: dict[str, Any]
) -> None:
    known = {k["kid"]: PublicKey.from_jwk(k) for k in public_jwks["keys"]}

    def resolve(kid: str) -> PublicKey:
        if kid not in known:
            raise NotFound("not an example key")
        return known[kid]

    kid = verify_envelope(envelope["header"], envelope["payload"], envelope["signature"], resolve=resolve)
    assert kid == public_jwks["parties"]["AL-ASP"]
    changed = {**envelope["header"], "classification": "UNCLASSIFIED"}
    with pytest.raises(VerificationError):
        verify_envelope(changed, envelope["payload"], envelope["signature"], resolve=resolve)


def test_example_signature_verifies_with_joserfc_and_rfc8785(
    envelope: dict[str, Any], public_jwks: dict[str, Any]
) -> None:
    """The walk-through of docs/envelope.md, step by step, without spoc's code."""
    payload = envelope["payload"]
    covered = {k: payload[k] for k in ("protected", "iv", "ciphertext", "tag", "aad") if k in payload}
    signed = rfc8785.dumps({"header": envelope["header"], "payload": covered})
    assert signed == signing_input(envelope["header"], payload)
    protected_b64 = envelope["signature"].split(".")[0]
    protected = json.loads(base64.urlsafe_b64decode(protected_b64 + "=" * (-len(protected_b64) % 4)))
    assert protected == {"alg": "EdDSA", "kid": public_jwks["parties"]["AL-ASP"], "typ": "spoc-envelope+jws"}
    (jwk,) = [k for k in public_jwks["keys"] if k["kid"] == protected["kid"]]
    key = OKPKey.import_key(jwk)
    assert key.thumbprint() == protected["kid"]
    with pytest.warns(SecurityWarning, match="RFC 9864"):
        jws.deserialize_compact(envelope["signature"], key, algorithms=["EdDSA"], payload=signed)
    # docs/envelope.md walks through these exact values; regenerating the example must update it.
    guide = (ROOT / "docs" / "envelope.md").read_text("utf-8")
    assert f"sha-256:{hashlib.sha256(signed).hexdigest()}" in guide
    assert f"{len(signed)} bytes" in guide
    assert all(kid in guide for kid in public_jwks["parties"].values())


@pytest.mark.parametrize("party", ["RS-SPOC", "AL-SPOC"])
def test_joserfc_opens_the_example_with_a_reader_private_key(
    envelope: dict[str, Any], private_jwks: dict[str, Any], party: str
) -> None:
    key = OKPKey.import_key(private_jwk(private_jwks, party))
    opened = jwe.decrypt_json(flattened_for(envelope["payload"], key.thumbprint()), key)
    assert opened.plaintext == (EXAMPLES / "plaintext.example.json").read_bytes()
    assert opened.protected == {"enc": "A256GCM"}
    json.loads(opened.plaintext)  # the payload of this example is JSON


def test_spoc_opens_the_example_and_the_sender_key_does_not(
    envelope: dict[str, Any], private_jwks: dict[str, Any]
) -> None:
    rs = KeyPair.from_private_jwk(private_jwk(private_jwks, "RS-SPOC"))
    assert open_sealed(envelope["payload"], key=rs) == (EXAMPLES / "plaintext.example.json").read_bytes()
    stranger = KeyPair.generate("enc")
    with pytest.raises(VerificationError):
        open_sealed(envelope["payload"], key=stranger)


def _objects(value: JsonValue, schema: dict[str, Any], defs: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(path, sub-schema, sub-value) for every object schema reachable from ``schema`` along ``value``."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    found: list[tuple[str, Any, Any]] = []
    if isinstance(value, dict) and schema.get("type") == "object":
        found.append(("", schema, value))
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                for option in sub.get("anyOf", [sub]):
                    for path, s, v in _objects(value[name], option, defs):
                        found.append((f"/{name}{path}", s, v))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            for path, s, v in _objects(item, schema["items"], defs):
                found.append((f"/{i}{path}", s, v))
    return found


def test_every_required_field_of_the_exported_schema_is_in_the_example(envelope: dict[str, Any]) -> None:
    document = schema_documents()["envelope"]
    defs = cast(dict[str, Any], document.get("$defs", {}))
    header_schema = defs["RoutingHeader"]
    assert set(cast(list[str], header_schema["required"])) <= set(envelope["header"])
    objects = _objects(cast(JsonValue, envelope), cast(dict[str, Any], document), defs)
    paths = {path for path, _, _ in objects}
    assert {
        "",
        "/header",
        "/header/priority",
        "/header/evaluation",
        "/payload",
        "/payload/recipients/0",
    } <= paths
    for path, schema, value in objects:
        missing = set(schema.get("required", [])) - set(value)
        assert not missing, f"{path or '/'} lacks required {sorted(missing)}"
    priority_schema = defs["Priority"]
    assert "information_access" in priority_schema["required"]
