"""Who sees which contact point's statistics (docs/statistics.md, "Who sees what").

* a **supervisor** sees its own contact point's figures, and no other;
* a **national auditor** sees the figures of its country's contact point, if this node hosts it;
* a **regional auditor** sees the figures of every contact point this node hosts;
* an **officer** or an **admin** sees none (the route's role dependency refuses them: ``access:denied``).

A node's figures are of its own contact points only (DESIGN §8: no node sees another's messages); another
node's contact point is "not on this node" (its node publishes its own aggregates). A reader asking for a
contact point outside its scope is refused with :class:`StatsRefused`, which the edge records as
``stats:refused`` naming what was asked.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.directory.models import ContactPoint
from broker.errors import InvalidInput, NotPermitted
from broker.keys.service import DatabaseKeyStore

__all__ = ["READERS", "StatsRefused", "hosted", "readable", "resolve"]

READERS: Final = ("supervisor", "auditor")


class StatsRefused(NotPermitted):
    """The reader may not see this contact point's figures (403); ``contact_point`` names what was asked."""

    def __init__(self, detail: str, *, asked: str) -> None:
        super().__init__(detail)
        self.asked = asked


def hosted(session: Session, keys: DatabaseKeyStore) -> list[ContactPoint]:
    """The contact points whose keys this node holds (one on a national node; all on a hub), by id."""
    points = session.scalars(select(ContactPoint).order_by(ContactPoint.id)).all()
    return [cp for cp in points if keys.holds(cp.id)]


def readable(session: Session, keys: DatabaseKeyStore, user: User) -> list[ContactPoint]:
    """The contact points whose figures ``user`` may see on this node (empty for the other roles)."""
    here = hosted(session, keys)
    if user.role == "supervisor":
        return [cp for cp in here if cp.id == user.contact_point_id]
    if user.role == "auditor":
        return here if user.country is None else [cp for cp in here if cp.country == user.country]
    return []


def resolve(session: Session, keys: DatabaseKeyStore, user: User, asked: str | None) -> ContactPoint:
    """The contact point whose figures ``user`` asked for (``asked``: its id or country code), or the only
    one it may see when it asked for none. StatsRefused outside its scope; InvalidInput when it must choose."""
    allowed = readable(session, keys, user)
    if asked is None:
        if len(allowed) == 1:
            return allowed[0]
        if not allowed:
            raise StatsRefused("no contact point of this node is in your scope", asked="")
        choices = ", ".join(cp.id for cp in allowed)
        raise InvalidInput(f"name the contact point with contact_point (one of {choices})")
    wanted = asked.strip().upper()
    for cp in allowed:
        if wanted in (cp.id.upper(), cp.country):
            return cp
    if user.role == "auditor" and user.country is None:
        raise StatsRefused(
            f"{asked[:40]} is not a contact point of this node; its own node publishes its figures",
            asked=asked[:40],
        )
    mine = ", ".join(cp.id for cp in allowed) or "none on this node"
    raise StatsRefused(f"your role sees the figures of {mine} only, not of {asked[:40]}", asked=asked[:40])
