"""Encryption at rest of the private keys the broker holds (contact points, the log signer) — DESIGN §8.

:class:`AtRestCipher` is the seam: everything that stores a private key calls ``encrypt(…, context=kid)``
and ``decrypt(…, context=kid)`` and nothing else. :class:`MasterKey` implements it in-process from one
secret in the settings; a KMS or HSM implementation (AWS KMS ``Encrypt`` with an encryption context,
Vault transit, PKCS#11 ``C_WrapKey``) would implement the same two methods and be configured instead,
without any caller changing.

Construction of ``MasterKey``:

* the secret is base64url text of at least 32 random bytes (:meth:`MasterKey.generate_secret`);
* the AES-256 key is derived with HKDF-SHA256 (RFC 5869), ``info = b"spoc/keys-at-rest/v1"``, so the
  raw secret is never used directly as a key and the same secret could safely feed other, differently
  labelled, derivations later;
* each value is sealed with AES-256-GCM under a fresh random 96-bit nonce. Random nonces are safe up
  to ~2**32 encryptions per key; the broker wraps a handful of keys, many orders of magnitude fewer;
* the ``context`` (the kid of the key being stored) and the format version are the GCM additional
  data. A ciphertext copied onto another key's row therefore fails to decrypt instead of silently
  handing out the wrong private key.

Token format: ``"v1.<b64url nonce>.<b64url ciphertext‖tag>"``; the version prefix lets a future format
(or a KMS-produced blob) coexist in the same column during a migration.
"""

from __future__ import annotations

import os
from typing import Final, NoReturn, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.crypto._b64 import b64url_decode, b64url_encode
from broker.errors import VerificationError

__all__ = ["AtRestCipher", "MasterKey"]

_VERSION: Final = "v1"
_INFO: Final = b"spoc/keys-at-rest/v1"
_MIN_SECRET_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_CANNOT_DECRYPT: Final = "could not decrypt"


@runtime_checkable
class AtRestCipher(Protocol):
    """What the key store needs from whatever protects private keys at rest (master key, KMS, HSM)."""

    def encrypt(self, plaintext: bytes, *, context: str) -> str:
        """Seal ``plaintext`` bound to ``context``; return printable text for a database column."""
        ...

    def decrypt(self, token: str, *, context: str) -> bytes:
        """Open a token made by :meth:`encrypt` with the same ``context``, else VerificationError."""
        ...


def _aad(context: str) -> bytes:
    if not isinstance(context, str) or not context:
        raise ValueError("an at-rest context (e.g. the kid) is required")
    # The version is part of the AAD too, so a token can never be reinterpreted under another format.
    return f"{_VERSION}\x00{context}".encode()


class MasterKey:
    """The in-process :class:`AtRestCipher`: one AES-256-GCM key derived from a configured secret.

    ``repr`` never shows the key and pickling is refused, so it cannot leak into logs or task payloads.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        """Internal: use :meth:`from_secret`. ``key`` is the already-derived 32-byte AES key."""
        if len(key) != 32:
            raise ValueError("MasterKey needs a 32-byte derived key")
        self._aead = AESGCM(key)

    @staticmethod
    def generate_secret() -> str:
        """A new secret for ``from_secret``: 32 random bytes as base64url (put it in the settings/vault)."""
        return b64url_encode(os.urandom(_MIN_SECRET_BYTES))

    @classmethod
    def from_secret(cls, secret: str) -> MasterKey:
        """Derive the master key from base64url text of >= 32 random bytes (ValueError otherwise).

        Surrounding whitespace (a trailing newline from a secrets file) and ``=`` padding are tolerated.
        The error never repeats the secret.
        """
        if not isinstance(secret, str):
            raise ValueError("the master key secret must be base64url text")
        try:
            raw = b64url_decode(secret.strip().rstrip("="))
        except ValueError:
            raise ValueError("the master key secret is not valid base64url") from None
        if len(raw) < _MIN_SECRET_BYTES:
            raise ValueError(f"the master key secret must encode at least {_MIN_SECRET_BYTES} random bytes")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(raw)
        return cls(key)

    def encrypt(self, plaintext: bytes, *, context: str) -> str:
        """AES-256-GCM with a random nonce, ``context`` bound as additional data; ``"v1.<nonce>.<ct>"``."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, _aad(context))
        return f"{_VERSION}.{b64url_encode(nonce)}.{b64url_encode(sealed)}"

    def decrypt(self, token: str, *, context: str) -> bytes:
        """Inverse of :meth:`encrypt`; VerificationError if the token, the key or the context differ."""
        aad = _aad(context)
        try:
            version, nonce_text, sealed_text = token.split(".")
            if version != _VERSION:
                raise ValueError("unknown at-rest format")
            nonce, sealed = b64url_decode(nonce_text), b64url_decode(sealed_text)
            if len(nonce) != _NONCE_BYTES or len(sealed) < _TAG_BYTES:
                raise ValueError("truncated token")
            return self._aead.decrypt(nonce, sealed, aad)
        except (ValueError, AttributeError, InvalidTag) as exc:
            raise VerificationError(_CANNOT_DECRYPT) from exc

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("MasterKey cannot be pickled")
