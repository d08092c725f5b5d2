"""Publish the wire format for integrators: one JSON Schema per top-level model, and the code lists.

``python -m schemas export DIR`` writes ``DIR/<model>.schema.json`` (draft 2020-12, as pydantic generates it)
for every model in :data:`MODELS` and ``DIR/codelists/<name>.json`` byte-for-byte copies of the code lists,
printing one path per line. Output is deterministic (fixed order, sorted nothing, ``\\n`` line ends) so that
a re-export under version control shows only real changes.

Why argparse and not the project's CLI framework: ``schemas`` depends on nothing but pydantic, so an
integrator can vendor it and regenerate the schemas without installing the broker.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Final

from pydantic import BaseModel, JsonValue

from schemas import api, envelope, hop, region
from schemas.codelists import NAMES

__all__ = ["JSON_SCHEMA_DIALECT", "MODELS", "export", "main", "schema_documents"]

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

MODELS: Final[dict[str, type[BaseModel]]] = {
    "envelope": envelope.Envelope,
    "routing-header": envelope.RoutingHeader,
    "jwe-general": envelope.JWEGeneral,
    "priority": envelope.Priority,
    "evaluation": envelope.Evaluation,
    "decision": api.Decision,
    "problem": api.Problem,
    "submit-receipt": api.SubmitReceipt,
    "message-status": api.MessageStatus,
    "inbox-item": api.InboxItem,
    "custody-step": api.CustodyStep,
    "login-request": api.LoginRequest,
    "login-result": api.LoginResult,
    "region-directory": region.SignedDirectory,
    "hop-request": hop.HopRequest,
    "hop-event": hop.HopEventRequest,
    "hop-event-statement": hop.EventStatement,
}
"""File stem → model. Nested models are also inlined under ``$defs`` so that each file stands alone."""


def schema_documents() -> dict[str, dict[str, JsonValue]]:
    """The JSON Schema of every model in :data:`MODELS`, keyed by file stem, with ``$schema`` set.

    Validation mode: the schemas describe what the API *accepts*, which is what an integrator produces.
    """
    documents: dict[str, dict[str, JsonValue]] = {}
    for stem, model in MODELS.items():
        documents[stem] = {"$schema": JSON_SCHEMA_DIALECT, **model.model_json_schema(mode="validation")}
    return documents


def export(directory: Path) -> list[Path]:
    """Write the schemas and the code lists under ``directory`` (created if missing); the paths written.

    :raises OSError: ``directory`` cannot be created or written (e.g. it is a file, or read-only).
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "codelists").mkdir(exist_ok=True)
    written: list[Path] = []
    for stem, document in schema_documents().items():
        path = directory / f"{stem}.schema.json"
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    source = resources.files("schemas") / "codelists"
    for name in NAMES:
        path = directory / "codelists" / f"{name}.json"
        path.write_bytes((source / f"{name}.json").read_bytes())
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m schemas``; returns the exit status (0 ok, 2 usage or output error)."""
    parser = argparse.ArgumentParser(prog="python -m schemas", description="spoc wire format tools")
    commands = parser.add_subparsers(dest="command", required=True)
    export_cmd = commands.add_parser("export", help="write JSON Schemas and code lists into DIR")
    export_cmd.add_argument(
        "directory", metavar="DIR", type=Path, help="output directory (created if missing)"
    )
    args = parser.parse_args(argv)

    if args.directory.exists() and not args.directory.is_dir():
        sys.stderr.write(f"python -m schemas export: {args.directory} exists and is not a directory\n")
        return 2
    try:
        written = export(args.directory)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        sys.stderr.write(f"python -m schemas export: cannot write to {args.directory}: {reason}\n")
        return 2
    for path in written:
        sys.stdout.write(f"{path}\n")
    return 0
