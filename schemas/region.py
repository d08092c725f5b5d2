"""The regional directory: which nodes make up the region, their public keys, and the agreements.

One node per country (DESIGN §8): every country's contact point runs its own spoc node and holds its own
private keys. What the nodes must agree on — who the nodes are, where they answer, which keys speak for them
and which pairs of countries may exchange what — is this one document, signed by a regional *governance key*
that no node holds (an offline key, used with ``spoc region sign``). It plays the part of X-Road's signed
global configuration: every node installs it, refreshes it, and checks every hop against it.

Wire form (``SignedDirectory``)::

    {"directory": { ...RegionDirectory... },
     "signature": "<compact JWS, detached, typ spoc-directory+jws, over RFC 8785 canonical(directory)>"}

The signature is detached so that the document stays readable JSON that an operator can diff, and it is made
over the RFC 8785 canonical form so that any JOSE + JCS implementation can check it from these docs alone.

Rules a node applies on install (``broker.region.service``), stated here because they are part of the format:

* the signature verifies under a key of the node's *anchor* (the governance public keys it was configured
  with, out of band: the X-Road configuration anchor);
* ``issued_at <= now + skew`` and ``now < valid_until``: an expired directory is refused, and a node whose
  directory has expired stops accepting hops (it cannot know who is still a member);
* ``version`` never goes back: an older version is refused as stale; the same version must be the same
  document (two different documents of one version mean the governance key signed a fork).

Depends on nothing of spoc's but ``schemas``.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.codelists import Category, Classification, CountryCode
from schemas.primitives import DetachedJWS, Timestamp

__all__ = [
    "DIRECTORY_TYP",
    "DirectoryAgreement",
    "DirectoryContactPoint",
    "DirectoryNode",
    "RegionDirectory",
    "SignedDirectory",
]

DIRECTORY_TYP: Final = "spoc-directory+jws"
"""The JWS ``typ`` of a directory signature: a directory signature is never mistaken for any other token."""

NodeId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")]
PartyId = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}-[A-Z0-9][A-Z0-9-]{0,28}$")]
NoteVerifierKey = Annotated[
    str, StringConstraints(min_length=8, max_length=512, pattern=r"^[^\s+]+\+[0-9a-f]{8}\+")
]
"""A C2SP signed-note verifier key, ``<name>+<key id hex>+<base64 key>`` (https://c2sp.org/signed-note)."""
HttpUrl = Annotated[str, StringConstraints(max_length=300, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DirectoryContactPoint(_Strict):
    """A contact point hosted by a node, with the public keys agencies encrypt to and custody is checked with."""

    id: PartyId
    country: CountryCode
    name: str = Field(min_length=1, max_length=200)
    signing_keys: list[dict[str, Any]] = Field(min_length=1, max_length=4)
    """Ed25519 public JWKs that may countersign for this contact point (current first, then retiring ones)."""
    encryption_keys: list[dict[str, Any]] = Field(min_length=1, max_length=4)
    """X25519 public JWKs senders wrap content keys to (the first is the one to use)."""

    @model_validator(mode="after")
    def _named_for_its_country(self) -> Self:
        # A contact point's id names its country (AL-SPOC for AL): a directory entry can never take the id of
        # another country's party, and a node can tell at a glance whose keys an id stands for.
        if not self.id.startswith(f"{self.country}-"):
            raise ValueError(f"contact point {self.id} of {self.country} must be named {self.country}-…")
        return self


class DirectoryNode(_Strict):
    """One node: one deployment of spoc, usually one country's contact point (a hub may host several)."""

    node_id: NodeId
    base_url: HttpUrl
    contact_points: list[DirectoryContactPoint] = Field(min_length=1, max_length=16)
    transport_keys: list[dict[str, Any]] = Field(min_length=1, max_length=4)
    """Ed25519 public JWKs the node signs hops and transport receipts with (RFC 9421)."""
    log_key: NoteVerifierKey
    """The verifier key of the node's audit-log checkpoints (its name is the log's origin)."""
    witness_key: NoteVerifierKey
    """The verifier key of the node's cosignatures when it witnesses its peers' logs."""

    @property
    def countries(self) -> frozenset[str]:
        return frozenset(cp.country for cp in self.contact_points)


class DirectoryAgreement(_Strict):
    """A bilateral legal basis: which categories, up to which classification, while valid."""

    reference: str = Field(min_length=1, max_length=200)
    countries: tuple[CountryCode, CountryCode]
    categories: list[Category] = Field(min_length=1)
    max_classification: Classification
    valid_from: Timestamp
    valid_until: Timestamp | None = None

    @model_validator(mode="after")
    def _two_countries(self) -> Self:
        if self.countries[0] == self.countries[1]:
            raise ValueError("an agreement is between two different countries")
        return self


class RegionDirectory(_Strict):
    """The content of the regional directory (what the governance key signs)."""

    region: str = Field(min_length=1, max_length=100)
    version: int = Field(ge=1, le=2**53)
    issued_at: Timestamp
    valid_until: Timestamp
    nodes: list[DirectoryNode] = Field(min_length=1, max_length=64)
    agreements: list[DirectoryAgreement] = Field(default_factory=list, max_length=1024)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.valid_until <= self.issued_at:
            raise ValueError("valid_until must be after issued_at")
        node_ids = [n.node_id for n in self.nodes]
        if len(set(node_ids)) != len(node_ids):
            raise ValueError("node_id values must be unique")
        cps = [cp for n in self.nodes for cp in n.contact_points]
        if len({cp.id for cp in cps}) != len(cps):
            raise ValueError("a contact point is listed twice")
        if len({cp.country for cp in cps}) != len(cps):
            raise ValueError("a country has one contact point in the region")
        urls = [n.base_url.rstrip("/") for n in self.nodes]
        if len(set(urls)) != len(urls):
            raise ValueError("two nodes share a base_url")
        materials = [
            (str(k.get("crv")), str(k.get("x")))
            for n in self.nodes
            for k in [
                *n.transport_keys,
                *(j for cp in n.contact_points for j in (*cp.signing_keys, *cp.encryption_keys)),
            ]
        ]
        if len(set(materials)) != len(materials):
            raise ValueError("a key is listed twice (each key belongs to one party, in one place)")
        known = {cp.country for cp in cps}
        for agreement in self.agreements:
            missing = set(agreement.countries) - known
            if missing:
                raise ValueError(
                    f"agreement {agreement.reference} names a country with no node: {sorted(missing)}"
                )
        return self

    def node_for_country(self, country: str) -> DirectoryNode | None:
        return next((n for n in self.nodes if country in n.countries), None)

    def node(self, node_id: str) -> DirectoryNode | None:
        return next((n for n in self.nodes if n.node_id == node_id), None)


class SignedDirectory(_Strict):
    """The directory as distributed: the document and the governance key's detached JWS over it."""

    directory: RegionDirectory
    signature: DetachedJWS
