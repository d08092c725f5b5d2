"""The code lists: their contents, the loader's guarantees, and the pydantic types built on them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas import codelists
from schemas.codelists import (
    NAMES,
    Category,
    Classification,
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


@pytest.mark.parametrize("name", NAMES)
def test_every_list_has_unique_codes_and_labels(name: codelists.CodeListName) -> None:
    items = entries(name)
    assert items
    assert all(isinstance(i["code"], str) and i["code"] and isinstance(i["label"], str) for i in items)
    assert len(codes(name)) == len(items)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("countries", {"AL", "BA", "HR", "XK", "ME", "MK", "RS", "SI"}),
        ("agency_kinds", {"police", "border-police", "customs", "prosecutor", "fiu"}),
        ("classifications", {"UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"}),
        ("handling_codes", {"H0", "H1", "H2", "H3"}),
        ("source_reliability", {"A", "B", "C", "X"}),
        ("information_accuracy", {"1", "2", "3", "4"}),
        (
            "urgency_reasons",
            {
                "serious-threat-to-public-security",
                "threat-to-life-or-physical-integrity",
                "decision-depriving-liberty",
                "risk-information-loses-relevance",
            },
        ),
        (
            "refusal_grounds",
            {
                "not-available",
                "incomplete",
                "judicial-authorisation-refused",
                "personal-data-outside-permitted-categories",
                "inaccurate-or-out-of-date",
                "national-security-investigation-or-safety",
                "minor-offence",
                "originator-consent-withheld",
            },
        ),
        ("message_types", {"request", "response", "clarification", "notification", "acknowledgement"}),
        ("deadline_extension_reasons", {"judicial-authorisation-pending"}),
    ],
)
def test_closed_lists_are_exactly_as_specified(name: codelists.CodeListName, expected: set[str]) -> None:
    assert codes(name) == expected


def test_categories_include_the_required_ones_in_kebab_case() -> None:
    required = {
        "migrant-smuggling",
        "drug-trafficking",
        "trafficking-in-human-beings",
        "weapons-trafficking",
        "money-laundering",
        "terrorism",
        "organised-crime",
        "corruption",
        "cybercrime",
        "fraud",
        "excise-smuggling",
        "vehicle-crime",
        "murder",
        "robbery",
        "counterfeiting",
    }
    assert required <= codes("categories")
    for item in entries("categories"):
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", item["code"]), item["code"]
        assert item["offences"], f"{item['code']} names no Art. 2(2) offence"


def test_kosovo_carries_the_designation_footnote() -> None:
    (kosovo,) = [c for c in entries("countries") if c["code"] == "XK"]
    assert "UNSCR 1244/1999" in kosovo["note"]
    assert "ICJ Opinion" in kosovo["note"]


def test_every_message_type_states_its_in_reply_to_rule() -> None:
    rules = {i["code"]: i["in_reply_to"] for i in entries("message_types")}
    assert rules == {
        "request": "forbidden",
        "response": "required",
        "clarification": "required",
        "notification": "optional",
        "acknowledgement": "required",
    }


def test_classification_ranks_are_ordered() -> None:
    ranks = [classification_rank(c) for c in ("UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET")]
    assert ranks == [0, 1, 2, 3]


@pytest.mark.parametrize("bad", ["TOP SECRET", "secret", ""])
def test_unknown_classification_has_no_rank(bad: str) -> None:
    with pytest.raises(ValueError, match="not a classification"):
        classification_rank(bad)


def test_entries_are_copies() -> None:
    first = entries("countries")
    first[0]["label"] = "tampered"
    assert entries("countries")[0]["label"] == "Albania"


def test_unknown_list_is_an_error() -> None:
    bad: Any = "planets"
    with pytest.raises(ValueError, match="unknown code list"):
        entries(bad)


def test_label_lookup() -> None:
    assert label("handling_codes", "H0") == "Law-enforcement use only"
    with pytest.raises(ValueError, match="not a code"):
        label("handling_codes", "H9")


ANNOTATED = [
    (CountryCode, "countries"),
    (Category, "categories"),
    (Classification, "classifications"),
    (HandlingCode, "handling_codes"),
    (SourceReliability, "source_reliability"),
    (InformationAccuracy, "information_accuracy"),
    (UrgencyReason, "urgency_reasons"),
    (RefusalGround, "refusal_grounds"),
    (MessageType, "message_types"),
    (DeadlineExtensionReason, "deadline_extension_reasons"),
]


@pytest.mark.parametrize(("annotated", "name"), ANNOTATED)
def test_annotated_types_accept_members_and_export_an_enum(annotated: Any, name: Any) -> None:
    adapter: TypeAdapter[str] = TypeAdapter(annotated)
    for code in codes(name):
        assert adapter.validate_python(code) == code
    assert adapter.json_schema() == {"type": "string", "enum": [i["code"] for i in entries(name)]}


@pytest.mark.parametrize(("annotated", "name"), ANNOTATED)
def test_annotated_types_reject_non_members_without_normalising(annotated: Any, name: Any) -> None:
    adapter: TypeAdapter[str] = TypeAdapter(annotated)
    some = sorted(codes(name))[0]
    for bad in ("nonsense", some.swapcase() if some.swapcase() != some else some + "x", f" {some}", 1):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)
