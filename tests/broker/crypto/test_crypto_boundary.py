"""Invariant: only ``broker/crypto/`` touches crypto primitives or a JOSE library (STYLE practice 7).

Everything else uses the recipes in :mod:`broker.crypto`, so a review of the crypto is a review of one
package. ``joserfc`` is a test-only dependency and must not appear in shipped code at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("broker", "contact_points", "workers", "schemas")
CRYPTO = ROOT / "broker" / "crypto"
RESERVED = ("cryptography.hazmat", "jwcrypto", "joserfc")


def _imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _reserved(name: str) -> bool:
    return any(name == r or name.startswith(r + ".") for r in RESERVED)


def test_only_broker_crypto_imports_crypto_primitives() -> None:
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            in_crypto = CRYPTO in path.parents
            for name in _imported_modules(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if _reserved(name) and (not in_crypto or name.startswith("joserfc")):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_the_check_sees_imports() -> None:
    tree = ast.parse(
        "import jwcrypto.jwk\n"
        "from cryptography.hazmat.primitives import hashes\n"
        "from cryptography import x509"
    )
    assert [n for n in _imported_modules(tree) if _reserved(n)] == [
        "jwcrypto.jwk",
        "cryptography.hazmat.primitives",
        "cryptography.hazmat.primitives.hashes",
    ]
