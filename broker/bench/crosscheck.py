"""``spoc bench --crosscheck N``: how well and how cheaply the case file links what it holds.

A generated corpus with known answers: N people (given name, family name, year of birth; some with a phone,
a plate or an IBAN), each asked about twice by two agencies of one country, the second time written
differently: in Cyrillic, without diacritics, in another order, with the ASCII digraphs of č/š/ž/đ, or with
a typing slip (two letters swapped, one dropped); phones, plates and IBANs formatted otherwise. Beside them,
*different* people with similar names, each asked about once: the same name born in another year, the
feminine form (Dragan/Dragana, Jovanovski/Jovanovska), the Macedonian form of a Serbian surname
(Jovanović/Jovanovski). Random but seeded: the same N gives the same corpus.

Everything goes through the real intake (signed, encrypted envelopes posted in batches to the in-process
app on a fresh PostgreSQL database) into the sending country's contact point, which holds them all at once
(cross-checking is the same for what a contact point sends and what it receives). Then the batch step runs
until done, timed. Reported: links expected, true links found, links missed, false links, and the cost per
message (wall time of the batch step, keyed hashes stored).
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cyrtranslit
from anyascii import anyascii
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import event, select

from broker.bench.load import credentials
from broker.bench.stack import database
from broker.client.agency import AgencyClient
from broker.config import Settings
from broker.crosscheck.models import CrosscheckLink
from broker.crosscheck.service import run_batch
from broker.crypto import MasterKey
from broker.db import unit_of_work
from broker.keys.service import DatabaseKeyStore
from broker.launcher import prepare
from schemas.content import Content

__all__ = ["CrosscheckBench", "corpus", "run"]

GIVEN = [
    "Marko", "Nikola", "Stefan", "Miloš", "Luka", "Dragan", "Goran", "Zoran", "Dejan", "Ivan", "Aleksandar",
    "Vladimir", "Bojan", "Nenad", "Petar", "Jovan", "Milan", "Dušan", "Đorđe", "Željko", "Branko", "Slobodan",
]  # fmt: skip
FAMILY = [
    "Jovanović", "Petrović", "Nikolić", "Marković", "Đorđević", "Stojanović", "Ilić", "Stanković", "Pavlović",
    "Milošević", "Popović", "Živković", "Todorović", "Kovačević", "Lazić", "Savić", "Ristić", "Šarić",
    "Stojanovski", "Petrovski", "Nikolovski", "Trajkovski", "Dimitrovski", "Jovanovski",
]  # fmt: skip
SENDERS = ("AL-ASP", "AL-BMP", "AL-CUS", "AL-PRO")
DESTINATION = "ME"
_DIGRAPHS = str.maketrans(
    {
        "č": "ch",
        "ć": "ch",
        "š": "sh",
        "ž": "zh",
        "đ": "dj",
        "Č": "Ch",
        "Ć": "Ch",
        "Š": "Sh",
        "Ž": "Zh",
        "Đ": "Dj",
    }
)


@dataclass(frozen=True)
class Item:
    """One message of the corpus: its content, and who it is about (the identity links are judged by)."""

    identity: int
    variant: str
    content: Content


@dataclass(frozen=True)
class CrosscheckBench:
    identities: int
    messages: int
    expected: int
    found: int
    missed: int
    false: int
    false_examples: list[str]
    missed_examples: list[str]
    ms_per_message: float
    hashes_per_message: float
    statements_per_batch: float

    def lines(self) -> list[str]:
        return [
            f"corpus: {self.identities} identities, {self.messages} messages, {self.expected} true links",
            f"true links found: {self.found} of {self.expected} (missed {self.missed})",
            f"false links: {self.false}",
            f"cost per message: {self.ms_per_message:.2f} ms, {self.hashes_per_message:.1f} keyed hashes; "
            f"{self.statements_per_batch:.1f} SQL statements per batch",
            *(f"  missed: {m}" for m in self.missed_examples),
            *(f"  false: {f}" for f in self.false_examples),
        ]


def _slip(rng: random.Random, word: str) -> str:
    """Two inner letters swapped or one inner letter dropped (never the first or the last)."""
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 2)
    if rng.random() < 0.5:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i + 1 :]


def _feminine(given: str, family: str) -> tuple[str, str]:
    """The feminine form: Dragan → Dragana, Jovanovski → Jovanovska (Luka has none: kept as it is)."""
    given = given if given.endswith("a") else given + "a"
    return given, family[:-1] + "a" if family.endswith("ski") else family


VARIANTS: dict[str, Callable[[random.Random, str, str], dict[str, Any]]] = {
    "cyrillic": lambda _r, g, f: {
        "given_name": cyrtranslit.to_cyrillic(g, "sr"),
        "family_name": cyrtranslit.to_cyrillic(f, "sr"),
    },
    "no-diacritics": lambda _r, g, f: {"given_name": anyascii(g), "family_name": anyascii(f)},
    "reordered": lambda _r, g, f: {"full_name": f"{f} {g}"},
    "digraphs": lambda _r, g, f: {"full_name": f"{g.translate(_DIGRAPHS)} {f.translate(_DIGRAPHS)}"},
    "slip": lambda r, g, f: {"given_name": g, "family_name": _slip(r, f)},
}


def corpus(n: int, *, seed: int = 2026) -> list[Item]:
    """N identities asked about twice each, and about N/2 different people with similar names once each."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible test corpus, not a secret
    people = rng.sample([(g, f, y) for g in GIVEN for f in FAMILY for y in range(1960, 2001)], n)
    taken = set(people)
    items: list[Item] = []
    for identity, (given, family, year) in enumerate(people):
        extra: list[tuple[dict[str, Any], dict[str, Any]]] = []
        kind = identity % 6
        digits = f"{rng.randrange(10**6, 10**7)}"
        if kind == 1:
            extra.append(
                (
                    {"phone_numbers": [{"number": f"+381 6{digits[0]} {digits[1:4]} {digits[4:]}"}]},
                    {
                        "phone_numbers": [
                            {"number": f"06{digits[0]}/{digits[1:4]}-{digits[4:]}", "country": "RS"}
                        ]
                    },
                )
            )
        elif kind == 2:
            plate = f"BG {digits[:3]}-{chr(65 + identity % 26)}{chr(65 + identity // 26 % 26)}"
            compact = plate.replace(" ", "").replace("-", "").lower()
            extra.append(
                (
                    {"vehicles": [{"registration_number": plate}]},
                    {"vehicles": [{"registration_number": compact}]},
                )
            )
        first = {"given_name": given, "family_name": family, "year_of_birth": year}
        variant = rng.choice(sorted(VARIANTS))
        second = {**VARIANTS[variant](rng, given, family), "year_of_birth": year}
        documents = [{"persons": [first]}, {"persons": [second]}]
        for a, b in extra:
            documents[0].update(a)
            documents[1].update(b)
        for document in documents:
            items.append(
                Item(identity, variant, Content.model_validate({"format": "spoc-content/1", **document}))
            )
    others = len(people)
    for given, family, year in people[: n // 2]:
        choice = rng.randrange(3)
        if choice == 0:
            other = (given, family, year + 1 if year < 2000 else year - 1)
        elif choice == 1:
            other = (*_feminine(given, family), year)
        else:
            other = (given, family.replace("ović", "ovski").replace("ević", "evski"), year)
        if other in taken or other == (given, family, year):
            continue
        taken.add(other)
        person = {"given_name": other[0], "family_name": other[1], "year_of_birth": other[2]}
        items.append(
            Item(
                others,
                "different-person",
                Content.model_validate({"format": "spoc-content/1", "persons": [person]}),
            )
        )
        others += 1
    return items  # fmt: skip


def run(n: int = 200, *, say: Callable[[str], None] = print) -> CrosscheckBench:
    """Build the corpus, post it through intake, cross-check it, and judge the links (see the module doc)."""
    items = corpus(n)
    with tempfile.TemporaryDirectory(prefix="spoc-crosscheck-") as tmp, database() as name:
        settings = Settings(
            database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            broker_url="memory://",
            master_key=SecretStr(MasterKey.generate_secret()),
            data_dir=Path(tmp),
            environment="test",
        )
        prepare(settings)
        from broker.app import create_app

        app = create_app(settings)
        with TestClient(app) as http:
            clients = {
                s: AgencyClient("http://testserver", credentials(Path(tmp), s), transport=http._transport)
                for s in SENDERS
            }
            by_message: dict[str, Item] = {}
            say(f"posting {len(items)} messages")
            pending: dict[str, list[tuple[dict[str, Any], Item]]] = {s: [] for s in SENDERS}
            for index, item in enumerate(items):
                sender = SENDERS[index % len(SENDERS)]
                envelope = clients[sender].build(
                    payload=item.content, destination_country=DESTINATION, category="migrant-smuggling"
                )
                pending[sender].append((envelope, item))
            for sender, batch in pending.items():
                for start in range(0, len(batch), 100):
                    chunk = batch[start : start + 100]
                    answer = clients[sender].submit_batch([e for e, _ in chunk])
                    for (envelope, item), result in zip(chunk, answer["results"], strict=True):
                        if result.get("receipt") is None:
                            raise RuntimeError(f"intake refused a corpus message: {result.get('problem')}")
                        by_message[envelope["header"]["message_id"]] = item
            master: MasterKey = app.state.master_key
            statements = 0

            def count(*_: Any) -> None:
                nonlocal statements
                statements += 1

            say("cross-checking")
            event.listen(app.state.engine, "before_cursor_execute", count)
            batches = hashes = 0
            begun = time.perf_counter()
            while True:
                with unit_of_work(app.state.sessionmaker) as session:
                    done = run_batch(session, DatabaseKeyStore(session, master), master)
                if not done.scanned:
                    break
                batches += 1
                hashes += done.selectors
            elapsed = time.perf_counter() - begun
            event.remove(app.state.engine, "before_cursor_execute", count)
            with unit_of_work(app.state.sessionmaker) as session:
                links = session.execute(
                    select(CrosscheckLink.message_id, CrosscheckLink.linked_message_id)
                ).all()
    return _judge(items, by_message, [(a, b) for a, b in links], elapsed, hashes, statements, batches)


def _judge(
    items: list[Item],
    by_message: dict[str, Item],
    links: list[tuple[str, str]],
    elapsed: float,
    hashes: int,
    statements: int,
    batches: int,
) -> CrosscheckBench:
    counts: dict[int, int] = {}
    for item in items:
        counts[item.identity] = counts.get(item.identity, 0) + 1
    expected = sum(c * (c - 1) // 2 for c in counts.values())
    false = [
        (by_message[a], by_message[b]) for a, b in links if by_message[a].identity != by_message[b].identity
    ]
    linked = {by_message[a].identity for a, b in links if by_message[a].identity == by_message[b].identity}
    missed = [i for i in items if counts[i.identity] == 2 and i.identity not in linked]

    def who(item: Item) -> str:
        p = item.content.persons[0]
        return f"{p.given_name or ''} {p.family_name or ''} {p.full_name or ''} {p.year_of_birth}".strip()

    messages = len(by_message)
    return CrosscheckBench(
        identities=len(counts),
        messages=messages,
        expected=expected,
        found=len(linked),
        missed=len({i.identity for i in missed}),
        false=len(false),
        false_examples=[f"{who(a)} ~ {who(b)}" for a, b in false[:5]],
        missed_examples=sorted({f"{who(i)} ({i.variant})" for i in missed})[:5],
        ms_per_message=1000 * elapsed / max(1, messages),
        hashes_per_message=hashes / max(1, messages),
        statements_per_batch=statements / max(1, batches),
    )
