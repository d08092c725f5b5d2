"""C2SP signed notes: the text format of transparency-log checkpoints and their witness cosignatures.

A signed note (https://c2sp.org/signed-note) is UTF-8 text ending in a newline, a blank line, then one
line per signature: ``— <key name> <base64(4-byte key ID || signature)>``. Checkpoints
(https://c2sp.org/tlog-checkpoint) are notes whose text is ``origin``, ``tree size`` and ``base64 root``
lines. Using this format, and not a JSON invention, means existing transparency tooling (Go's
``golang.org/x/mod/sumdb/note``, ``transparency-dev/formats``, litewitness, sigsum tools) can read and
check spoc's checkpoints.

Two signature types are implemented, nothing else:

* ``0x01`` Ed25519 note signatures: Ed25519 (RFC 8032) over the note text. The log signs with this.
  Key ID = ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``.
* ``0x04`` timestamped Ed25519 cosignatures (https://c2sp.org/tlog-cosignature, ``cosignature/v1``):
  Ed25519 over ``"cosignature/v1\\ntime <t>\\n" || note text``; the signature bytes are
  ``key ID || u64 big-endian t || signature``. Witnesses sign with this: it is the format witnesses in
  the transparency ecosystem emit, it carries the time the witness vouched for the tree, and it is
  domain-separated from plain note signatures, so a witness's cosignature can never be replayed as the
  log's own signature.

Verification follows the spec's rules: signatures by unknown (name, key ID) pairs are ignored; a
signature by a known key must verify or the whole note is refused; a note with no verified signature is
refused. Every failure is one :class:`broker.errors.VerificationError` (opaque); malformed *key* input
(a bad verifier-key string) is :class:`broker.errors.InvalidInput`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.crypto._b64 import b64url_decode
from broker.crypto.keys import KeyPair, PublicKey
from broker.errors import InvalidInput, VerificationError

__all__ = [
    "COSIGNATURE_V1",
    "ED25519",
    "MAX_SIGNATURES",
    "NoteKey",
    "NoteSignature",
    "NoteSigner",
    "VerifiedNote",
    "add_signatures",
    "open_note",
    "sign_note",
    "split_note",
]

ED25519: Final = 0x01
"""Signature type of plain Ed25519 note signatures (the log's own signature on a checkpoint)."""
COSIGNATURE_V1: Final = 0x04
"""Signature type of ``cosignature/v1`` timestamped Ed25519 witness cosignatures."""
MAX_SIGNATURES: Final = 100
"""Signature lines accepted in one note (the spec asks verifiers for a limit of at least 16)."""

_DASH: Final = "\u2014 "
_TYPES: Final = frozenset({ED25519, COSIGNATURE_V1})
_COSIGN_HEADER: Final = "cosignature/v1\n"
_MAX_TIMESTAMP: Final = 2**63 - 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not base64") from exc
    if _b64(data) != text:  # one spelling per value: no missing padding, no stray bits
        raise ValueError("not canonical base64")
    return data


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name) or not name.isprintable():
        raise InvalidInput("a note key name must be non-empty, without spaces or '+'")


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise InvalidInput("note text must end with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise InvalidInput("note text must not contain control characters other than newline")


def _message(sig_type: int, text: str, timestamp: int | None) -> bytes:
    """The bytes an Ed25519 key signs for a note signature of ``sig_type``."""
    if sig_type == COSIGNATURE_V1:
        return f"{_COSIGN_HEADER}time {timestamp}\n{text}".encode()
    return text.encode()


@dataclass(frozen=True, slots=True)
class NoteKey:
    """A public note-verification key: name, signature type and 32-byte Ed25519 key.

    The key ID is derived, never given, so a (name, ID) pair names exactly one key and type. ``vkey``
    is the standard text form ``<name>+<hex key ID>+<base64(type || key)>`` that note tooling accepts.
    """

    name: str
    type: int
    public: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.type not in _TYPES:
            raise InvalidInput("only Ed25519 note keys (type 0x01) and cosignature/v1 keys (0x04) exist here")
        if len(self.public) != 32:
            raise InvalidInput("an Ed25519 public key is 32 bytes")
        try:
            Ed25519PublicKey.from_public_bytes(self.public)
        except ValueError:
            raise InvalidInput("not an Ed25519 public key") from None

    @property
    def key_id(self) -> bytes:
        """``SHA-256(name || 0x0A || type || public key)[:4]``, as both specs define it."""
        return hashlib.sha256(self.name.encode() + b"\n" + bytes([self.type]) + self.public).digest()[:4]

    @property
    def vkey(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([self.type]) + self.public)}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteKey:
        """Parse a verifier key string, checking that its key ID matches its name and key."""
        parts = vkey.strip().split("+", 2)  # the base64 key itself may contain "+"
        if len(parts) != 3 or len(parts[1]) != 8:
            raise InvalidInput("a verifier key reads <name>+<8 hex digits>+<base64 key>")
        name, hex_id, material = parts
        try:
            raw = _unb64(material)
            given_id = bytes.fromhex(hex_id)
        except ValueError:
            raise InvalidInput("a verifier key's ID must be hex and its key base64") from None
        if len(raw) != 33:
            raise InvalidInput("a verifier key holds a type byte and a 32-byte Ed25519 key")
        key = cls(name=name, type=raw[0], public=raw[1:])
        if key.key_id != given_id or hex_id != hex_id.lower():
            raise InvalidInput("the verifier key's ID does not match its name and key")
        return key

    @classmethod
    def from_public_key(cls, name: str, key: PublicKey, *, sig_type: int = ED25519) -> NoteKey:
        """The note key of one of the exchange's Ed25519 signing keys (``use == "sig"``)."""
        if key.use != "sig":
            raise InvalidInput("only signing keys can verify notes")
        return cls(name=name, type=sig_type, public=b64url_decode(key.x))

    def verify(self, text: str, signature: bytes) -> int | None:
        """Check one signature blob (``key ID || …``) over ``text``; return the cosignature time, if any.

        Raises VerificationError on any mismatch.
        """
        try:
            if signature[:4] != self.key_id:
                raise ValueError("key ID")
            timestamp: int | None = None
            body = signature[4:]
            if self.type == COSIGNATURE_V1:
                if len(body) != 8 + 64:
                    raise ValueError("length")
                (timestamp,) = struct.unpack(">Q", body[:8])
                if timestamp > _MAX_TIMESTAMP:
                    raise ValueError("timestamp")
                body = body[8:]
            elif len(body) != 64:
                raise ValueError("length")
            Ed25519PublicKey.from_public_bytes(self.public).verify(body, _message(self.type, text, timestamp))
        except (ValueError, InvalidSignature) as exc:
            raise VerificationError("note signature did not verify") from exc
        return timestamp


