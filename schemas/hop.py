"""The hop between nodes: what a node POSTs to a peer's ``/v1/hop/messages`` (docs/region.md, "The hop").

The envelope exactly as the agency signed it, the origin contact point's custody countersignatures in order,
and that contact point's countersigned statement vouching for the agency's key. The request itself is signed
with RFC 9421 under the sending node's transport key (label ``spoc-node``); the answer is a transport receipt.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator

from schemas.api import Reason
from schemas.codelists import CountryCode, DeadlineExtensionReason, RefusalGround
from schemas.envelope import Envelope
from schemas.primitives import AgencyId, CompactJWS, WireUUID

__all__ = [
    "EVENT_FIELDS",
    "EVENT_TYP",
    "MAX_HOP_BATCH",
    "ORIGIN_KINDS",
    "EventKind",
    "EventStatement",
    "HopBatchAnswer",
    "HopBatchItem",
    "HopBatchRequest",
    "HopEventRequest",
    "HopReceipt",
    "HopRequest",
]


class HopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    envelope: Envelope
    custody: list[CompactJWS] = Field(min_length=1, max_length=64)
    """The origin contact point's custody countersignatures, seq 1, 2, …; the last is its approval."""
    sender_key: CompactJWS
    """The origin contact point's ``sender-key`` statement: the agency's key, vouched for."""


class HopReceipt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    receipt: CompactJWS
    """``spoc-transport-receipt+jws`` by the receiving node's transport key: message_id, digest, from_node,
    to_node, received_at."""


MAX_HOP_BATCH: Final = 100
"""Hops in one ``POST /v1/hop/messages/batches``: what a sending node puts in one request at most."""


class HopBatchRequest(BaseModel):
    """Many hops from one node in one signed request (``POST /v1/hop/messages/batches``): each is checked and
    answered on its own, exactly as if it had come alone."""

    model_config = ConfigDict(extra="forbid")

    hops: list[HopRequest] = Field(min_length=1, max_length=MAX_HOP_BATCH)


class HopBatchItem(BaseModel):
    """The fate of the hop at position ``index``: ``status`` 200 with its ``receipt``, or the status and the
    problem details (with its ``reason``) that hop would have got alone."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    status: int = Field(ge=100, le=599)
    receipt: CompactJWS | None = None
    problem: dict[str, JsonValue] | None = None


class HopBatchAnswer(BaseModel):
    """The answer to a batch of hops: one item per hop, in the order of the request's ``hops``."""

    model_config = ConfigDict(extra="forbid")

    results: list[HopBatchItem]


# --- events: what else crosses a border (docs/hop-events.md) ------------------------------------------------

EVENT_TYP: Final = "spoc-event+jws"
"""The ``typ`` of an event token: distinct from every other token of the exchange."""


class EventKind(StrEnum):
    """What happened to a message that crossed, said by the contact point that did it. Closed: a node refuses a
    kind it does not know (``malformed-event``) rather than guess what a newer peer meant."""

    # By the requested (destination) contact point, to the requester's node:
    ACCEPTED = "accepted"
    ROUTED = "routed"
    REFUSED = "refused"
    CLARIFICATION_REQUESTED = "clarification-requested"
    DEADLINE_EXTENDED = "deadline-extended"
    DISSEMINATION_REQUESTED = "dissemination-requested"
    # By the origin contact point (the requester, or the provider of H2 information), to the destination's node:
    SUPERSEDED = "superseded"
    DISSEMINATION_GRANTED = "dissemination-granted"
    DISSEMINATION_DENIED = "dissemination-denied"


ORIGIN_KINDS: Final = frozenset(
    {EventKind.SUPERSEDED, EventKind.DISSEMINATION_GRANTED, EventKind.DISSEMINATION_DENIED}
)
"""Kinds only the message's origin contact point makes; every other kind only its destination contact point."""


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AcceptedFields(_Fields):
    pass


class RoutedFields(_Fields):
    agency: AgencyId
    """The competent agency of the destination country the message was routed to."""


class RefusedFields(_Fields):
    refusal_ground: RefusalGround
    """A ground of the closed list of Directive (EU) 2023/977 Art. 6."""
    reason: Reason | None = None


class ClarificationRequestedFields(_Fields):
    reason: Annotated[Reason, StringConstraints(min_length=1)]
    """What the requested contact point asks the requester to clarify (Art. 6(3))."""


class DeadlineExtendedFields(_Fields):
    extension_reason: DeadlineExtensionReason
    """A code of the closed list of Art. 5(2) (a judicial authorisation is awaited)."""
    seconds: Annotated[int, Field(ge=3600, le=30 * 24 * 3600)]
    """How much longer the deadline is: whole hours, one hour to 30 days (as an officer may extend it)."""
    reason: Reason | None = None


class SupersededFields(_Fields):
    by: WireUUID
    """The amended message (a new message of the same conversation) that replaces this one."""


class DisseminationRequestedFields(_Fields):
    requested_by: AgencyId
    recipient_country: CountryCode
    recipient_agency: AgencyId | None = None
    purpose: Annotated[Reason, StringConstraints(min_length=1)]


class DisseminationDecidedFields(_Fields):
    request: WireUUID
    """The ``event_id`` of the ``dissemination-requested`` event that carried the request."""
    reason: Reason | None = None


EVENT_FIELDS: Final[dict[EventKind, type[_Fields]]] = {
    EventKind.ACCEPTED: AcceptedFields,
    EventKind.ROUTED: RoutedFields,
    EventKind.REFUSED: RefusedFields,
    EventKind.CLARIFICATION_REQUESTED: ClarificationRequestedFields,
    EventKind.DEADLINE_EXTENDED: DeadlineExtendedFields,
    EventKind.DISSEMINATION_REQUESTED: DisseminationRequestedFields,
    EventKind.SUPERSEDED: SupersededFields,
    EventKind.DISSEMINATION_GRANTED: DisseminationDecidedFields,
    EventKind.DISSEMINATION_DENIED: DisseminationDecidedFields,
}


DIGEST_PATTERN: Final = r"^sha-256:[0-9a-f]{64}$"
AT_PATTERN: Final = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"


class EventStatement(BaseModel):
    """The signed statement of an event (the payload of a ``spoc-event+jws``, RFC 8785 canonical JSON).

    Every member is required and no other is allowed, so two implementations cannot read one event
    differently; ``fields`` is checked against the kind's own closed model (:data:`EVENT_FIELDS`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: WireUUID
    """Chosen by the acting node; the receiving node stores an event once per id."""
    kind: EventKind
    message_id: WireUUID
    """The message the event is about: one that crossed between the two nodes before."""
    digest: Annotated[str, StringConstraints(pattern=DIGEST_PATTERN)]
    """The message's digest (the envelope's signing input), as every custody step names it."""
    contact_point: AgencyId
    """The acting contact point, whose signing key (from the regional directory) signed the event."""
    actor: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    """Who at the acting node: the officer's username, or the agency's id for what an agency asked."""
    at: Annotated[str, StringConstraints(pattern=AT_PATTERN)]
    """When, RFC 3339 UTC with microseconds and ``Z``."""
    fields: dict[str, Any]

    @model_validator(mode="after")
    def _fields_of_the_kind(self) -> Self:
        EVENT_FIELDS[self.kind].model_validate(self.fields)
        return self


class HopEventRequest(BaseModel):
    """What a node POSTs to a peer's ``/v1/hop/events``: one signed event."""

    model_config = ConfigDict(extra="forbid")

    event: CompactJWS
    """``spoc-event+jws`` by the acting contact point's signing key over the canonical :class:`EventStatement`."""
