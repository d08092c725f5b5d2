"""Every ``spoc`` command the README and docs/ name exists in the installed ``spoc`` executable.

The commands are read from backticked spans (``spoc WORD [WORD]``: a command, or a group and its
command) and each is run as ``spoc WORD [WORD] --help`` through the installed entry point, as a user would.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPOC = Path(sys.executable).parent / "spoc"
COMMAND = re.compile(r"`spoc((?: [a-z][a-z-]*){1,2})")


def documented_commands() -> list[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in COMMAND.finditer(doc.read_text(encoding="utf-8")):
            found.add(tuple(match.group(1).split()))
    return sorted(found)


def test_the_docs_name_commands() -> None:
    assert ("run",) in documented_commands()


@pytest.mark.parametrize("words", documented_commands(), ids=" ".join)
def test_documented_command_exists(words: tuple[str, ...]) -> None:
    result = subprocess.run(
        [str(SPOC), *words, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"`spoc {' '.join(words)}` is documented but fails: {result.stderr[-500:]}"
