"""From structured content to *selectors*: the normalised values two messages about the same person, phone,
vehicle or account have in common, however each sender wrote them.

A selector is ``(kind, value, partial)``. Only its keyed hash is ever stored (``broker.crosscheck.keys``);
the values here live in memory for the length of one batch.

**Names.** A name in any script is first brought to one spelling:

1. Cyrillic → Latin with ``cyrtranslit`` in its Serbian table (the official one-to-one Gaj alphabet:
   Ј→J, Љ→Lj, Њ→Nj, Ћ→Ć, Ђ→Đ, Џ→Dž, Х→H, Ш→Š), then its Macedonian table for the three letters Serbian
   lacks (Ѕ→Dz; Ѓ and Ќ are written Gj and Kj first, as Macedonians write them in Latin). Why not
   ``anyascii`` or ``unidecode`` alone: both romanise Cyrillic the Russian way (Х→Kh, Ш→Sh, Ж→Zh, and
   unidecode ћ→tsh), so «Шишић» would become «Shishic» and never meet the Serbian Latin «Šišić». Why not
   ICU's Serbian-Latin transform: PyICU compiles against the system's libicu, a heavy dependency for
   three dozen letters that ``cyrtranslit`` (maintained, bidirectional, tested on Serbian and Macedonian)
   maps exactly.
2. Đ/đ → Dj/dj, the customary ASCII spelling (anyascii would drop it to D), then ``anyascii`` strips
   every remaining diacritic and romanises any other script (Š→S, Ć→C, ë→e, Greek, ...).
3. Lower case, punctuation to spaces, tokens **sorted**: «Jovanović Marko», «Marko Jovanović» and
   «Марко Јовановић» all become ``jovanovic marko``.

That is the ``person-name`` selector. For spellings that differ, ``person-name~`` is a *skeleton* of the
same tokens that folds the usual ASCII renderings of č/ć/š/ž/đ/х (ch, tch, sh, zh, dj, kh, ts), so
«Jovanovich» and «Djordjevic»/«Dordevic» meet, and, for names of 8 letters or more, the skeleton with
each single letter deleted: two names one typing slip apart (a letter changed, added, dropped or doubled,
or two swapped) always share one of those deletion variants. A keyed hash matches only equal inputs, so
this neighbourhood is the only way to let a slip link without storing the name. The last letter of a
word is never deleted: in the region's languages the feminine form of a name or surname differs there by
one letter (Dragan/Dragana, Jovanovski/Jovanovska), and those are two people, not a slip. What remains
ambiguous is named in the tests and measured by ``spoc bench --crosscheck``: two people one letter apart
elsewhere in the name, with the same other names and year (Petrović/Petković), link as "similar name".

**Year of birth.** Name selectors carry the year of birth when the person has one; a person with a year
also gives the same selectors without it, marked ``partial``. Two partial selectors never link: two
people of the same name born in different years stay apart, while a person known without a year still
meets one known with it.

**Numbers.** Documents, VINs and case references: upper case, letters and digits only, Cyrillic letters
that look Latin mapped to them (А→A, В→B, Е→E, К→K, М→M, Н→H, О→O, Р→P, С→C, Т→T, У→Y, Х→X). Plates the
same. Phones: ``phonenumbers`` (Google's libphonenumber metadata) parses them with the number's country or
the sender's and gives E.164; one it cannot parse is kept as its digits (``phone-text``) and matched
exactly. IBANs: ``schwifty`` checks the country's length and structure and the mod-97 digits and gives the
compact form; one it refuses is kept as text (``iban-text``). E-mail: lower case.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

import cyrtranslit
import phonenumbers
import schwifty
from anyascii import anyascii

from schemas.content import Content, PersonName

__all__ = [
    "KIND_LABELS",
    "Selector",
    "fold",
    "name_key",
    "normal_number",
    "phone_selector",
    "selectors",
    "skeleton",
]

MIN_FUZZY_LETTERS: Final = 8
"""Deletion variants only for names this long: for short names one letter apart is another name."""

KIND_LABELS: Final[dict[str, str]] = {
    "person-name": "same name",
    "person-name~": "similar name",
    "document": "identity document",
    "plate": "vehicle plate",
    "vin": "vehicle VIN",
    "phone": "phone number",
    "phone-text": "phone number (as written)",
    "email": "e-mail address",
    "iban": "bank account (IBAN)",
    "iban-text": "bank account (as written)",
    "organisation": "organisation name",
    "organisation-id": "organisation registration number",
    "case-reference": "case reference",
}
"""What a link's basis says to an officer: the kind of selector that matched, never its value."""

_MACEDONIAN_FIRST: Final = str.maketrans({"Ѓ": "Gj", "ѓ": "gj", "Ќ": "Kj", "ќ": "kj"})
_DJ: Final = str.maketrans({"Đ": "Dj", "đ": "dj"})
_HOMOGLYPHS: Final = str.maketrans(
    "АВЕКМНОРСТУХаеорсух", "ABEKMHOPCTYXAEOPCYX"
)  # Cyrillic capitals (and the lower-case ones) that are read as the Latin letter of the same shape
_NON_ALNUM: Final = re.compile(r"[^0-9a-z]+")
_SKELETON: Final = [
    (re.compile(r"tch|tsh|ch|ts"), "c"),
    (re.compile(r"sh"), "s"),
    (re.compile(r"zh"), "z"),
    (re.compile(r"dj|dz"), "d"),
    (re.compile(r"kh"), "h"),
]
_LEGAL_FORMS: Final = frozenset(
    {"doo", "d", "o", "ad", "dd", "llc", "ltd", "gmbh", "shpk", "sh", "p", "k", "sa", "srl", "dooel", "jsc"}
)


