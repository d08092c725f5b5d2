"""The envelope: a signed routing header beside an encrypted payload.

::

    {"spoc": "1",
     "header":    {...RoutingHeader: who, to whom, what kind of crime, under which agreement, how sensitive},
     "payload":   {...JWEGeneral: RFC 7516 General JSON Serialization, one recipient per permitted reader},
     "signature": "<protected>..<signature>"}      # RFC 7515 compact JWS, detached payload, EdDSA

Why this shape:

* The header travels **in clear** because contact points must route, queue, apply policy and audit a message
  without reading it; only cleared officers and the addressed agency open the payload.
* The payload is a standard JWE so that any JOSE library (Java, .NET, JavaScript) can produce and open it;
  nothing here is home-made. Each recipient gets the content key wrapped to its own key
  (``ECDH-ES+A256KW`` over X25519, content ``A256GCM``), identified by ``kid`` (an RFC 7638 thumbprint).
* The signature covers :func:`signing_view`: the header plus the JWE's *content* members, canonicalised
  with RFC 8785. The ``recipients`` list is deliberately outside it, so a contact point can wrap the content
  key to one more reader (the competent agency it routes to) without breaking the originator's signature;
  the content and every routing decision stay covered. The ``unprotected`` JWE header is outside it too:
  RFC 7516 leaves it unauthenticated by definition.

These models only check *form* (lists, patterns, sizes, the rules that tie header fields together). Whether
a signature verifies, a ``kid`` is known, an agreement exists or an agency is accredited is for ``broker``.
All models are frozen and forbid unknown members: an envelope is evidence, and a field no one validated has
no place in it.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    field_validator,
    model_validator,
)

from schemas.codelists import (
    Category,
    Classification,
    CountryCode,
    HandlingCode,
    InformationAccuracy,
    MessageType,
    SourceReliability,
    UrgencyReason,
    entries,
)
from schemas.primitives import AgencyId, Base64Url, DetachedJWS, Timestamp, VisibleText, WireUUID

__all__ = [
    "FORMAT_VERSION",
    "MAX_CIPHERTEXT_CHARS",
    "MAX_RECIPIENTS",
    "Envelope",
    "Evaluation",
    "JWEGeneral",
    "JWERecipient",
    "Priority",
    "RoutingHeader",
    "signing_view",
]

FORMAT_VERSION: Final = "1"
"""The value of ``Envelope.spoc``; bumped only for a change an old reader would misread."""

MAX_CIPHERTEXT_CHARS: Final = 8 * 1024 * 1024
"""8 MiB of base64url (about 6 MiB of content): room for documents and photographs, bounded work."""

MAX_RECIPIENTS: Final = 16
"""Both contact points, the destination agency and a few more; bounds the work per message."""

_MAX_HEADER_CHARS: Final = 16 * 1024  # protected header, encrypted key: small JSON / a wrapped 256-bit key
_MAX_SMALL_B64: Final = 1024  # iv (96 bits) and tag (128 bits), with ample room for other algorithms

_STRICT = ConfigDict(extra="forbid", frozen=True)

LegalBasis = Annotated[
    VisibleText,
    StringConstraints(
        min_length=1,
        max_length=200,
        pattern=r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$",
    ),
]
"""Reference of the agreement or legal instrument relied on (``AL-RS Police Cooperation Agreement, Art. 5``).

One line, no control characters, no surrounding blanks: it is shown to officers and written to the audit
log, and a trailing blank would make two references that look alike compare unequal. The pattern uses only
syntax that Rust (pydantic), Python and ECMAScript regular expressions read alike.
"""


class Evaluation(BaseModel):
    """The EU "4x4" evaluation of the information: how reliable the source, how accurate the information."""

    model_config = _STRICT

    source_reliability: SourceReliability
    information_accuracy: InformationAccuracy


class Priority(BaseModel):
    """Urgency of a request, which sets its deadline (Directive (EU) 2023/977 Art. 5).

    Urgent requests get 8 hours when the information is directly accessible to the receiving side and 3 days
    when it is not; all others 7 days. The Directive lets a request be urgent only for one of the reasons
    of Art. 4(4) and expects the reasons to be stated, hence: ``urgent`` needs ``urgency_reason`` *and* a
    non-blank ``urgency_explanation``; ``normal`` carries neither, so a dropped "urgent" cannot leave a
    stale reason behind that a reader might take for a claim of urgency.

    ``information_access`` defaults to ``indirect`` (the longer deadline) because the sender usually cannot
    know how the receiving country stores the information. Integrators should still send it explicitly:
    the model fills the default in, so a header that omits it differs from the validated header that
    :func:`signing_view` produces. The exported JSON Schema therefore lists it as required.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra=lambda schema: _require(schema, "information_access"),
    )

    level: Literal["normal", "urgent"]
    urgency_reason: UrgencyReason | None = None
    urgency_explanation: Annotated[VisibleText, StringConstraints(max_length=2000)] | None = None
    information_access: Literal["direct", "indirect"] = "indirect"

    @model_validator(mode="after")
    def _reason_matches_level(self) -> Self:
        if self.level == "urgent":
            if self.urgency_reason is None:
                raise ValueError(
                    "an urgent request needs an urgency_reason (Directive (EU) 2023/977 Art. 4(4))"
                )
            if self.urgency_explanation is None or not self.urgency_explanation.strip():
                raise ValueError("an urgent request needs a urgency_explanation stating why")
        elif self.urgency_reason is not None or self.urgency_explanation is not None:
            raise ValueError("a normal-priority message carries no urgency_reason or urgency_explanation")
        return self


