"""The regional directory's signature: a detached compact JWS by the governance key over the RFC 8785 form.

Detached, so the document stays plain JSON beside its signature (``schemas.region.SignedDirectory``);
over the canonical form of the document *as received*, so that a node never verifies a re-serialisation
and any JOSE + JCS implementation reaches the same bytes. ``typ`` ``spoc-directory+jws`` keeps a directory
signature from being passed off as an envelope, custody or receipt signature by the same key, and the
other way round.

The signer must be one of the *anchor* keys the verifying node was configured with; on any failure one
opaque :class:`broker.errors.VerificationError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from broker.crypto import _jws
from broker.crypto.canonical import canonical
from broker.crypto.keys import KeyPair, PublicKey
from broker.errors import NotFound
from schemas.region import DIRECTORY_TYP

__all__ = ["sign_directory", "verify_directory"]


def sign_directory(directory: Mapping[str, Any], *, key: KeyPair) -> str:
    """The governance key's detached signature over ``directory`` (a JSON object)."""
    return _jws.sign_compact(canonical(directory), key=key, typ=DIRECTORY_TYP, detached=True)


def verify_directory(directory: Mapping[str, Any], signature: str, *, anchor: Sequence[PublicKey]) -> str:
    """Check ``signature`` over ``directory`` against the anchor keys; return the kid that signed."""
    by_kid = {key.kid: key for key in anchor if key.use == "sig"}

    def resolve(kid: str) -> PublicKey:
        if kid not in by_kid:
            raise NotFound("not an anchor key")
        return by_kid[kid]

    kid, _ = _jws.verify_compact(
        signature, typ=DIRECTORY_TYP, resolve=resolve, detached_payload=canonical(directory)
    )
    return kid
