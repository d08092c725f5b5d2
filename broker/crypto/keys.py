"""Keys of the exchange: Ed25519 for signatures, X25519 for key agreement, named by RFC 7638 thumbprints.

Only two kinds of key exist on purpose (DESIGN §4): an OKP ``Ed25519`` key with ``use`` ``"sig"`` and
``alg`` ``"EdDSA"`` (RFC 8037), and an OKP ``X25519`` key with ``use`` ``"enc"`` and ``alg``
``"ECDH-ES+A256KW"``. A key is never used for both: the curve decides the use, so a signing key cannot
be smuggled in as an encryption key or the other way round.

The ``kid`` of every key is its RFC 7638 SHA-256 thumbprint, *recomputed* here whenever a key is read.
A party cannot choose its own kid, so two parties cannot claim the same kid for different keys, and a kid
in a signature or a JWE recipient names exactly one key material. Public ``x`` values must be canonical
base64url for the same reason: one key, one spelling, one kid.

Errors: malformed or unsupported key input raises :class:`broker.errors.InvalidInput` (it comes from an
integrator uploading a key, who needs to know what is wrong with it). Messages never contain key material.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, NoReturn, get_args

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from jwcrypto import jwk as _jwk

from broker.crypto._b64 import b64url_decode, b64url_encode
from broker.errors import InvalidInput

__all__ = ["KeyPair", "KeyUse", "PublicKey", "thumbprint"]

KeyUse = Literal["sig", "enc"]
"""``"sig"``: Ed25519, signs envelopes and custody statements. ``"enc"``: X25519, receives content keys."""

#: curve → (use, JOSE alg). The only keys the exchange accepts.
_CURVES: Final[dict[str, tuple[KeyUse, str]]] = {
    "Ed25519": ("sig", "EdDSA"),
    "X25519": ("enc", "ECDH-ES+A256KW"),
}
_CURVE_FOR_USE: Final[dict[str, str]] = {use: crv for crv, (use, _alg) in _CURVES.items()}

#: JWK members that hold private material in any key type (RFC 7518 §6). A public key carrying one of
#: them is refused rather than stripped: whoever sent it has leaked a private key and should know.
_PRIVATE_MEMBERS: Final[frozenset[str]] = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint with SHA-256, base64url without padding.

    Computed by jwcrypto over the required members only (for OKP: ``crv``, ``kty``, ``x``), so ``kid``,
    ``use``, ``alg`` or private members do not change it. Any key type jwcrypto knows is accepted here
    (thumbprints of foreign keys are still useful in error reports); :class:`PublicKey` is the gate.
    """
    try:
        return str(_jwk.JWK(**dict(jwk)).thumbprint())
    except Exception as exc:
        raise InvalidInput("not a valid JWK: cannot compute its thumbprint") from exc


@functools.lru_cache(maxsize=4096)
def _okp_thumbprint(crv: str, x: str) -> str:
    """:func:`thumbprint` of an OKP public key, remembered: a pure function of public values, and computing it
    costs more than the signature check it serves (every hop names the same few keys again and again)."""
    return thumbprint({"kty": "OKP", "crv": crv, "x": x})


