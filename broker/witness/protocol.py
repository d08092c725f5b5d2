"""The bytes of C2SP tlog-witness ``add-checkpoint`` (https://c2sp.org/tlog-witness), and nothing else.

Request body (every line ends in U+000A)::

    old <size>              the size of the checkpoint the witness last cosigned for this origin (0: none)
    <base64 hash>           zero to 63 lines: the RFC 6962 §2.1.2 consistency proof from <size> to the new size
                            (an empty line)
    <checkpoint note>       a C2SP signed note (https://c2sp.org/signed-note) whose text is a checkpoint

Answers: ``200`` with one or more ``cosignature/v1`` note signature lines; ``409`` with ``<size>\\n`` and
``Content-Type: text/x.tlog.size`` when ``old`` is not the witness's size (or the same size has another root);
``400`` malformed (or ``old`` above the checkpoint's size); ``403`` no signature by the origin's key; ``404``
unknown origin; ``422`` the consistency proof does not verify.

Pure functions: no database, no settings, so that these parsers are what a second implementation is compared
with, and the client side (``broker.witness.submit``) builds exactly what the server side parses.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from broker.errors import InvalidInput

__all__ = [
    "ADD_CHECKPOINT",
    "MAX_BODY_BYTES",
    "MAX_PROOF_LINES",
    "SIZE_CONTENT_TYPE",
    "SUBMISSION_PREFIX",
    "AddCheckpoint",
    "CheckpointText",
    "parse_request",
    "parse_size",
    "request_body",
]

SUBMISSION_PREFIX: Final = "/v1/witness"
"""The witness's *submission prefix* under a node's ``base_url`` (the spec leaves the prefix to the witness)."""
ADD_CHECKPOINT: Final = SUBMISSION_PREFIX + "/add-checkpoint"
SIZE_CONTENT_TYPE: Final = "text/x.tlog.size"
MAX_PROOF_LINES: Final = 63
"""The spec's bound: a client MUST NOT send more (a proof in a tree of 2^63 leaves has at most 63 hashes)."""
MAX_BODY_BYTES: Final = 32 * 1024
"""Enough for 63 proof lines and a checkpoint with 100 signatures (the note parser's limit); refused above."""

_OLD: Final = re.compile(r"old (0|[1-9][0-9]{0,18})")
_SIZE: Final = re.compile(r"0|[1-9][0-9]{0,18}")


@dataclass(frozen=True)
class AddCheckpoint:
    """A parsed ``add-checkpoint`` request body."""

    old: int
    proof: tuple[bytes, ...]
    note: str


@dataclass(frozen=True)
class CheckpointText:
    """The first three lines of a C2SP checkpoint (https://c2sp.org/tlog-checkpoint); extension lines kept."""

    origin: str
    size: int
    root: bytes
    text: str

    @classmethod
    def parse(cls, text: str) -> CheckpointText:
        """Parse a checkpoint's note text strictly; InvalidInput if it is not one."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise InvalidInput("a checkpoint has an origin, a size and a root line", reason="malformed")
        origin, size, root = lines[:3]
        if not origin or not _SIZE.fullmatch(size):
            raise InvalidInput("a checkpoint's origin or size line is malformed", reason="malformed")
        return cls(origin, int(size), _hash(root), text)


def _hash(line: str) -> bytes:
    try:
        value = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("a hash line is not base64", reason="malformed") from None
    if len(value) != 32 or base64.b64encode(value).decode() != line:
        raise InvalidInput("a hash line is not the canonical base64 of 32 bytes", reason="malformed")
    return value


def parse_request(body: bytes) -> AddCheckpoint:
    """Parse an ``add-checkpoint`` body; InvalidInput (400) naming what is wrong. Signatures are not checked."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidInput(f"the body is larger than {MAX_BODY_BYTES} bytes", reason="too-large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the body is not UTF-8", reason="malformed") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise InvalidInput("no empty line between the proof and the checkpoint", reason="malformed")
    lines = head.split("\n")
    old = _OLD.fullmatch(lines[0])
    if old is None:
        raise InvalidInput("the first line must be 'old <size>'", reason="malformed")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise InvalidInput(f"more than {MAX_PROOF_LINES} consistency proof lines", reason="malformed")
    return AddCheckpoint(int(old.group(1)), tuple(_hash(line) for line in lines[1:]), note)


def request_body(old: int, proof: Sequence[bytes], note: str) -> bytes:
    """The body of an ``add-checkpoint`` request (what :func:`parse_request` reads back)."""
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


def parse_size(body: bytes) -> int:
    """The witness's size in a 409 answer (``text/x.tlog.size``: the decimal size and a newline)."""
    text = body.decode("ascii", "replace")
    if not text.endswith("\n") or not _SIZE.fullmatch(text[:-1]):
        raise InvalidInput("not a text/x.tlog.size body", reason="malformed")
    return int(text[:-1])
