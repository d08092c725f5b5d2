"""``schemas`` is the bottom of the dependency graph: it imports the standard library and pydantic only.

Integrators vendor it and the other packages build on it; one import of ``broker`` here would make the
wire format drag the exchange's database and crypto along, and invert the layering of DESIGN §3.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "schemas"
ALLOWED = {"schemas", "pydantic", "__future__"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_schemas_imports_only_stdlib_and_pydantic() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert files
    for path in files:
        foreign = {r for r in imported_roots(path) if r not in ALLOWED and r not in sys.stdlib_module_names}
        assert not foreign, f"{path.relative_to(PACKAGE.parent)} imports {sorted(foreign)}"
