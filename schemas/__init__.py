"""spoc's wire format: the signed and encrypted envelope, the HTTP API bodies, and the code lists.

Depends on nothing but the standard library and pydantic, so that integrators (and the other packages of
spoc) share one definition of what may travel. Modules:

* :mod:`schemas.codelists` — code lists as data (``codelists/*.json``) and the pydantic types checking them;
* :mod:`schemas.primitives` — ids, base64url, JWS and timestamp types with one spelling each;
* :mod:`schemas.envelope` — routing header, JWE payload, envelope, and the :func:`signing_view` it signs;
* :mod:`schemas.content` — structured content of a payload (persons, vehicles, phones, ...), after UMF;
* :mod:`schemas.api` — request and response bodies of the HTTP API;
* :mod:`schemas.export` — ``python -m schemas export DIR`` for integrators.
"""

from schemas.api import (
    PROBLEM_MEDIA_TYPE,
    CustodyStep,
    Decision,
    DecisionAction,
    InboxItem,
    LoginRequest,
    LoginResult,
    MessageStatus,
    Problem,
    SubmitReceipt,
)
from schemas.codelists import (
    NAMES,
    AgencyKind,
    Category,
    Classification,
    CodeListName,
    CountryCode,
    DeadlineExtensionReason,
    HandlingCode,
    InformationAccuracy,
    MessageType,
    RefusalGround,
    SourceReliability,
    UrgencyReason,
    classification_rank,
    codes,
    entries,
    label,
)
from schemas.content import CONTENT_FORMAT, Content
from schemas.envelope import (
    FORMAT_VERSION,
    MAX_CIPHERTEXT_CHARS,
    MAX_RECIPIENTS,
    Envelope,
    Evaluation,
    JWEGeneral,
    JWERecipient,
    Priority,
    RoutingHeader,
    signing_view,
)
from schemas.primitives import AgencyId, Base64Url, CompactJWS, DetachedJWS, Timestamp, WireUUID

__all__ = [
    "CONTENT_FORMAT",
    "FORMAT_VERSION",
    "MAX_CIPHERTEXT_CHARS",
    "MAX_RECIPIENTS",
    "NAMES",
    "PROBLEM_MEDIA_TYPE",
    "AgencyId",
    "AgencyKind",
    "Base64Url",
    "Category",
    "Classification",
    "CodeListName",
    "CompactJWS",
    "Content",
    "CountryCode",
    "CustodyStep",
    "DeadlineExtensionReason",
    "Decision",
    "DecisionAction",
    "DetachedJWS",
    "Envelope",
    "Evaluation",
    "HandlingCode",
    "InboxItem",
    "InformationAccuracy",
    "JWEGeneral",
    "JWERecipient",
    "LoginRequest",
    "LoginResult",
    "MessageStatus",
    "MessageType",
    "Priority",
    "Problem",
    "RefusalGround",
    "RoutingHeader",
    "SourceReliability",
    "SubmitReceipt",
    "Timestamp",
    "UrgencyReason",
    "WireUUID",
    "classification_rank",
    "codes",
    "entries",
    "label",
    "signing_view",
]
