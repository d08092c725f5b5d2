"""The hop between nodes: what a node POSTs to a peer's ``/v1/hop/messages`` (docs/region.md, "The hop").

The envelope exactly as the agency signed it, the origin contact point's custody countersignatures in order,
and that contact point's countersigned statement vouching for the agency's key. The request itself is signed
with RFC 9421 under the sending node's transport key (label ``spoc-node``); the answer is a transport receipt.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import Envelope
from schemas.primitives import CompactJWS

__all__ = ["HopReceipt", "HopRequest"]


class HopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    envelope: Envelope
    custody: list[CompactJWS] = Field(min_length=1, max_length=64)
    """The origin contact point's custody countersignatures, seq 1, 2, …; the last is its approval."""
    sender_key: CompactJWS
    """The origin contact point's ``sender-key`` statement: the agency's key, vouched for."""


class HopReceipt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    receipt: CompactJWS
    """``spoc-transport-receipt+jws`` by the receiving node's transport key: message_id, digest, from_node,
    to_node, received_at."""
