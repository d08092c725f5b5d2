"""Constrained scalar types shared by the envelope and the API models.

Pydantic's lax parsing accepts far more than any standard: ``1738315800`` as a date (seconds or
milliseconds?), ``2025-01-31 09:30`` without seconds or offset, ``{A0B1…}`` or 32 bare hex digits as a UUID.
On the wire that only breeds disagreement between implementations, so text is held to the standard forms:
RFC 3339 ``date-time`` with an explicit offset for instants, the RFC 9562 8-4-4-4-12 hex form for UUIDs.
Python objects (``UUID``, aware ``datetime``) are accepted as they are.

Within those forms the spelling is free (``Z`` or ``+00:00``, milliseconds as JavaScript writes them, upper
or lower case hex), because agency systems in other languages sign the header *as they wrote it*, and the
broker verifies the received header as sent, never a re-serialisation of it. A model dumped back to JSON
may therefore spell a value differently from the original message (``Z`` for ``+00:00``); only the
*meaning* survives the round trip, which is why nothing may be verified against a re-dump of a received
header. Messages built from these models (``model_dump(mode="json")``) are always in one spelling.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta
from typing import Annotated, Any, Final
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
)

__all__ = [
    "AGENCY_ID_PATTERN",
    "BASE64URL_PATTERN",
    "COMPACT_JWS_PATTERN",
    "DETACHED_JWS_PATTERN",
    "AgencyId",
    "Base64Url",
    "CompactJWS",
    "DetachedJWS",
    "Timestamp",
    "VisibleText",
    "WireUUID",
    "show_format_characters",
]

AGENCY_ID_PATTERN: Final = r"^[A-Z]{2}-[A-Z0-9]{2,12}$"
"""An agency or contact-point id: the country code, a hyphen, a short upper-case name (``AL-ASP``)."""

BASE64URL_PATTERN: Final = r"^[A-Za-z0-9_-]*$"
"""Unpadded base64url (RFC 4648 §5) as JOSE writes it (RFC 7515 §2); strict decoding is the crypto layer's."""

_B64: Final = r"[A-Za-z0-9_-]"
COMPACT_JWS_PATTERN: Final = rf"^{_B64}+\.{_B64}*\.{_B64}+$"
"""A JWS in compact serialization (RFC 7515 §7.1); the payload part may be empty (detached, Appendix F)."""

DETACHED_JWS_PATTERN: Final = rf"^{_B64}+\.\.{_B64}+$"
"""A compact JWS whose payload is detached: ``<protected>..<signature>``."""

MAX_JWS_CHARS: Final = 8192
"""Ample for an Ed25519 signature (86 chars) and a protected header with ``alg``, ``kid`` and a few more."""

AgencyId = Annotated[str, StringConstraints(pattern=AGENCY_ID_PATTERN)]
"""Id of an agency (``AL-ASP``) or of a contact point (``AL-SPOC``)."""

Base64Url = Annotated[str, StringConstraints(pattern=BASE64URL_PATTERN)]
"""A base64url string; callers add length limits per field."""

CompactJWS = Annotated[str, StringConstraints(pattern=COMPACT_JWS_PATTERN, max_length=MAX_JWS_CHARS)]
"""A compact JWS, payload attached or detached."""

DetachedJWS = Annotated[str, StringConstraints(pattern=DETACHED_JWS_PATTERN, max_length=MAX_JWS_CHARS)]
"""A compact JWS with a detached payload, as on the envelope: the signed content travels beside it."""

_UUID_TEXT: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _standard_uuid(value: Any, handler: ValidatorFunctionWrapHandler) -> UUID:
    if isinstance(value, str) and not _UUID_TEXT.fullmatch(value):
        raise ValueError("a UUID is written as 8-4-4-4-12 hexadecimal digits (RFC 9562 §4)")
    if not isinstance(value, str | UUID):
        raise ValueError("a UUID is a string of 8-4-4-4-12 hexadecimal digits (RFC 9562 §4)")
    result: UUID = handler(value)
    return result


WireUUID = Annotated[
    UUID,
    WrapValidator(_standard_uuid),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": f"^{_UUID_TEXT.pattern}$"}),
]
"""A UUID, as text in the standard 8-4-4-4-12 form; dumped in lower case."""

_RFC3339: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})")


def _rfc3339(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError(
            "a timestamp is an RFC 3339 date-time with seconds and a UTC offset, "
            "e.g. 2025-01-31T09:30:00Z or 2025-01-31T10:30:00.250+01:00"
        )
    if not isinstance(value, str | datetime):
        # Refuse epoch numbers: seconds or milliseconds? No integrator should have to guess.
        raise ValueError("a timestamp is an RFC 3339 string with a UTC offset, e.g. 2025-01-31T09:30:00Z")
    result: datetime = handler(value)
    return result


def _whole_minute_offset(value: datetime) -> datetime:
    offset = value.utcoffset()
    if offset is not None and offset % timedelta(minutes=1):
        raise ValueError("a UTC offset must be whole minutes (RFC 3339 cannot write seconds in an offset)")
    return value


Timestamp = Annotated[AwareDatetime, WrapValidator(_rfc3339), AfterValidator(_whole_minute_offset)]
"""A timezone-aware instant (naive datetimes are refused: they are ambiguous across the region's zones)."""


def _no_format_characters(value: str) -> str:
    for char in value:
        if unicodedata.category(char) == "Cf":
            name = unicodedata.name(char, "a format character")
            raise ValueError(
                f"contains the invisible format character U+{ord(char):04X} ({name}); bidirectional "
                "overrides and zero-width characters can make text read differently from what it says"
            )
    return value


VisibleText = Annotated[str, AfterValidator(_no_format_characters)]
"""Text that officers read (header free text, reasons): no Unicode format characters (category Cf: bidi
overrides and isolates such as U+202E, zero-width spaces and joiners, soft hyphens...). They display as
nothing, or reorder what is around them, so a reason or a legal basis could be made to read differently
from what it is. Refused, not stripped: the header is signed as sent, and a silent change would hide it."""


def show_format_characters(text: str) -> str:
    """``text`` with every format character (category Cf) replaced by a visible marker such as ``[U+202E]``:
    for text stored before :data:`VisibleText` refused them, or that reached spoc another way."""
    if text.isascii():
        return text
    return "".join(f"[U+{ord(c):04X}]" if unicodedata.category(c) == "Cf" else c for c in text)
