"""The code lists of the wire format, kept as data in ``schemas/codelists/*.json``.

Why data and not ``Enum`` classes: integrators in other languages need the same lists, the JSON Schema export
copies these files verbatim, and a label or a legal reference can be corrected without touching code. Each
file is a JSON array of objects with at least ``code`` (the value that goes on the wire) and ``label`` (what a
person reads); some carry more:

=========================  ==========================================================================
``countries``              ``eu_member``; ``note`` for XK (the ``*`` designation footnote). XK is a
                           user-assigned ISO 3166-1 code, used for Kosovo by the EU and its agencies.
``categories``             ``offences``: the entries of Art. 2(2) of Framework Decision 2002/584/JHA
                           that the category covers (the list Directive (EU) 2023/977 refers to).
``classifications``        ``rank``: the total order UNCLASSIFIED < RESTRICTED < CONFIDENTIAL < SECRET.
``message_types``          ``in_reply_to``: ``required``, ``forbidden`` or ``optional`` for that type.
``urgency_reasons``,       ``article``: the provision of Directive (EU) 2023/977 the code stands for
``refusal_grounds``,       (Art. 4(4), the closed list of Art. 6, and Art. 5(2): the only ground on
``deadline_extension_``    which the requested contact point may deviate from the time limits of
``reasons``                Art. 5(1), which Art. 18(d) statistics count).
=========================  ==========================================================================

Files are read once per process (:func:`functools.cache`) through :mod:`importlib.resources`, so they work
from a wheel or a zip as well as from a checkout, and they are checked on first load: a broken list fails
loudly at import of the first model that uses it rather than admitting or refusing values at random.

The ``Annotated`` aliases at the bottom are plain ``str`` to the type checker and at run time; pydantic
checks membership after its own ``str`` validation and documents the list as a JSON Schema ``enum``. No
value is ever rewritten (no case folding, no stripping): header fields are signed, and a validator that
"fixes" input would make the signed bytes and the validated model disagree.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from importlib import resources
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import AfterValidator, WithJsonSchema

__all__ = [
    "NAMES",
    "AgencyKind",
    "Category",
    "Classification",
    "CodeListName",
    "CountryCode",
    "DeadlineExtensionReason",
    "HandlingCode",
    "InformationAccuracy",
    "MessageType",
    "RefusalGround",
    "SourceReliability",
    "UrgencyReason",
    "classification_rank",
    "codes",
    "entries",
    "label",
]

CodeListName = Literal[
    "countries",
    "agency_kinds",
    "categories",
    "classifications",
    "handling_codes",
    "source_reliability",
    "information_accuracy",
    "urgency_reasons",
    "refusal_grounds",
    "message_types",
    "deadline_extension_reasons",
]
"""The name of a code list: its file is ``schemas/codelists/<name>.json``."""

NAMES: Final[tuple[CodeListName, ...]] = get_args(CodeListName)
"""Every code list, in a fixed order (the export writes them in this order)."""


@functools.cache
def _load(name: str) -> tuple[dict[str, Any], ...]:
    """Read and check one list. Private because the cached dicts must not escape to be mutated."""
    if name not in NAMES:
        raise ValueError(f"unknown code list {name!r}; known lists: {', '.join(NAMES)}")
    text = (resources.files("schemas") / "codelists" / f"{name}.json").read_text("utf-8")
    data = json.loads(text)
    if not isinstance(data, list) or not data:
        raise ValueError(f"code list {name}: expected a non-empty JSON array")
    seen: set[str] = set()
    for item in data:
        if not isinstance(item, dict):
            raise ValueError(f"code list {name}: every entry must be an object, got {item!r}")
        code, text_label = item.get("code"), item.get("label")
        if not isinstance(code, str) or not code or not isinstance(text_label, str) or not text_label:
            raise ValueError(
                f"code list {name}: every entry needs a non-empty string code and label: {item!r}"
            )
        if code in seen:
            raise ValueError(f"code list {name}: duplicate code {code!r}")
        seen.add(code)
    if name == "classifications":
        ranks = [item.get("rank") for item in data]
        if not all(type(r) is int for r in ranks) or len(set(ranks)) != len(ranks):
            raise ValueError("code list classifications: every entry needs a distinct integer rank")
    return tuple(data)


def entries(name: CodeListName) -> tuple[dict[str, Any], ...]:
    """The entries of code list ``name`` in file order, as fresh copies the caller may change.

    :raises ValueError: ``name`` is not one of :data:`NAMES`.
    """
    return tuple(dict(item) for item in _load(name))


def codes(name: CodeListName) -> frozenset[str]:
    """The set of valid codes of list ``name``.

    :raises ValueError: ``name`` is not one of :data:`NAMES`.
    """
    return _codes(name)


@functools.cache
def _codes(name: str) -> frozenset[str]:
    # Cached apart from ``codes`` so that ``codes`` keeps its ``Literal`` parameter type for mypy.
    return frozenset(item["code"] for item in _load(name))


def label(name: CodeListName, code: str) -> str:
    """The human-readable label of ``code`` in list ``name``.

    :raises ValueError: ``name`` is unknown, or ``code`` is not in the list.
    """
    for item in _load(name):
        if item["code"] == code:
            return str(item["label"])
    raise ValueError(f"{code!r} is not a code of the {name} list")


def classification_rank(code: str) -> int:
    """The rank of a classification (UNCLASSIFIED 0 … SECRET 3): compare clearances with ``>=`` on this.

    :raises ValueError: ``code`` is not a classification. Deliberately not a default of 0 or -1: an unknown
        level must never compare as "low enough to read".
    """
    for item in _load("classifications"):
        if item["code"] == code:
            return int(item["rank"])
    raise ValueError(
        f"{code!r} is not a classification; expected one of {', '.join(_ordered('classifications'))}"
    )


def _ordered(name: CodeListName) -> list[str]:
    return [str(item["code"]) for item in _load(name)]


def _member_of(name: CodeListName, what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in codes(name):
            raise ValueError(f"{value!r} is not a known {what}; expected one of: {', '.join(_ordered(name))}")
        return value

    return check


CountryCode = Annotated[
    str,
    AfterValidator(_member_of("countries", "country code")),
    WithJsonSchema({"type": "string", "enum": _ordered("countries")}),
]
"""A country of the exchange (ISO 3166-1 alpha-2, XK for Kosovo*)."""

AgencyKind = Annotated[
    str,
    AfterValidator(_member_of("agency_kinds", "agency kind")),
    WithJsonSchema({"type": "string", "enum": _ordered("agency_kinds")}),
]
"""The kind of a competent authority: police, border-police, customs, prosecutor, fiu."""

Category = Annotated[
    str,
    AfterValidator(_member_of("categories", "crime category")),
    WithJsonSchema({"type": "string", "enum": _ordered("categories")}),
]
"""A crime category; agreements between countries are scoped by category."""

Classification = Annotated[
    str,
    AfterValidator(_member_of("classifications", "classification")),
    WithJsonSchema({"type": "string", "enum": _ordered("classifications")}),
]
"""A classification level; order them with :func:`classification_rank`, never alphabetically."""

HandlingCode = Annotated[
    str,
    AfterValidator(_member_of("handling_codes", "handling code")),
    WithJsonSchema({"type": "string", "enum": _ordered("handling_codes")}),
]
"""A handling code H0–H3: conditions the provider attaches to the use of the information."""

SourceReliability = Annotated[
    str,
    AfterValidator(_member_of("source_reliability", "source reliability code")),
    WithJsonSchema({"type": "string", "enum": _ordered("source_reliability")}),
]
"""Source reliability of the EU 4x4 evaluation: A, B, C or X."""

InformationAccuracy = Annotated[
    str,
    AfterValidator(_member_of("information_accuracy", "information accuracy code")),
    WithJsonSchema({"type": "string", "enum": _ordered("information_accuracy")}),
]
"""Information accuracy of the EU 4x4 evaluation: "1" to "4" (strings, as on the wire)."""

UrgencyReason = Annotated[
    str,
    AfterValidator(_member_of("urgency_reasons", "urgency reason")),
    WithJsonSchema({"type": "string", "enum": _ordered("urgency_reasons")}),
]
"""One of the four reasons of Directive (EU) 2023/977 Art. 4(4) that make a request urgent."""

RefusalGround = Annotated[
    str,
    AfterValidator(_member_of("refusal_grounds", "refusal ground")),
    WithJsonSchema({"type": "string", "enum": _ordered("refusal_grounds")}),
]
"""A ground of the closed list of Directive (EU) 2023/977 Art. 6 on which a request may be refused."""

DeadlineExtensionReason = Annotated[
    str,
    AfterValidator(_member_of("deadline_extension_reasons", "deadline extension reason")),
    WithJsonSchema({"type": "string", "enum": _ordered("deadline_extension_reasons")}),
]
"""Why the requested contact point extends a deadline: Directive (EU) 2023/977 Art. 5(2) allows deviating from
the time limits only while a judicial authorisation is awaited (a closed list, so Art. 18(d) can count it)."""

MessageType = Annotated[
    str,
    AfterValidator(_member_of("message_types", "message type")),
    WithJsonSchema({"type": "string", "enum": _ordered("message_types")}),
]
"""request, response, clarification, notification or acknowledgement."""
