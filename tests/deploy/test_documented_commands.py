"""Every ``spoc`` command the README and docs/ name exists in the installed ``spoc`` executable.

The commands are read from backticked spans (``spoc WORD [WORD]``: a command, or a group and its
command). The installed executable is run once as a user would (``spoc --help`` in a subprocess, which
imports every command group); each documented command is then asked for ``--help`` through the typer app
that the installed entry point runs, in this process, so the check costs no Python start-up per command.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
SPOC = Path(sys.executable).parent / "spoc"
COMMAND = re.compile(r"`spoc((?: [a-z][a-z-]*){1,2})")


def documented_commands() -> list[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in COMMAND.finditer(doc.read_text(encoding="utf-8")):
            found.add(tuple(match.group(1).split()))
    return sorted(found)


def _installed_app() -> typer.Typer:
    """The typer app that the installed ``spoc`` entry point (``module:main``, which calls ``app()``) runs."""
    from importlib.metadata import entry_points

    [script] = entry_points(group="console_scripts", name="spoc")
    assert script.attr == "main"
    app = importlib.import_module(script.module).app
    assert isinstance(app, typer.Typer)
    return app


def test_the_docs_name_commands() -> None:
    assert ("run",) in documented_commands()


def test_the_installed_executable_answers_with_every_documented_first_word() -> None:
    result = subprocess.run([str(SPOC), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-500:]
    for first in sorted({words[0] for words in documented_commands()}):
        assert re.search(rf"\b{re.escape(first)}\b", result.stdout), f"`spoc {first}` is not in `spoc --help`"


@pytest.mark.parametrize("words", documented_commands(), ids=" ".join)
def test_documented_command_exists(words: tuple[str, ...]) -> None:
    result = CliRunner().invoke(_installed_app(), [*words, "--help"])
    assert result.exit_code == 0, f"`spoc {' '.join(words)}` is documented but fails: {result.output[-500:]}"
