"""``python -m schemas export DIR``: the published JSON Schemas and code lists.

No JSON Schema library is a dependency, so :func:`conforms` below checks the subset of JSON Schema that
pydantic emits for these models (type, enum, const, required, properties, additionalProperties, $ref,
anyOf, items, pattern, lengths, uniqueItems). That is enough to show the exported envelope schema accepts
a known-good envelope and refuses the classic mistakes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from schemas.codelists import NAMES, entries
from schemas.export import MODELS, main

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def conforms(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> bool:
    if "$ref" in schema:
        return conforms(value, root["$defs"][schema["$ref"].rsplit("/", 1)[1]], root)
    if "anyOf" in schema and not any(conforms(value, s, root) for s in schema["anyOf"]):
        return False
    if "type" in schema:
        expected = _TYPES[schema["type"]]
        if not isinstance(value, expected) or (schema["type"] != "boolean" and isinstance(value, bool)):
            return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "const" in schema and value != schema["const"]:
        return False
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return False
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            return False
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            return False
        if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
            return False
        if "items" in schema and not all(conforms(v, schema["items"], root) for v in value):
            return False
    if isinstance(value, dict):
        if not set(schema.get("required", [])) <= value.keys():
            return False
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, member in value.items():
            member_schema = properties.get(key, extra)
            if member_schema is False:
                return False
            if isinstance(member_schema, dict) and not conforms(member, member_schema, root):
                return False
    return True


@pytest.fixture
def exported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "published"
    assert main(["export", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(MODELS) + len(NAMES)
    assert all(Path(line).is_file() for line in lines)
    return out


def test_export_writes_one_schema_per_model_and_the_code_lists(exported: Path) -> None:
    schemas = sorted(p.name for p in exported.glob("*.schema.json"))
    for name in ("envelope", "routing-header", "decision", "problem", "inbox-item", "message-status"):
        assert f"{name}.schema.json" in schemas
    assert len(schemas) == len(MODELS)
    source = resources.files("schemas") / "codelists"
    for name in NAMES:
        assert (exported / "codelists" / f"{name}.json").read_bytes() == (
            source / f"{name}.json"
        ).read_bytes()


def test_export_is_deterministic(exported: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main(["export", str(again)]) == 0
    for path in exported.rglob("*.json"):
        assert (again / path.relative_to(exported)).read_bytes() == path.read_bytes()


def test_exported_envelope_schema_accepts_a_good_envelope(
    exported: Path, envelope_data: dict[str, Any]
) -> None:
    schema = json.loads((exported / "envelope.schema.json").read_text("utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == {"header", "payload", "signature"}
    header = schema["$defs"]["RoutingHeader"]
    assert header["properties"]["category"]["enum"] == [e["code"] for e in entries("categories")]
    assert "information_access" in schema["$defs"]["Priority"]["required"]
    assert conforms(envelope_data, schema, schema)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda e: e["header"].update(category="jaywalking"),
        lambda e: e["header"].update(extra=1),
        lambda e: e["header"].pop("legal_basis"),
        lambda e: e["header"].update(handling_codes=["H0", "H0"]),
        lambda e: e["header"].update(sender_agency="al-asp"),
        lambda e: e["payload"].update(ciphertext="a+b"),
        lambda e: e["payload"].update(recipients=[]),
        lambda e: e.update(signature="a.b.c"),
        lambda e: e.update(spoc="2"),
    ],
)
def test_exported_envelope_schema_refuses_bad_envelopes(
    exported: Path, envelope_data: dict[str, Any], spoil: Any
) -> None:
    schema = json.loads((exported / "envelope.schema.json").read_text("utf-8"))
    spoil(envelope_data)
    assert not conforms(envelope_data, schema, schema)


def test_exported_decision_schema(exported: Path) -> None:
    schema = json.loads((exported / "decision.schema.json").read_text("utf-8"))
    assert conforms({"action": "refuse", "refusal_ground": "minor-offence"}, schema, schema)
    assert not conforms({"action": "refuse", "refusal_ground": "busy"}, schema, schema)


def test_bad_directory_is_one_line_on_stderr_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["export", str(a_file)]) == 2
    assert main(["export", str(a_file / "below")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("python -m schemas export:") for line in lines)


def test_module_entry_point(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "schemas", "export", str(tmp_path / "out")],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "envelope.schema.json").is_file()
    missing = subprocess.run(
        [sys.executable, "-m", "schemas"], cwd=root, capture_output=True, text=True, check=False
    )
    assert missing.returncode == 2
