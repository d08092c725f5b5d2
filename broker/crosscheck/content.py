"""Reading a decrypted payload: structured content (``schemas.content``) or text.

Intake calls :func:`check_payload` on the plaintext the origin contact point decrypted (the agency's
node is where a sender can still fix its content); officers' pages and the cross-check call
:func:`parse_payload`. A payload that claims the structured format (a JSON object whose ``format``
starts ``spoc-content/``) must fit it; anything else is unstructured and shown as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError

from broker.errors import PolicyRefused
from schemas.content import Content, claims_structure

__all__ = ["ContentRefused", "ParsedPayload", "check_payload", "parse_payload"]

MAX_ERRORS = 50


class ContentRefused(PolicyRefused):
    """Content that claims the structured format and does not fit it: 422 ``policy-refused`` with ``reason:
    content-schema`` and ``errors`` (each ``loc`` from ``content``). A refusal of a *verified* envelope, so
    it is audited at intake like the other policy refusals (the envelope's own schema errors are 400)."""


@dataclass(frozen=True)
class ParsedPayload:
    """A payload as officers see it: ``content`` when structured, else None and ``text`` as written."""

    content: Content | None
    text: str


def _content_error(exc: ValidationError) -> ContentRefused:
    errors = [
        {"loc": ["content", *(str(p) for p in e["loc"])], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)[:MAX_ERRORS]
    ]
    first = ".".join(errors[0]["loc"][1:]) if errors else "content"
    return ContentRefused(
        f"the payload claims the structured format but {first} does not fit it: {errors[0]['msg']}"
        if errors
        else "the payload claims the structured format but does not fit it",
        reason="content-schema",
        errors=errors,
    )


def parse_payload(plaintext: bytes) -> ParsedPayload:
    """The payload read as structured content if it claims the format, else as text.

    :raises ContentRefused: (422, ``reason: content-schema``, ``errors[].loc`` naming each field from
        ``content``) when it claims the format and does not fit.
    """
    text = plaintext.decode("utf-8", "replace")
    try:
        document = json.loads(plaintext)
    except (ValueError, UnicodeDecodeError):
        return ParsedPayload(None, text)
    if not claims_structure(document):
        return ParsedPayload(None, text)
    try:
        return ParsedPayload(Content.model_validate(document), text)
    except ValidationError as exc:
        raise _content_error(exc) from None


def check_payload(plaintext: bytes) -> None:
    """Intake's check: refuse content that claims the structured format and does not fit it."""
    parse_payload(plaintext)