@dataclass(frozen=True, slots=True)
class Selector:
    """A normalised value of one kind; ``partial`` when it leaves out a year of birth the content gives."""

    kind: str
    value: str
    partial: bool = False


def _latin(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(_MACEDONIAN_FIRST)
    text = cyrtranslit.to_latin(text, "sr")
    text = cyrtranslit.to_latin(text, "mk")
    return anyascii(text.translate(_DJ))


def fold(text: str) -> str:
    """One spelling of a name in any script: Latin, ASCII, lower case, words separated by one space."""
    return _NON_ALNUM.sub(" ", _latin(text).lower()).strip()


def skeleton(folded: str) -> str:
    """The folded text with the usual ASCII digraphs and doubled letters reduced (see the module doc)."""
    for pattern, replacement in _SKELETON:
        folded = pattern.sub(replacement, folded)
    return folded


def name_key(name: PersonName) -> str | None:
    """The sorted tokens of a name, or None if it has fewer than two (one word names no one)."""
    parts = [p for p in (name.given_name, name.family_name, name.full_name) if p]
    tokens = sorted(set(fold(" ".join(parts)).split()))
    return " ".join(tokens) if len(tokens) >= 2 else None


def _deletions(text: str) -> Iterator[str]:
    yield text
    if sum(c != " " for c in text) < MIN_FUZZY_LETTERS:
        return
    seen = {text}
    for i, char in enumerate(text):
        if char == " " or i + 1 == len(text) or text[i + 1] == " ":
            continue  # never a word's last letter: Dragan/Dragana, Jovanovski/Jovanovska are two people
        variant = text[:i] + text[i + 1 :]
        if variant not in seen:
            seen.add(variant)
            yield variant


def normal_number(text: str) -> str:
    """A document number, plate, VIN or reference without its formatting: ``P 123-456`` → ``P123456``;
    Cyrillic look-alike letters read as Latin (``ВГ`` on a plate is ``BG``), diacritics dropped."""
    return re.sub(r"[^0-9A-Z]", "", anyascii(text.translate(_HOMOGLYPHS)).upper())


def phone_selector(number: str, *, region: str | None) -> Selector:
    """E.164 if the numbering plan knows the number (``064/123-4567`` in RS → ``+381641234567``), else
    the number as written, reduced to its digits (and a leading +)."""
    try:
        parsed = phonenumbers.parse(number, region)
        if phonenumbers.is_possible_number(parsed):
            return Selector("phone", phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    except phonenumbers.NumberParseException:
        pass
    digits = re.sub(r"[^0-9]", "", number)
    return Selector("phone-text", ("+" if number.strip().startswith("+") else "") + digits)


def _iban(value: str) -> Selector:
    try:
        return Selector("iban", schwifty.IBAN(value).compact)
    except ValueError:  # schwifty's SchwiftyException is a ValueError
        return Selector("iban-text", normal_number(value))


def _person(names: Iterable[PersonName], year: int | None) -> Iterator[Selector]:
    for name in names:
        key = name_key(name)
        if key is None:
            continue
        fuzzy = list(_deletions(skeleton(key)))
        for suffix, partial in ((f"|{year}", False), ("|", True)) if year else (("|", False),):
            yield Selector("person-name", key + suffix, partial)
            for variant in fuzzy:
                yield Selector("person-name~", variant + suffix, partial)


def selectors(content: Content, *, region: str | None) -> list[Selector]:
    """Every selector of ``content``, without repeats; ``region`` is the country assumed for a phone
    number written without its country code and without its own ``country`` (the sender's)."""
    found: dict[tuple[str, str], Selector] = {}

    def add(selector: Selector) -> None:
        if not selector.value.strip("|+"):
            return
        seen = found.get((selector.kind, selector.value))
        if seen is None or (seen.partial and not selector.partial):
            found[(selector.kind, selector.value)] = selector

    for person in content.persons:
        for selector in _person([person, *person.aliases], person.birth_year):
            add(selector)
        for document in person.documents:
            add(Selector("document", normal_number(document.document_number)))
    for organisation in content.organisations:
        tokens = sorted(set(fold(organisation.name).split()) - _LEGAL_FORMS)
        if tokens:
            add(Selector("organisation", " ".join(tokens)))
        if organisation.registration_number:
            add(Selector("organisation-id", normal_number(organisation.registration_number)))
    for vehicle in content.vehicles:
        if vehicle.registration_number:
            add(Selector("plate", normal_number(vehicle.registration_number)))
        if vehicle.vin:
            add(Selector("vin", normal_number(vehicle.vin)))
    for phone in content.phone_numbers:
        add(phone_selector(phone.number, region=phone.country or region))
    for email in content.email_addresses:
        add(Selector("email", email.address.strip().lower()))
    for account in content.bank_accounts:
        add(_iban(account.iban))
    for reference in content.case_references:
        add(Selector("case-reference", normal_number(reference.reference)))
    return list(found.values())
