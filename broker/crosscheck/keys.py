"""The keyed hash of a selector: HMAC-SHA256 under a per-contact-point secret that only this node holds.

Why keyed, not a plain hash: the values are names, phone numbers and document numbers, a small space to
guess from. A plain SHA-256 of ``jovanovic marko|1985`` can be found by hashing a list of names and years
in seconds, so a stolen database copy would answer "does it hold Marko Jovanović?". Under HMAC with a
32-byte random secret that copy answers nothing without the secret, which is sealed under the node's
master key (``MasterKey.encrypt(secret, context="crosscheck:<contact point>")``, like the contact
point's private keys in ``broker.keys``), so it is as safe as those keys and no safer: whoever holds the
master key (the node) can test guesses, which is exactly the cross-check.

What a keyed hash can and cannot match: only *equal* inputs. Everything that makes two spellings equal
happens before hashing (``broker.crosscheck.normalise``: script, diacritics, order, formatting, and
the deletion neighbourhood for one-letter slips). Two names two letters apart, a nickname, a missing
middle name, a date of birth entered with day and month swapped: none of these can match, and no later
query can find them, because nothing but the digests is kept.

One secret per contact point (not per node): two contact points on one node (a hub) then hold hash
spaces that cannot be joined with each other, so a link is only ever made inside one contact point's
case file. Digests are compared by the database for equality only; no attacker-chosen value meets the
secret in a comparison, so no constant-time compare is involved.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.crosscheck.models import CrosscheckSecret
from broker.crypto import AtRestCipher
from broker.db import utcnow

__all__ = ["SelectorHasher", "hasher_for"]

SECRET_BYTES: Final = 32


def _context(contact_point_id: str) -> str:
    return f"crosscheck:{contact_point_id}"


class SelectorHasher:
    """HMAC-SHA256 of ``kind`` and ``value`` under one contact point's secret; ``repr`` shows no secret."""

    __slots__ = ("_secret", "contact_point_id")

    def __init__(self, contact_point_id: str, secret: bytes) -> None:
        if len(secret) != SECRET_BYTES:
            raise ValueError("a selector secret is 32 bytes")
        self.contact_point_id = contact_point_id
        self._secret = secret

    def __repr__(self) -> str:
        return f"SelectorHasher({self.contact_point_id!r})"

    def digest(self, kind: str, value: str) -> str:
        """Lower-case hex HMAC-SHA256 of ``kind NUL value`` (the kind is bound in: a plate never meets a
        document number that happens to be written alike)."""
        message = kind.encode() + b"\x00" + value.encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def hasher_for(session: Session, master: AtRestCipher, contact_point_id: str) -> SelectorHasher:
    """The contact point's hasher, its secret made (and sealed) on first use.

    Two workers making the first secret at once: the second INSERT fails on the primary key and its
    unit of work rolls back; the next batch finds the first worker's secret. Batches are serialised per
    node anyway (``broker.crosscheck.service``), so this does not happen in practice.
    """
    row = session.scalar(
        select(CrosscheckSecret).where(CrosscheckSecret.contact_point_id == contact_point_id)
    )
    if row is None:
        secret = os.urandom(SECRET_BYTES)
        session.add(
            CrosscheckSecret(
                contact_point_id=contact_point_id,
                sealed=master.encrypt(secret, context=_context(contact_point_id)),
                created_at=utcnow(),
            )
        )
        session.flush()
        return SelectorHasher(contact_point_id, secret)
    return SelectorHasher(contact_point_id, master.decrypt(row.sealed, context=_context(contact_point_id)))
