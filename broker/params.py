"""Types of route parameters, shared by every route so each is bounded in one place.

An ``int`` in a path or query string is otherwise unbounded in Python, and a value past 64 bits reaches
the database driver, which cannot send it (PostgreSQL's widest integer is ``bigint``): a 500 instead of
the caller's mistake. Every integer route parameter is therefore an :data:`Int64` (``tests/hostile``
walks the routes and checks it), refused with 400 problem+json outside PostgreSQL's ``bigint`` range.
Routes add their own narrower limits on top: ``Annotated[Int64, Query(ge=0)]``.
"""

from __future__ import annotations

from typing import Annotated, Final

from annotated_types import Interval

__all__ = ["INT64_MAX", "INT64_MIN", "Int64"]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

Int64 = Annotated[int, Interval(ge=INT64_MIN, le=INT64_MAX)]
"""An integer a ``bigint`` column can hold: ids, offsets, cursors, tree sizes."""