class NoteSigner:
    """A private Ed25519 key with a note key name and a signature type.

    Named constructors only; ``repr`` shows the name and the verifier key, never private material, and
    pickling is refused (same rules as :class:`broker.crypto.KeyPair`).
    """

    __slots__ = ("_private", "_verifier")

    def __init__(self, private: Ed25519PrivateKey, verifier: NoteKey) -> None:
        """Internal: use :meth:`from_keypair` or :meth:`from_private_bytes`."""
        self._private = private
        self._verifier = verifier

    @classmethod
    def from_keypair(cls, name: str, *, key: KeyPair, sig_type: int = ED25519) -> NoteSigner:
        """A signer over one of the broker's held Ed25519 keys (the log key, a contact point's key)."""
        if key.use != "sig":
            raise InvalidInput("only signing keys can sign notes")
        private = key.to_jwcrypto().get_op_key("sign")
        if not isinstance(private, Ed25519PrivateKey):  # pragma: no cover - KeyPair guarantees it
            raise InvalidInput("not an Ed25519 key")
        return cls._make(name, private, sig_type)

    @classmethod
    def from_private_bytes(cls, name: str, seed: bytes, *, sig_type: int = ED25519) -> NoteSigner:
        """A signer from a raw 32-byte Ed25519 private key (RFC 8032 seed), e.g. a published test vector."""
        try:
            private = Ed25519PrivateKey.from_private_bytes(seed)
        except ValueError:
            raise InvalidInput("an Ed25519 private key is 32 bytes") from None
        return cls._make(name, private, sig_type)

    @classmethod
    def _make(cls, name: str, private: Ed25519PrivateKey, sig_type: int) -> NoteSigner:
        public = private.public_key().public_bytes_raw()
        return cls(private, NoteKey(name=name, type=sig_type, public=public))

    @property
    def verifier(self) -> NoteKey:
        return self._verifier

    def signature_line(self, text: str, *, timestamp: int | None = None) -> str:
        """The signature line (with its newline) of this key over ``text``.

        ``timestamp`` (POSIX seconds) is required for, and only allowed with, cosignature keys.
        """
        _check_text(text)
        cosign = self._verifier.type == COSIGNATURE_V1
        if cosign != (timestamp is not None):
            raise InvalidInput("a timestamp is given exactly when signing a cosignature/v1")
        prefix = self._verifier.key_id
        if timestamp is not None:
            if not 0 <= timestamp <= _MAX_TIMESTAMP:
                raise InvalidInput("cosignature time out of range")
            prefix += struct.pack(">Q", timestamp)
        signature = self._private.sign(_message(self._verifier.type, text, timestamp))
        return f"{_DASH}{self._verifier.name} {_b64(prefix + signature)}\n"

    def __repr__(self) -> str:
        return f"NoteSigner({self._verifier.vkey!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("NoteSigner cannot be pickled")


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One parsed signature line: the key name and the raw ``key ID || signature`` bytes."""

    name: str
    blob: bytes

    @property
    def key_id(self) -> bytes:
        return self.blob[:4]

    @property
    def line(self) -> str:
        return f"{_DASH}{self.name} {_b64(self.blob)}\n"


@dataclass(frozen=True, slots=True)
class VerifiedNote:
    """A note whose signatures by known keys all verified: its text, and who signed (with cosign times)."""

    text: str
    signers: tuple[NoteKey, ...]
    times: tuple[int | None, ...]


def sign_note(text: str, *signers: NoteSigner, timestamp: int | None = None) -> str:
    """A complete signed note: ``text``, a blank line, one signature line per signer."""
    if not signers:
        raise InvalidInput("a note needs at least one signature")
    lines = [
        s.signature_line(text, timestamp=timestamp if s.verifier.type == COSIGNATURE_V1 else None)
        for s in signers
    ]
    return text + "\n" + "".join(lines)


def split_note(note: str) -> tuple[str, list[NoteSignature]]:
    """Split a note into its text and its (unverified) signature lines; VerificationError if malformed.

    The text ends at the *last* blank line, as the spec says: text may contain blank lines, signatures
    may not.
    """
    try:
        if not note.endswith("\n") or any(ord(c) < 0x20 and c != "\n" for c in note):
            raise ValueError("control characters or no final newline")
        cut = note.rfind("\n\n")
        if cut < 0:
            raise ValueError("no signatures")
        text, block = note[: cut + 1], note[cut + 2 :]
        signatures = []
        for line in block.splitlines():
            if not line.startswith(_DASH):
                raise ValueError("not a signature line")
            name, sep, blob = line[len(_DASH) :].partition(" ")
            if not sep or not name or " " in blob:
                raise ValueError("signature line shape")
            _check_name(name)
            raw = _unb64(blob)
            if len(raw) < 5:
                raise ValueError("short signature")
            signatures.append(NoteSignature(name, raw))
        if not signatures or len(signatures) > MAX_SIGNATURES:
            raise ValueError("signature count")
    except (ValueError, InvalidInput) as exc:
        raise VerificationError("malformed signed note") from exc
    return text, signatures


def add_signatures(note: str, lines: Iterable[str]) -> str:
    """Append signature lines (e.g. cosignatures) to a signed note, skipping exact duplicates."""
    text, existing = split_note(note)
    have = {s.line for s in existing}
    extra = [line if line.endswith("\n") else line + "\n" for line in lines]
    return text + "\n" + "".join(s.line for s in existing) + "".join(x for x in extra if x not in have)


def open_note(note: str, *, verifiers: Sequence[NoteKey]) -> VerifiedNote:
    """Verify ``note`` against known keys and return its text and the keys whose signatures verified.

    Unknown signatures are ignored; any known key's signature that fails refuses the whole note; a note
    with no verified known signature is refused.
    """
    text, signatures = split_note(note)
    known = {(k.name, k.key_id): k for k in verifiers}
    signers: list[NoteKey] = []
    times: list[int | None] = []
    for sig in signatures:
        key = known.get((sig.name, sig.key_id))
        if key is None:
            continue
        times.append(key.verify(text, sig.blob))
        signers.append(key)
    if not signers:
        raise VerificationError("no signature by a known key")
    return VerifiedNote(text, tuple(signers), tuple(times))