def _require(schema: dict[str, JsonValue], name: str) -> None:
    required = schema.setdefault("required", [])
    if isinstance(required, list) and name not in required:
        required.append(name)


def _in_reply_to_rules() -> dict[str, str]:
    return {str(item["code"]): str(item["in_reply_to"]) for item in entries("message_types")}


_IN_REPLY_TO: Final = _in_reply_to_rules()


class RoutingHeader(BaseModel):
    """What the exchange needs to route, check and audit a message without opening it.

    Consistency rules enforced here (anything that needs the directory or the agreements is ``broker``'s):

    * ``origin_country`` and ``destination_country`` differ: the exchange is for cross-border requests.
    * ``sender_agency`` belongs to ``origin_country`` and ``destination_agency`` (when the sender knows it)
      to ``destination_country``: an agency id starts with its country code, so a header cannot claim to
      come from one country while naming another's agency.
    * ``in_reply_to`` is required for answers (response, clarification, acknowledgement), forbidden on a
      request (a request opens a question; follow-ups reuse ``conversation_id``), optional on a notification.
      The rule per type is data: the ``in_reply_to`` member of ``codelists/message_types.json``.
    * ``handling_codes``: at least one, no repeats (a repeat is either a mistake or an attempt to make two
      spellings of one header). H0 alone is the usual minimum; any combination is allowed.
    * ``created_at`` is timezone-aware: deadlines and audit times are compared across time zones.

    Lists are tuples so that a frozen header is really immutable once validated.
    """

    model_config = _STRICT

    message_id: WireUUID
    conversation_id: WireUUID
    in_reply_to: WireUUID | None = None
    type: MessageType
    sender_agency: AgencyId
    origin_country: CountryCode
    destination_country: CountryCode
    destination_agency: AgencyId | None = None
    category: Category
    legal_basis: LegalBasis
    classification: Classification
    handling_codes: tuple[HandlingCode, ...] = Field(min_length=1, json_schema_extra={"uniqueItems": True})
    evaluation: Evaluation
    priority: Priority
    created_at: Timestamp

    @field_validator("handling_codes")
    @classmethod
    def _unique_handling_codes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("handling_codes must not repeat a code")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.origin_country == self.destination_country:
            raise ValueError(
                "origin_country and destination_country must differ (the exchange is cross-border)"
            )
        if not self.sender_agency.startswith(self.origin_country + "-"):
            raise ValueError(f"sender_agency {self.sender_agency} is not an agency of {self.origin_country}")
        if self.destination_agency is not None and not self.destination_agency.startswith(
            self.destination_country + "-"
        ):
            raise ValueError(
                f"destination_agency {self.destination_agency} is not an agency of {self.destination_country}"
            )
        rule = _IN_REPLY_TO[self.type]
        if rule == "required" and self.in_reply_to is None:
            raise ValueError(f"a {self.type} must name the message it answers in in_reply_to")
        if rule == "forbidden" and self.in_reply_to is not None:
            raise ValueError(f"a {self.type} opens an exchange and has no in_reply_to")
        if self.in_reply_to is not None and self.in_reply_to == self.message_id:
            raise ValueError("a message cannot reply to itself")
        return self


