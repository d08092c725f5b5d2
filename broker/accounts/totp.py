"""Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP, HMAC-SHA-1, 6 digits, 30 s steps).

The parameters are the ones every authenticator app uses by default, so the ``otpauth://`` URI of
:func:`provisioning_uri` (as a QR code or typed in) is all an officer needs. Verification accepts the
current step and one step either side (clock drift) and returns the step it matched, so the caller can
refuse a code that was already used (a code is good once).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from urllib.parse import quote

from broker.errors import NotAuthenticated

__all__ = ["DIGITS", "STEP_SECONDS", "code_at", "generate_secret", "provisioning_uri", "verify"]

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1


def generate_secret() -> str:
    """A new random secret: 160 bits (RFC 4226's recommendation), base32 without padding."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _key(secret: str) -> bytes:
    padded = secret.upper() + "=" * (-len(secret) % 8)
    return base64.b32decode(padded)


def code_at(secret: str, step: int) -> str:
    """The HOTP value of ``secret`` at counter ``step`` (RFC 4226 §5.3 dynamic truncation)."""
    mac = hmac.new(_key(secret), struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def verify(secret: str, code: str, *, now: float, last_step: int | None) -> int:
    """The time step ``code`` is valid for at ``now`` (unix seconds); NotAuthenticated if none is, or if
    it is not later than ``last_step`` (replay)."""
    current = int(now // STEP_SECONDS)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(code_at(secret, step), code):
            if last_step is not None and step <= last_step:
                break
            return step
    raise NotAuthenticated("invalid username, password or code, or the account is locked")


def provisioning_uri(secret: str, *, username: str, issuer: str = "spoc") -> str:
    """The ``otpauth://totp/...`` URI authenticator apps read."""
    label = quote(f"{issuer}:{username}")
    return (
        f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer)}&digits={DIGITS}&period={STEP_SECONDS}"
    )
