"""Bare primitive rates for the benchmark's limits (the only place outside recipes that times hazmat calls).

These are the ceilings the recipes are compared with: Ed25519 sign/verify of a short message and
AES-256-GCM of 2 KB. A recipe far below its ceiling spends its time around the primitive (parsing,
canonicalisation, copies), which is where to optimise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def _rate(fn: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        count += 1
    return count / (time.perf_counter() - start)


def primitive_rates(seconds: float = 0.5) -> dict[str, float]:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    message = os.urandom(64)
    signature = key.sign(message)
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    nonce, payload = os.urandom(12), os.urandom(2048)
    sealed = aead.encrypt(nonce, payload, None)
    return {
        "ed25519_sign": _rate(lambda: key.sign(message), seconds),
        "ed25519_verify": _rate(lambda: public.verify(signature, message), seconds),
        "aes256gcm_open_2k": _rate(lambda: aead.decrypt(nonce, sealed, None), seconds),
    }
