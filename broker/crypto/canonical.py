"""RFC 8785 JSON Canonicalization Scheme: the one byte form of a JSON value that gets signed or hashed.

Signatures and digests in spoc are over *values*, not over whatever bytes arrived: two parties that
parse the same envelope must compute the same signing input, whatever their JSON library's key order,
whitespace or number formatting. RFC 8785 is the standard for that and exists in Java, .NET, Go and
JavaScript, so an integrator never has to reimplement our rules (DESIGN §4: nothing home-made).

The value domain is I-JSON (RFC 7493): strings, booleans, null, lists, string-keyed objects, integers
within ±(2**53 - 1) and finite floats. Anything else (a NaN, a 2**60 integer, a ``datetime``, a
non-string key, a lone surrogate) cannot be canonicalized and raises :class:`broker.errors.InvalidInput`
instead of being coerced, because a coerced value would be signed as something the sender did not send.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import orjson
import rfc8785

from broker.errors import InvalidInput

__all__ = ["canonical", "canonical_flat", "digest"]


def _plain(obj: Any) -> Any:
    # rfc8785 accepts only real dicts and lists; read-only mappings (MappingProxyType, pydantic's
    # frozen views) are the same JSON value, so they are converted rather than refused.
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


_SAFE_INT = 2**53 - 1


def _text_ok(text: str) -> bool:
    return text.isascii() or not any("\ud800" <= c <= "\udfff" for c in text)


def _key_ok(key: object) -> bool:
    return isinstance(key, str) and (key.isascii() or all(c < "\ud800" for c in key))


def _fast_ok(obj: Any, depth: int = 0) -> bool:
    """True if ``obj`` is in the subset where orjson's sorted-keys output *is* RFC 8785.

    That subset: no floats (ES6 number formatting differs from Python's repr), integers within
    +/-(2**53 - 1), strings without lone surrogates, and object keys whose UTF-16 order equals their code
    point order (all characters below U+D800, which covers every key spoc writes). String escaping already
    agrees: both escape the quote and the backslash, use the short escapes for backspace, form feed,
    newline, carriage return and tab, lowercase u00xx escapes for the other control characters, and write
    everything else as UTF-8. ``tests/broker/crypto/test_crypto_canonical_fast.py`` checks the agreement.
    """
    # Iterative, scalars checked in place: this runs for every envelope and every audit entry.
    pending: list[tuple[Any, int]] = [(obj, depth)]
    while pending:
        value, level = pending.pop()
        items: Iterable[Any]
        if isinstance(value, dict):
            if level > 64:
                return False
            for key in value:
                if not (type(key) is str and key.isascii()) and not _key_ok(key):
                    return False
            items = value.values()
        elif isinstance(value, list):
            if level > 64:
                return False
            items = value
        elif isinstance(value, str):
            if not _text_ok(value):
                return False
            continue
        elif not _scalar_ok(value):
            return False
        else:
            continue
        for item in items:
            if isinstance(item, str):
                if not _text_ok(item):
                    return False
            elif isinstance(item, dict | list):
                pending.append((item, level + 1))
            elif not _scalar_ok(item):
                return False
    return True


def _scalar_ok(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True
    return isinstance(value, int) and -_SAFE_INT <= value <= _SAFE_INT


def canonical(obj: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``obj`` (InvalidInput if it is not I-JSON).

    Envelopes and audit entries hold only strings, integers, booleans and nulls, for which orjson (C,
    keys sorted) produces the RFC 8785 bytes directly (see ``_fast_ok``); everything else (floats,
    exotic keys) goes through the reference implementation. Plain dicts and lists, the usual case, are
    checked and encoded as they are; other mappings and tuples are copied first.
    """
    if _fast_ok(obj):
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    plain = _plain(obj)
    if _fast_ok(plain):
        return orjson.dumps(plain, option=orjson.OPT_SORT_KEYS)
    try:
        return rfc8785.dumps(plain)
    except (rfc8785.CanonicalizationError, RecursionError) as exc:
        raise InvalidInput(f"value cannot be canonicalized as JSON (RFC 8785): {type(exc).__name__}") from exc


def canonical_flat(obj: Mapping[str, Any], *, nested: Collection[str]) -> bytes:
    """:func:`canonical` of a flat record, checked more cheaply: always the same bytes.

    Fields outside ``nested`` are expected to be None, ASCII strings or integers within +/-(2**53 - 1)
    (columns of a table, such as an audit entry's) and are checked in place; only the ``nested`` values
    are walked. A field of any other shape (a float, a non-ASCII string, a non-string key) falls back to
    :func:`canonical`, which decides it. The sequencer calls this for every audit entry it appends.
    """
    if type(obj) is not dict:
        return canonical(obj)
    for key, value in obj.items():
        if type(key) is not str or not key.isascii():
            return canonical(obj)
        if key in nested:
            if not _fast_ok(value, 1):
                return canonical(obj)
        elif not (
            value is None
            or (type(value) is str and value.isascii())
            or (type(value) is int and -_SAFE_INT <= value <= _SAFE_INT)
        ):
            return canonical(obj)
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def digest(obj: Any) -> str:
    """``"sha-256:"`` + lowercase hex SHA-256 of :func:`canonical` ``(obj)``.

    The algorithm is part of the value so that a stored digest says how to recompute it, and a later
    algorithm can coexist with old ones.
    """
    return "sha-256:" + hashlib.sha256(canonical(obj)).hexdigest()
