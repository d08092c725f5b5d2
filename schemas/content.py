"""Structured content: what a request, an answer or a provision is about, inside the encrypted payload.

The routing header says who sends what to whom under which rules; this says *about whom and what*: the
persons, organisations, vehicles, phone numbers, e-mail addresses, bank accounts, addresses and case
references of an exchange, plus free text. It travels inside the JWE (only the readers on the route see
it) as one JSON object whose ``format`` member is :data:`CONTENT_FORMAT`.

**Modelled on UMF.** The EU's Universal Message Format (Regulations (EU) 2019/817 and 2019/818 Art. 38,
Commission Implementing Decisions (EU) 2023/220 and 2023/221) is the standard for structured, cross-border
information exchange in justice and home affairs: a reference model of *entities* (Person, Organisation,
Document, Vehicle, Address, Phone, E-mail, Bank account, Case) with *attributes*. This module takes UMF's
entities and, where UMF has one, its attribute name, written in this API's ``snake_case``:

========================  ===================================================================
here                      UMF entity / attribute
========================  ===================================================================
``persons``               Person: ``familyName`` → ``family_name``, ``givenName`` →
                          ``given_name``, ``dateOfBirth`` → ``date_of_birth``, ``placeOfBirth``
                          → ``place_of_birth``, ``gender``, ``nationality`` → ``nationalities``
                          (a person may hold several), Alias → ``aliases``
``documents``             Document (travel or identity document): ``documentNumber`` →
                          ``document_number``, ``documentType`` → ``document_type``,
                          ``issuingCountry`` → ``issuing_country``, ``dateOfExpiry``
``organisations``         Organisation: ``name``, ``registrationNumber``, ``country``
``vehicles``              Vehicle: ``registrationNumber`` (the plate), ``registrationCountry``,
                          ``vin`` (ISO 3779 vehicle identification number), ``make``, ``model``
``phone_numbers``         Phone: ``number`` as written; the broker normalises it to E.164
``email_addresses``       E-mail: ``address``
``bank_accounts``         Bank account: ``iban`` (ISO 13616), ``bic`` (ISO 9362)
``addresses``             Address: ``street``, ``houseNumber``, ``postalCode``, ``city``, ``country``
``case_references``       Case: ``reference``, ``issuedBy``
========================  ===================================================================

What is *not* taken from UMF: its XML envelope (spoc has its own signed header), its biometrics, and its
full code lists (here: ISO 3166-1 alpha-2 countries with ``XK`` for Kosovo*, and a short document-type
list). A UMF-speaking system maps onto this by renaming; nothing UMF requires for these entities is lost.

**Why the broker can check it at all.** The payload is end-to-end encrypted, but the sending agency
encrypts it to its own contact point, which intake opens to check that it can read what it will vouch for
(``missing-reader``). So the agency's node validates structured content against this schema there and
refuses content that claims this format and does not fit, naming the field (``errors[].loc``). Content
that does not claim it (plain text, or JSON without this ``format``) is *unstructured*: it is accepted as
it is, shown to officers as text, and not cross-checked.

**What is validated here and what is not.** Shapes, lengths, code lists, dates, an IBAN's ISO 13616
mod-97 check digits and a VIN's alphabet: what any implementation can check from the value alone. Names
are free text in any script (Cyrillic, Latin with or without diacritics, Greek...): refusing a spelling
would refuse a real person. Phone numbers are checked for their characters only; the broker normalises
them to E.164 with a numbering-plan library, and a number it cannot parse is still kept and matched as
written. The check digits of an IBAN are computed here by hand (twenty lines of ISO 13616 arithmetic)
because this package imports nothing but pydantic, so integrators can vendor it.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Annotated, Any, Final, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.primitives import VisibleText

__all__ = [
    "CONTENT_FORMAT",
    "CONTENT_FORMAT_PREFIX",
    "Address",
    "BankAccount",
    "CaseReference",
    "Content",
    "EmailAddress",
    "IdentityDocument",
    "Organisation",
    "Person",
    "PersonName",
    "PhoneNumber",
    "Vehicle",
    "claims_structure",
    "iban_check_digits_ok",
]

CONTENT_FORMAT: Final = "spoc-content/1"
"""The value of ``format`` that marks a payload as structured content of this version."""

CONTENT_FORMAT_PREFIX: Final = "spoc-content/"
"""A JSON object whose ``format`` starts with this claims to be structured content (of some version)."""

MAX_ITEMS: Final = 200
"""At most this many entries in each list: ample for one case, and a bound on what a node parses."""

_ShortText = Annotated[VisibleText, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
_LongText = Annotated[VisibleText, StringConstraints(max_length=20_000)]
_Country = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2}$"),
    Field(description="ISO 3166-1 alpha-2, upper case; XK for Kosovo*"),
]
_Role = Literal["suspect", "victim", "witness", "associate", "owner", "user", "other"]


def _year_of(value: int) -> int:
    if not 1900 <= value <= date.today().year:
        raise ValueError(f"a year of birth lies between 1900 and {date.today().year}")
    return value


def _not_future(value: date) -> date:
    if value > date.today() or value.year < 1900:
        raise ValueError("a date of birth lies between 1900-01-01 and today")
    return value


def iban_check_digits_ok(iban: str) -> bool:
    """ISO 13616 / ISO 7064 mod 97-10 on an IBAN written without spaces: letters become 10..35, the first
    four characters move to the end, and the number must leave remainder 1 when divided by 97."""
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(c, 36)) for c in rearranged)
    return int(digits) % 97 == 1


_IBAN_SHAPE: Final = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")


def _iban(value: str) -> str:
    compact = re.sub(r"[\s-]", "", value).upper()
    if not _IBAN_SHAPE.fullmatch(compact):
        raise ValueError("an IBAN is a country code, two check digits and 11 to 30 letters or digits")
    if not iban_check_digits_ok(compact):
        raise ValueError("the IBAN's check digits are wrong (ISO 13616 mod-97): a digit is mistyped")
    return value


_VIN: Final = re.compile(r"[A-HJ-NPR-Z0-9]{17}")


def _vin(value: str) -> str:
    compact = re.sub(r"[\s-]", "", value).upper()
    if not _VIN.fullmatch(compact):
        raise ValueError("a VIN is 17 letters and digits, without I, O and Q (ISO 3779)")
    return value


def _digits_at_least(count: int) -> Any:
    def check(value: str) -> str:
        if sum(c.isdigit() for c in value) < count:
            raise ValueError(f"has fewer than {count} digits")
        return value

    return check


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PersonName(_Item):
    """One name of a person (UMF Person / Alias). Give the parts when known; ``full_name`` when only the
    whole is known, in any order. Any script: the broker transliterates for cross-checking and keeps the
    name as written for officers."""

    family_name: _ShortText | None = None
    given_name: _ShortText | None = Field(None, description="all given names, in order, in one field")
    full_name: _ShortText | None = Field(None, description="the whole name when its parts are not known")

    @model_validator(mode="after")
    def _some_name(self) -> Self:
        if not (self.family_name or self.given_name or self.full_name):
            raise ValueError("a name needs family_name, given_name or full_name")
        return self


class IdentityDocument(_Item):
    """A travel or identity document (UMF Document)."""

    document_type: Literal[
        "passport", "identity-card", "driving-licence", "residence-permit", "visa", "other"
    ] = "other"
    document_number: Annotated[_ShortText, AfterValidator(_digits_at_least(1))]
    issuing_country: _Country | None = None
    date_of_expiry: date | None = None


class Person(PersonName):
    """A person (UMF Person): one name (the parts above) with its aliases, birth, nationalities and
    identity documents. ``year_of_birth`` alone when the date is not known; both must then agree."""

    aliases: Annotated[list[PersonName], Field(max_length=20)] = []
    date_of_birth: Annotated[date, AfterValidator(_not_future)] | None = None
    year_of_birth: Annotated[int, AfterValidator(_year_of)] | None = None
    place_of_birth: _ShortText | None = None
    gender: Literal["female", "male", "other", "unknown"] | None = None
    nationalities: Annotated[list[_Country], Field(max_length=5)] = []
    documents: Annotated[list[IdentityDocument], Field(max_length=20)] = []
    role: _Role | None = None

    @model_validator(mode="after")
    def _birth_agrees(self) -> Self:
        if self.date_of_birth and self.year_of_birth and self.date_of_birth.year != self.year_of_birth:
            raise ValueError("year_of_birth differs from the year of date_of_birth")
        return self

    @property
    def birth_year(self) -> int | None:
        """The year of birth, from whichever field gives it."""
        return self.date_of_birth.year if self.date_of_birth else self.year_of_birth


class Organisation(_Item):
    """A company, association or other organisation (UMF Organisation)."""

    name: _ShortText
    registration_number: _ShortText | None = None
    country: _Country | None = None
    role: _Role | None = None


class Vehicle(_Item):
    """A vehicle (UMF Vehicle): its plate (``registration_number``) and/or its VIN."""

    registration_number: _ShortText | None = Field(None, description="the plate as written")
    registration_country: _Country | None = None
    vin: Annotated[_ShortText, AfterValidator(_vin)] | None = None
    make: _ShortText | None = None
    model: _ShortText | None = None
    colour: _ShortText | None = None

    @model_validator(mode="after")
    def _identified(self) -> Self:
        if not (self.registration_number or self.vin):
            raise ValueError("a vehicle needs registration_number or vin")
        return self


class PhoneNumber(_Item):
    """A phone number as written (``+381 64 123 4567``, ``064/123-4567``); ``country`` is where a number
    written without its country code belongs (else the sending country is assumed)."""

    number: Annotated[
        str,
        StringConstraints(strip_whitespace=True, max_length=40, pattern=r"^\+?[0-9 ()./-]+$"),
        AfterValidator(_digits_at_least(5)),
    ]
    country: _Country | None = None
    role: _Role | None = None


class EmailAddress(_Item):
    """An e-mail address (the local part and the domain; not looked up)."""

    address: Annotated[
        str, StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    ]
    role: _Role | None = None


class BankAccount(_Item):
    """A bank account by its IBAN (ISO 13616; spaces allowed, check digits verified)."""

    iban: Annotated[str, StringConstraints(strip_whitespace=True, max_length=50), AfterValidator(_iban)]
    bic: Annotated[str, StringConstraints(pattern=r"^[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$")] | None = (
        None
    )
    holder: _ShortText | None = None


class Address(_Item):
    """A postal address (UMF Address). Shown to officers; not cross-checked (addresses are written in too
    many ways for an exact keyed match to mean much)."""

    street: _ShortText | None = None
    house_number: Annotated[str, StringConstraints(max_length=20)] | None = None
    postal_code: Annotated[str, StringConstraints(max_length=20)] | None = None
    city: _ShortText | None = None
    country: _Country | None = None
    full_address: _ShortText | None = None


class CaseReference(_Item):
    """A case or file number (the sender's, or another authority's)."""

    reference: _ShortText
    issued_by: _ShortText | None = None


class Content(BaseModel):
    """Structured content of a request, an answer or a provision (``format`` = ``spoc-content/1``).

    ``text`` is the question, the answer or the information in words; ``conditions`` are the provider's
    H3 conditions (shown to officers before the content, as for any JSON payload). Unknown members are
    refused: a misspelt field name would otherwise be silently dropped.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, title="Content")

    format: Literal["spoc-content/1"]
    text: _LongText | None = None
    conditions: _LongText | None = None
    persons: Annotated[list[Person], Field(max_length=MAX_ITEMS)] = []
    organisations: Annotated[list[Organisation], Field(max_length=MAX_ITEMS)] = []
    vehicles: Annotated[list[Vehicle], Field(max_length=MAX_ITEMS)] = []
    phone_numbers: Annotated[list[PhoneNumber], Field(max_length=MAX_ITEMS)] = []
    email_addresses: Annotated[list[EmailAddress], Field(max_length=MAX_ITEMS)] = []
    bank_accounts: Annotated[list[BankAccount], Field(max_length=MAX_ITEMS)] = []
    addresses: Annotated[list[Address], Field(max_length=MAX_ITEMS)] = []
    case_references: Annotated[list[CaseReference], Field(max_length=MAX_ITEMS)] = []

    def to_payload(self) -> bytes:
        """The UTF-8 JSON bytes to encrypt as the payload: empty lists and absent members left out, names in
        any script written as they are (not ``\\u`` escaped), ``format`` always written."""
        document = self.model_dump(mode="json", exclude_defaults=True)
        document["format"] = CONTENT_FORMAT
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def claims_structure(document: object) -> bool:
    """Whether a decoded JSON payload claims to be structured content: an object whose ``format`` member
    is a string starting ``spoc-content/``. Such a payload must then fit :class:`Content` exactly (an
    unknown version is refused, not read as text)."""
    if not isinstance(document, dict):
        return False
    value = document.get("format")
    return isinstance(value, str) and value.startswith(CONTENT_FORMAT_PREFIX)
