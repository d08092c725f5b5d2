"""Bodies of the HTTP API: what agency systems, officers' tools and auditors send and receive.

Kept beside the envelope, not in ``broker``, because integrators code against them too and the JSON Schema
export publishes them. Like the envelope models they are frozen and forbid unknown members: a misspelt
member (``refusal_reason`` for ``refusal_ground``) is an error the caller sees, not a value silently lost.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator

from schemas.codelists import (
    Category,
    Classification,
    CountryCode,
    DeadlineExtensionReason,
    HandlingCode,
    MessageType,
    RefusalGround,
)
from schemas.envelope import Envelope, Evaluation
from schemas.primitives import AgencyId, CompactJWS, Timestamp, VisibleText, WireUUID

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "AckRequest",
    "BatchItemResult",
    "BatchReceipt",
    "CustodyStep",
    "Decision",
    "DecisionAction",
    "DecisionBatch",
    "DecisionBatchAnswer",
    "DecisionOutcome",
    "DisseminationRequest",
    "DisseminationRequestBody",
    "InboxItem",
    "LoginRequest",
    "LoginResult",
    "MessageDecision",
    "MessageStatus",
    "OwnInitiativeProvision",
    "Problem",
    "Receipt",
    "SubmitReceipt",
]

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
"""The media type of a :class:`Problem` body (RFC 9457 §3)."""

_STRICT = ConfigDict(extra="forbid", frozen=True)

Reason = Annotated[VisibleText, StringConstraints(max_length=2000)]
State = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
"""A message state; the state machine and its names belong to ``broker``, the wire only fixes the form."""


class Problem(BaseModel):
    """An error body, RFC 9457 problem details (served as :data:`PROBLEM_MEDIA_TYPE`).

    RFC 9457 allows any extension member; this API allows exactly one, ``errors``, so that every client
    finds field-level details (e.g. pydantic's ``loc``/``msg`` pairs for a 422) in the same place.
    """

    model_config = _STRICT

    type: str = "about:blank"
    title: str
    status: int = Field(ge=100, le=599)
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, JsonValue]] | None = None


class SubmitReceipt(BaseModel):
    """Answer to a submitted envelope: it is stored and queued; ``deadline_at`` applies to requests only."""

    model_config = _STRICT

    message_id: WireUUID
    state: State
    deadline_at: Timestamp | None = None
    received_at: Timestamp


MAX_BATCH: Final = 500
"""The most envelopes one batch may carry (a deployment may set a lower limit, never a higher one)."""


class BatchItemResult(BaseModel):
    """The fate of one envelope of a batch, at its position ``index``: ``status`` 202 with its ``receipt``,
    or the status and problem details it would have got alone (422 for a policy refusal, 409 for a
    message id already submitted...)."""

    model_config = _STRICT

    index: int = Field(ge=0)
    status: int = Field(ge=100, le=599)
    receipt: SubmitReceipt | None = None
    problem: dict[str, JsonValue] | None = None


class BatchReceipt(BaseModel):
    """Answer to a batch: every envelope is accepted or refused on its own, so one bad envelope never holds
    back the others; ``results`` are in the order of the request's ``envelopes``."""

    model_config = _STRICT

    accepted: int = Field(ge=0)
    refused: int = Field(ge=0)
    results: list[BatchItemResult]


class Receipt(BaseModel):
    """A receiving agency's signed acknowledgement of receipt (non-repudiation of receipt): the message
    reached ``agency``, which opened it and signed for it. Format in ``docs/receipts.md``.

    ``receipt`` is a compact JWS (``typ`` ``spoc-receipt+jws``) by the receiving agency over the RFC 8785
    canonical statement ``{"type": "receipt", "message_id", "digest", "agency", "received_at"}``; verify it
    with the agency's key (``GET /v1/directory/parties/{agency}/jwks``) before relying on it.
    ``received_at`` and ``digest`` repeat the statement's values (checked by the broker when it took the
    receipt: signed by the agency's current key, this message, its digest, ``received_at`` near the time of
    the acknowledgement); ``acknowledged_at`` is when the broker took it.
    """

    model_config = _STRICT

    agency: AgencyId
    acknowledged_at: Timestamp
    received_at: Timestamp | None = None
    digest: str | None = None
    receipt: CompactJWS


class AckRequest(BaseModel):
    """The body of an acknowledgement: the agency's signed receipt."""

    model_config = _STRICT

    receipt: CompactJWS


class MessageStatus(BaseModel):
    """Metadata of a message as its sender or an officer may see it: never content, never the envelope."""

    model_config = _STRICT

    message_id: WireUUID
    conversation_id: WireUUID
    type: MessageType
    state: State
    origin_country: CountryCode
    destination_country: CountryCode
    destination_agency: AgencyId | None = None
    classification: Classification
    category: Category
    priority_level: Literal["normal", "urgent"]
    deadline_at: Timestamp | None = None
    updated_at: Timestamp
    receipts: tuple[Receipt, ...] = ()
    deadline_paused: bool = False
    """True while the deadline clock is stopped (a clarification is pending, Directive (EU) 2023/977 Art. 6(3))."""
    clarification_request: Reason | None = None
    """What a contact point asked the sender to clarify, when the message was returned (``returned`` or
    ``clarification_requested``): amend the message and resubmit it to ``/v1/messages/{id}/resubmissions``."""
    supersedes: WireUUID | None = None
    """The returned message this one amends (resubmission); the history of both is kept."""
    superseded_by: WireUUID | None = None
    """The amended message that replaced this one."""
    refusal_ground: RefusalGround | None = None
    """When the requested contact point refused the request (``refused``): its ground, from the closed list of
    Directive (EU) 2023/977 Art. 6."""
    content_deleted: bool = False
    """True once the content of the message was deleted under the retention rules: the exchange keeps only its
    routing metadata (docs/retention.md)."""
    content_deleted_at: Timestamp | None = None
    """When its content was deleted."""


class CustodyStep(BaseModel):
    """One link of a message's chain of custody: who did what, when, and their signature over it.

    ``party`` is the agency or contact point (``AL-ASP``, ``RS-SPOC``); ``decision`` names the step
    (``submitted``, ``approved``, ``routed`` …); ``signature`` is that party's compact JWS (for the first
    step, the originator's detached signature of the envelope). Verifying the chain is ``broker``'s job.
    """

    model_config = _STRICT

    party: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    decision: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
    at: Timestamp
    signature: CompactJWS


class InboxItem(BaseModel):
    """A message waiting in an agency's pull inbox, with the custody chain that brought it there."""

    model_config = _STRICT

    message_id: WireUUID
    delivered_at: Timestamp
    envelope: Envelope
    custody: list[CustodyStep]


DecisionAction = Literal[
    "approve", "reject", "return", "accept", "route", "refuse", "extend", "assign", "grant", "deny"
]
"""Outbound review: approve, reject, return (for clarification). Inbound review: accept, route, refuse, return
(a request for clarification, which stops the deadline clock). Both: extend (the deadline), assign (to an
officer). On a message carrying H2: grant or deny a request for onward dissemination."""

ExtendHours = Annotated[int, Field(ge=1, le=30 * 24)]
"""An extension of a deadline, in hours: at least one hour, at most 30 days."""


class Decision(BaseModel):
    """A contact-point officer's decision on a queued message.

    Each action carries what it needs and nothing else, so the audit entry and the countersigned custody
    step cannot record a ground that played no part in the decision:

    * ``reject`` and ``return`` need a non-blank ``reason``: the sender must learn what to fix.
    * ``refuse`` needs a ``refusal_ground`` from the closed list of Directive (EU) 2023/977 Art. 6
      (``reason`` may add detail).
    * ``route`` needs ``route_to_agency``, the competent agency of the receiving country.
    * ``extend`` needs ``extend_hours`` and an ``extension_reason`` from the closed list of Directive (EU)
      2023/977 Art. 5(2) (a judicial authorisation is awaited); ``reason`` may add detail. Extensions are
      recorded, audited and notified to the requesting contact point.
    * ``assign`` needs ``assign_to``, the username of an officer of the same contact point.
    * ``grant`` and ``deny`` need ``dissemination_request`` (the id of an agency's request for onward
      dissemination of H2 information); ``deny`` also needs a ``reason``.
    * ``refusal_ground`` is allowed only with ``refuse``, ``route_to_agency`` only with ``route``, and
      likewise ``extend_hours``, ``extension_reason``, ``assign_to`` and ``dissemination_request`` only
      with their actions.

    Which actions fit which queue (outbound or inbound) is ``contact_points``' rule, not the wire's.
    """

    model_config = _STRICT

    action: DecisionAction
    reason: Reason | None = None
    refusal_ground: RefusalGround | None = None
    route_to_agency: AgencyId | None = None
    extend_hours: ExtendHours | None = None
    extension_reason: DeadlineExtensionReason | None = None
    assign_to: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    dissemination_request: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _carries_what_the_action_needs(self) -> Self:
        if self.action in ("reject", "return", "deny") and (self.reason is None or not self.reason.strip()):
            raise ValueError(f"'{self.action}' needs a reason")
        if self.action == "extend" and self.extend_hours is None:
            raise ValueError("'extend' needs extend_hours")
        if self.action == "extend" and self.extension_reason is None:
            raise ValueError(
                "'extend' needs an extension_reason (Directive (EU) 2023/977 Art. 5(2): "
                "only while a judicial authorisation is awaited)"
            )
        if self.action != "extend" and self.extension_reason is not None:
            raise ValueError(f"extension_reason belongs to 'extend', not '{self.action}'")
        if self.action == "assign" and self.assign_to is None:
            raise ValueError("'assign' needs assign_to")
        if self.action in ("grant", "deny") and self.dissemination_request is None:
            raise ValueError(f"'{self.action}' needs dissemination_request")
        if self.action != "extend" and self.extend_hours is not None:
            raise ValueError(f"extend_hours belongs to 'extend', not '{self.action}'")
        if self.action != "assign" and self.assign_to is not None:
            raise ValueError(f"assign_to belongs to 'assign', not '{self.action}'")
        if self.action not in ("grant", "deny") and self.dissemination_request is not None:
            raise ValueError(f"dissemination_request belongs to 'grant' or 'deny', not '{self.action}'")
        if self.action == "refuse" and self.refusal_ground is None:
            raise ValueError("'refuse' needs a refusal_ground (Directive (EU) 2023/977 Art. 6)")
        if self.action == "route" and self.route_to_agency is None:
            raise ValueError("'route' needs route_to_agency")
        if self.action != "refuse" and self.refusal_ground is not None:
            raise ValueError(f"refusal_ground belongs to 'refuse', not '{self.action}'")
        if self.action != "route" and self.route_to_agency is not None:
            raise ValueError(f"route_to_agency belongs to 'route', not '{self.action}'")
        return self


MAX_DECISIONS: Final = 100
"""The most decisions one ``POST /v1/cp/decisions`` may carry."""


class MessageDecision(BaseModel):
    """One decision of a :class:`DecisionBatch`: the message it is about, and the decision."""

    model_config = _STRICT

    message_id: WireUUID
    decision: Decision


class DecisionBatch(BaseModel):
    """Several decisions taken at once, e.g. approving a page of routine requests. Each is taken exactly as
    alone (same rules: clearance, four eyes, state), and each succeeds or fails on its own."""

    model_config = _STRICT

    decisions: Annotated[list[MessageDecision], Field(min_length=1, max_length=MAX_DECISIONS)]


class DecisionOutcome(BaseModel):
    """The fate of one decision of a batch, at its position ``index``: ``status`` 200 and the message's
    new ``state``, or the status and problem details it would have got alone."""

    model_config = _STRICT

    index: int = Field(ge=0)
    message_id: WireUUID
    status: int = Field(ge=100, le=599)
    state: State | None = None
    problem: dict[str, JsonValue] | None = None


class DecisionBatchAnswer(BaseModel):
    model_config = _STRICT

    decided: int = Field(ge=0)
    failed: int = Field(ge=0)
    results: list[DecisionOutcome]


class LoginRequest(BaseModel):
    """Officer or auditor credentials.

    ``password`` is a plain ``str`` so the accounts service can hash-check it directly, but is kept out of
    ``repr`` so it does not reach logs or tracebacks; the length cap bounds the work of the password hash.
    """

    model_config = _STRICT

    username: Annotated[str, StringConstraints(min_length=1, max_length=150)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(repr=False)
    otp: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")] | None = Field(default=None, repr=False)
    """The current six-digit TOTP code (RFC 6238), for accounts with a second factor."""


class LoginResult(BaseModel):
    """A bearer ``token`` until ``expires_at``, and the ``csrf_token`` to echo on state-changing calls."""

    model_config = _STRICT

    token: str = Field(repr=False)
    expires_at: Timestamp
    csrf_token: str = Field(repr=False)


class DisseminationRequestBody(BaseModel):
    """An agency asks the provider of H2 information for permission to pass it on (onward dissemination).

    ``recipient_country`` (and, if known, ``recipient_agency``) name who would receive it; ``purpose`` says
    why. The provider's contact point grants or denies; until it grants, the exchange refuses to forward a
    message that carries the information onward (a message whose ``in_reply_to`` names the H2 message).
    """

    model_config = _STRICT

    recipient_country: CountryCode
    recipient_agency: AgencyId | None = None
    purpose: Annotated[VisibleText, StringConstraints(min_length=1, max_length=2000, pattern=r"\S")]

    @model_validator(mode="after")
    def _agency_of_the_country(self) -> Self:
        if self.recipient_agency is not None and not self.recipient_agency.startswith(
            self.recipient_country + "-"
        ):
            raise ValueError(f"{self.recipient_agency} is not an agency of {self.recipient_country}")
        return self


class DisseminationRequest(BaseModel):
    """A request for onward dissemination and the provider's answer (``pending``, ``granted``, ``denied``)."""

    model_config = _STRICT

    id: int
    message_id: WireUUID
    requested_by: AgencyId
    recipient_country: CountryCode
    recipient_agency: AgencyId | None = None
    purpose: Reason
    state: Literal["pending", "granted", "denied"]
    requested_at: Timestamp
    decided_at: Timestamp | None = None
    decision_reason: Reason | None = None


class OwnInitiativeProvision(BaseModel):
    """An officer's own-initiative provision of information (Directive (EU) 2023/977 Art. 7).

    The contact point itself is the sender; the broker seals ``information`` (and H3 ``conditions``, which
    add the H3 code) to the readers on the route and signs the envelope with the contact point's key. It
    then goes through outbound review like any message, where another officer approves it.
    """

    model_config = _STRICT

    destination_country: CountryCode
    destination_agency: AgencyId | None = None
    category: Category
    classification: Classification = "RESTRICTED"
    handling_codes: tuple[HandlingCode, ...] = ("H0",)
    information: Annotated[str, StringConstraints(min_length=1, max_length=100_000, pattern=r"\S")]
    conditions: Annotated[VisibleText, StringConstraints(max_length=2000)] | None = None
    evaluation: Evaluation = Evaluation(source_reliability="B", information_accuracy="2")