def _decode_point(value: Any, *, member: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(f"JWK member {member!r} must be a base64url string")
    try:
        raw = b64url_decode(value)
    except ValueError:
        raise InvalidInput(f"JWK member {member!r} is not canonical base64url") from None
    if len(raw) != 32:
        raise InvalidInput(f"JWK member {member!r} has the wrong length for its curve")
    return raw


def _check_curve(data: Mapping[str, Any]) -> tuple[str, KeyUse, str]:
    """Return (crv, use, alg) if ``data`` is one of our two key kinds, checking ``use``/``alg`` if given."""
    crv = data.get("crv")
    if data.get("kty") != "OKP" or crv not in _CURVES:
        raise InvalidInput("unsupported key: only OKP Ed25519 (sig) and OKP X25519 (enc) keys are accepted")
    use, alg = _CURVES[crv]
    if "use" in data and data["use"] != use:
        raise InvalidInput(f"an {crv} key must have use {use!r}")
    if "alg" in data and data["alg"] != alg:
        raise InvalidInput(f"an {crv} key must have alg {alg!r}")
    return crv, use, alg


def _check_kid(data: Mapping[str, Any], kid: str) -> None:
    if "kid" in data and data["kid"] != kid:
        raise InvalidInput("the JWK's kid is not its RFC 7638 thumbprint")


@functools.lru_cache(maxsize=4096)
def _jwcrypto_public(members: tuple[tuple[str, Any], ...]) -> _jwk.JWK:
    return _jwk.JWK(**dict(members))


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A validated public key of one party: what the directory stores and what ``resolve(kid)`` returns.

    Equality and hashing are by ``(kid, use)``; since the kid is the thumbprint, that is equality of key
    material. Construct with :meth:`from_jwk` (or :attr:`KeyPair.public`); direct construction is
    validated too, so an instance always satisfies ``kid == thumbprint(jwk)``.

    The key is stored as its ``x`` coordinate and :attr:`jwk` builds a fresh dict on every access: a
    caller mutating the dict it got cannot change the key behind a kid.
    """

    kid: str
    use: KeyUse
    x: str

    def __post_init__(self) -> None:
        if self.use not in get_args(KeyUse):
            raise InvalidInput("key use must be 'sig' or 'enc'")
        raw = _decode_point(self.x, member="x")
        try:
            if self.use == "sig":
                Ed25519PublicKey.from_public_bytes(raw)
            else:
                X25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise InvalidInput("JWK member 'x' is not a valid public key") from None
        if self.kid != _okp_thumbprint(_CURVE_FOR_USE[self.use], self.x):
            raise InvalidInput("the JWK's kid is not its RFC 7638 thumbprint")

    def _bare(self) -> dict[str, str]:
        return {"kty": "OKP", "crv": _CURVE_FOR_USE[self.use], "x": self.x}

    @property
    def alg(self) -> str:
        """The one JOSE algorithm this key may be used with."""
        return _CURVES[_CURVE_FOR_USE[self.use]][1]

    @property
    def jwk(self) -> dict[str, Any]:
        """The public JWK with ``kid``, ``use`` and ``alg`` set (a new dict each time)."""
        return {**self._bare(), "kid": self.kid, "use": self.use, "alg": self.alg}

    @classmethod
    def from_jwk(cls, data: Mapping[str, Any]) -> PublicKey:
        """Validate and normalise a public JWK received from outside.

        Accepts only OKP Ed25519 / X25519 public keys. Refuses any private member, a ``use`` or ``alg``
        that contradicts the curve, and a ``kid`` that is not the thumbprint. Other members
        (``key_ops``, ``x5c``, …) are dropped: the exchange derives everything it needs from the curve.
        """
        if not isinstance(data, Mapping):
            raise InvalidInput("a JWK must be a JSON object")
        members = tuple(sorted(data.items()))
        if all(isinstance(value, str) for _, value in members):
            return _public_from_members(members)  # the usual JWK: all members strings, validated once
        return _public_from_jwk(data)

    def to_jwcrypto(self) -> _jwk.JWK:
        """The jwcrypto object for this key; for use inside ``broker.crypto`` only.

        Shared: one object per key for the process (building it cost as much as the verification it
        serves), so it must never be changed; jwcrypto only reads a key it verifies or encrypts with."""
        return _jwcrypto_public(tuple(sorted(self.jwk.items())))


def _public_from_jwk(data: Mapping[str, Any]) -> PublicKey:
    if _PRIVATE_MEMBERS & data.keys():
        raise InvalidInput("a public key must not contain private key members")
    _crv, use, _alg = _check_curve(data)
    x = data.get("x")
    if not isinstance(x, str):
        raise InvalidInput("JWK member 'x' must be a base64url string")
    _decode_point(x, member="x")
    kid = _okp_thumbprint(_CURVE_FOR_USE[use], x)
    _check_kid(data, kid)
    return PublicKey(kid=kid, use=use, x=x)


@functools.lru_cache(maxsize=4096)
def _public_from_members(members: tuple[tuple[str, str], ...]) -> PublicKey:
    """:meth:`PublicKey.from_jwk` of a JWK whose members are all strings, remembered per process.

    The same directory and vouched keys arrive with every hop, receipt and event: parsing, point
    validation and two thumbprints cost more than the Ed25519 verification they serve. The result is
    immutable and a function of the members alone, and a JWK that is refused raises (lru_cache keeps no
    exception), so it is checked again each time it is offered."""
    return _public_from_jwk(dict(members))


class KeyPair:
    """A private key the broker (or an agency client) holds, with its public half.

    Private material leaves this object in exactly one way, :meth:`private_jwk_json`, so that every
    export is a visible call a reviewer can grep for (the broker passes its result straight to
    ``MasterKey.encrypt``). ``repr``/``str`` show only kid and use, and pickling is refused, so a key
    cannot end up in a log line, a traceback's locals dump, or a Celery/cache payload by accident.
    """

    __slots__ = ("_jwk", "_public")

    def __init__(self, private: _jwk.JWK, public: PublicKey) -> None:
        """Internal: use :meth:`generate` or :meth:`from_private_jwk`."""
        self._jwk = private
        self._public = public

    @classmethod
    def generate(cls, use: KeyUse) -> KeyPair:
        """A fresh random key: Ed25519 for ``"sig"``, X25519 for ``"enc"``."""
        if use == "sig":
            raw_d = Ed25519PrivateKey.generate().private_bytes_raw()
        elif use == "enc":
            raw_d = X25519PrivateKey.generate().private_bytes_raw()
        else:
            raise InvalidInput("key use must be 'sig' or 'enc'")
        return cls._from_private_bytes(use, raw_d)

    @classmethod
    def _from_private_bytes(cls, use: KeyUse, raw_d: bytes) -> KeyPair:
        # The public half is always *derived* from d, never taken from input: a JWK whose x does not
        # match its d would otherwise sign under one kid with another key.
        if use == "sig":
            raw_x = Ed25519PrivateKey.from_private_bytes(raw_d).public_key().public_bytes_raw()
        else:
            raw_x = X25519PrivateKey.from_private_bytes(raw_d).public_key().public_bytes_raw()
        x = b64url_encode(raw_x)
        crv = _CURVE_FOR_USE[use]
        public = PublicKey(kid=thumbprint({"kty": "OKP", "crv": crv, "x": x}), use=use, x=x)
        private = _jwk.JWK(**public.jwk, d=b64url_encode(raw_d))
        return cls(private, public)

    @classmethod
    def from_private_jwk(cls, data: Mapping[str, Any] | str) -> KeyPair:
        """Load a private JWK (a mapping or its JSON text), e.g. from :meth:`private_jwk_json`.

        The public ``x`` must be present and must match the private ``d``; ``kid``/``use``/``alg``, if
        present, must agree with the key.
        """
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                raise InvalidInput("a private JWK must be JSON") from None
        if not isinstance(data, Mapping):
            raise InvalidInput("a JWK must be a JSON object")
        _crv, use, _alg = _check_curve(data)
        if "d" not in data:
            raise InvalidInput("a private JWK must contain 'd'")
        raw_d = _decode_point(data["d"], member="d")
        key = cls._from_private_bytes(use, raw_d)
        if data.get("x") != key._public.x:
            raise InvalidInput("the JWK's public part does not match its private part")
        _check_kid(data, key.kid)
        return key

    @property
    def kid(self) -> str:
        """RFC 7638 thumbprint of the public key."""
        return self._public.kid

    @property
    def use(self) -> KeyUse:
        return self._public.use

    @property
    def public(self) -> PublicKey:
        return self._public

    def private_jwk_json(self) -> str:
        """The private JWK as JSON text (with ``kid``, ``use``, ``alg``). The ONLY export of private material.

        Callers must encrypt the result before storing it (``MasterKey.encrypt(…, context=kid)``) and must
        never log it.
        """
        return str(self._jwk.export_private())

    def to_jwcrypto(self) -> _jwk.JWK:
        """The jwcrypto object for this key; for use inside ``broker.crypto`` only."""
        return self._jwk

    def __repr__(self) -> str:
        return f"KeyPair(kid={self.kid!r}, use={self.use!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyPair):
            return NotImplemented
        return self._public == other._public

    def __hash__(self) -> int:
        return hash(self._public)

    def __reduce__(self) -> NoReturn:
        raise TypeError("KeyPair cannot be pickled; export explicitly with private_jwk_json()")
