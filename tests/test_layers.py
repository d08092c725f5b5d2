"""The layers read one way: schemas ← broker ← contact_points ← workers (DESIGN §3), checked on the AST."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["schemas", "broker", "contact_points", "workers"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", ORDER)
def test_a_layer_imports_only_the_layers_below_it(package: str) -> None:
    above = set(ORDER[ORDER.index(package) + 1 :])
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & above)
        for path in (ROOT / package).rglob("*.py")
        if _imports(path) & above
    }
    assert offenders == {}


def test_only_the_audit_package_writes_audit_tables() -> None:
    offenders = []
    for path in (ROOT / "broker").rglob("*.py"):
        if "audit" in path.parts or "migrations" in path.parts:
            continue
        text = path.read_text()
        if any(
            f"{verb}(AuditEntry" in text or f"{verb}(AuditLeaf" in text
            for verb in ("insert", "update", "delete")
        ):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