class JWERecipient(BaseModel):
    """One reader of the payload: its per-recipient header and the content key wrapped to it.

    ``header`` must carry ``alg`` (the key-management algorithm) and ``kid`` (the reader's key id): readers
    find their entry by ``kid``, and the broker checks that the contact points on the route are among them.
    Other members (``epk`` for ECDH-ES) pass through untouched for the JOSE library to use.
    """

    model_config = _STRICT

    header: dict[str, JsonValue]
    encrypted_key: Base64Url = Field(max_length=_MAX_HEADER_CHARS)

    @field_validator("header")
    @classmethod
    def _names_alg_and_kid(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        for name in ("alg", "kid"):
            member = value.get(name)
            if not isinstance(member, str) or not member:
                raise ValueError(f"a recipient header needs a non-empty string {name!r}")
        return value


class JWEGeneral(BaseModel):
    """A JWE in the General JSON Serialization (RFC 7516 §7.2.1), as JOSE libraries emit it.

    ``protected`` is required: this profile puts ``enc`` there so the content algorithm is authenticated
    as additional data. RFC 7516 requires the names in the protected, shared unprotected and per-recipient
    headers to be disjoint; the part of that rule visible without decoding (``unprotected`` against each
    recipient's ``header``) is checked here.
    """

    model_config = _STRICT

    protected: Base64Url = Field(min_length=1, max_length=_MAX_HEADER_CHARS)
    unprotected: dict[str, JsonValue] | None = None
    iv: Base64Url = Field(min_length=1, max_length=_MAX_SMALL_B64)
    aad: Base64Url | None = Field(default=None, max_length=_MAX_HEADER_CHARS)
    ciphertext: Base64Url = Field(min_length=1, max_length=MAX_CIPHERTEXT_CHARS)
    tag: Base64Url = Field(min_length=1, max_length=_MAX_SMALL_B64)
    recipients: tuple[JWERecipient, ...] = Field(min_length=1, max_length=MAX_RECIPIENTS)

    @model_validator(mode="after")
    def _disjoint_headers(self) -> Self:
        if self.unprotected:
            for recipient in self.recipients:
                clash = sorted(self.unprotected.keys() & recipient.header.keys())
                if clash:
                    raise ValueError(
                        f"header names {clash} appear in both unprotected and a recipient header"
                    )
        return self


def signing_view(header: RoutingHeader, payload: JWEGeneral) -> dict[str, JsonValue]:
    """The value an originator signs: ``{"header": …, "payload": {protected, iv, ciphertext, tag[, aad]}}``.

    Canonicalise it with RFC 8785 and sign the result as a detached JWS. A function and not only a method
    because the originator needs it *before* the envelope (which requires the signature) can exist.

    Deterministic: the header is dumped in JSON mode with ``None`` members left out (so "absent" and
    "null" sign alike), in the one spelling pydantic writes (lower-case UUIDs, ``Z`` for UTC).
    ``recipients`` and ``unprotected`` are left out on purpose (see the module docstring).

    Use it to *produce* a signature over models you built, and send the envelope as
    ``model_dump(mode="json", exclude_none=True)`` so the header on the wire is the header you signed.
    Do not use it to verify a *received* envelope: a producer in another language signs the header as it
    wrote it (``+00:00``, upper-case hex, an explicit ``"in_reply_to": null``), which a re-dump would
    spell differently. Verify the received JSON members instead (as ``broker`` does).
    """
    content: dict[str, JsonValue] = {
        "protected": payload.protected,
        "iv": payload.iv,
        "ciphertext": payload.ciphertext,
        "tag": payload.tag,
    }
    if payload.aad is not None:
        content["aad"] = payload.aad
    return {"header": header.model_dump(mode="json", exclude_none=True), "payload": content}


class Envelope(BaseModel):
    """A complete message as posted, queued, delivered and archived.

    ``signature`` is the originator's compact JWS over :func:`signing_view` with the payload detached
    (``<protected>..<signature>``, RFC 7515 Appendix F): the signed content is recomputed from the
    envelope itself, so it is never carried twice. Contact points do not re-sign the envelope; their
    decisions are countersignatures kept in the custody chain (see ``schemas.api.CustodyStep``).

    Send it as ``model_dump(mode="json", exclude_none=True)``: then the header on the wire is exactly the
    header in the signing view.
    """

    model_config = _STRICT

    spoc: Literal["1"] = FORMAT_VERSION
    header: RoutingHeader
    payload: JWEGeneral
    signature: DetachedJWS

    def signing_view(self) -> dict[str, JsonValue]:
        """The value the signature covers; see the module-level :func:`signing_view`."""
        return signing_view(self.header, self.payload)
