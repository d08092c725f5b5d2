"""A region of separate nodes on one machine: what ``spoc run`` (``make run``) and ``spoc demo`` start.

Each country's contact point is its own node (DESIGN §8): its own folder under the region's folder, with its
own SQLite database, embedded queue, master key, agencies' credentials and demo accounts, and its own API
and worker processes on its own port. No node's folder holds another country's private keys. The region's
governance key (what signs the regional directory) is made into a ``governance/`` folder beside the nodes,
outside every node: on one machine it stands for the offline key that no node holds. Layout::

    ROOT/governance/gov.key.json      the governance private key (0600), never read by a node
    ROOT/governance/anchor.jwks.json  its public key: the anchor every node is configured with
    ROOT/governance/region.json       the signed directory last installed on the nodes
    ROOT/xk/ ROOT/al/ ...             one node each: spoc.db, queue.db, master.key, anchor, logs

Started again, the folders are reused: nothing is seeded twice, and a new directory version is signed and
installed only when what it would say changed (a node moved to another port, or a node's keys rotated) or
it is about to expire. A node's transport and witness keys are made on first use (``node_entry``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy.orm import Session

from broker.audit.service import Actor
from broker.config import Settings
from broker.crypto import KeyPair, MasterKey
from broker.crypto.directory import sign_directory
from broker.db import make_engine, make_sessionmaker, unit_of_work, utcnow
from broker.directory.seed import SeedResult, demo_agreements
from broker.errors import InvalidInput
from broker.files import private_dir, write_private
from broker.keys.service import DatabaseKeyStore
from broker.launcher import System, check_port, prepare, spawn, stop_all, wait_ready
from broker.region.service import current, install, load_anchor
from broker.region.sync import node_entry
from schemas.codelists import codes

__all__ = [
    "REGION",
    "REGION_COUNTRIES",
    "LocalNode",
    "LocalRegion",
    "agreements",
    "plan",
    "prepare_region",
    "start_region",
]

REGION: Final = "western-balkans"
REGION_COUNTRIES: Final = ("XK", "AL", "MK", "BA")
"""The nodes of the embedded region: Kosovo* first (it asks in the demo); BA–XK have no agreement."""
VALIDITY: Final = timedelta(days=30)
RESIGN_BEFORE: Final = timedelta(days=7)
"""A directory that expires within this is replaced by a new version at the next start."""
OPERATOR: Final = Actor("spoc-run", "admin")
EMBEDDED_ONLY: Final = ("SPOC_DATABASE_URL", "SPOC_BROKER_URL", "SPOC_MASTER_KEY")


@dataclass(frozen=True)
class LocalNode:
    """One node of the local region: its country, id, port and folder."""

    country: str
    host: str
    port: int
    folder: Path

    @property
    def node_id(self) -> str:
        return self.country.lower()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def anchor(self) -> Path:
        return self.folder / "anchor.jwks.json"

    def settings(self) -> Settings:
        """The node's settings: everything in its own folder, whatever the environment says."""
        folder = self.folder.resolve()
        return Settings(
            data_dir=folder,
            database_url=f"sqlite:///{folder / 'spoc.db'}",
            broker_url=f"sqla+sqlite:///{folder / 'queue.db'}",
            master_key=None,
            region_anchor=self.anchor.resolve(),
        )

    def env(self) -> dict[str, str]:
        """The SPOC_* variables of the node's processes (over the caller's environment)."""
        settings = self.settings()
        return {
            "SPOC_DATA_DIR": str(settings.data_dir),
            "SPOC_DATABASE_URL": settings.database_url,
            "SPOC_BROKER_URL": settings.broker_url,
            "SPOC_REGION_ANCHOR": str(self.anchor.resolve()),
        }


@dataclass
class LocalRegion:
    """The nodes of a local region, their running processes, and what the start did."""

    root: Path
    nodes: list[LocalNode]
    seeded: dict[str, SeedResult]
    directory_version: int
    directory_changed: bool
    systems: list[System]

    @property
    def governance(self) -> Path:
        return self.root / "governance"

    def urls(self) -> dict[str, str]:
        return {n.country: n.url for n in self.nodes}

    def folders(self) -> dict[str, Path]:
        return {n.country: n.folder for n in self.nodes}

    def alive(self) -> bool:
        return all(s.alive() for s in self.systems)

    def stop(self) -> None:
        stop_all(self.systems)


def plan(
    root: Path, *, host: str = "127.0.0.1", port: int = 8000, countries: Sequence[str] = REGION_COUNTRIES
) -> list[LocalNode]:
    """The nodes, on ports PORT, PORT+1, … in the order of ``countries``, each in ``ROOT/<cc>``."""
    return [LocalNode(cc, host, port + i, root / cc.lower()) for i, cc in enumerate(countries)]


def check_embedded(environ: dict[str, str] | None = None) -> None:
    """The local region runs on embedded defaults only: a database, queue or master key named in the
    environment would be one for every node, which is exactly what a region of nodes must not share."""
    found = [k for k in EMBEDDED_ONLY if (environ if environ is not None else os.environ).get(k)]
    if found:
        raise InvalidInput(
            f"{', '.join(found)} set: the local region gives each node its own database, queue and master "
            "key in its own folder; unset them, or run one node with `spoc run --country CC`"
        )


def governance_key(folder: Path) -> KeyPair:
    """The governance key in ``folder`` (made on first use, 0600), and its public anchor beside it."""
    private_dir(folder)
    key_path, anchor_path = folder / "gov.key.json", folder / "anchor.jwks.json"
    if key_path.exists():
        key = KeyPair.from_private_jwk(key_path.read_text())
    else:
        key = KeyPair.generate("sig")
        write_private(key_path, key.private_jwk_json())
    if not anchor_path.exists():
        write_private(anchor_path, json.dumps({"keys": [key.public.jwk]}, indent=2) + "\n")
    return key


def agreements(countries: Sequence[str]) -> list[dict[str, Any]]:
    categories = sorted(codes("categories"))
    return [
        {
            "reference": f"DEMO/{a}-{b}/police-cooperation",
            "countries": [a, b],
            "categories": categories,
            "max_classification": ceiling,
            "valid_from": "2024-01-01T00:00:00Z",
        }
        for a, b, ceiling in demo_agreements(countries)
    ]


def _z(at: datetime) -> str:
    return at.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _with_node(node: LocalNode, work: Any) -> Any:
    engine = make_engine(node.settings())
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            return work(session, node.settings())
    finally:
        engine.dispose()


def _entry(session: Session, settings: Settings, node: LocalNode) -> dict[str, Any]:
    master = MasterKey.from_secret(settings.master_key_secret())
    return node_entry(
        session, DatabaseKeyStore(session, master), master, node_id=node.node_id, base_url=node.url
    )


def prepare_region(root: Path, nodes: Sequence[LocalNode]) -> tuple[dict[str, SeedResult], int, bool]:
    """Seed each node's own folder (once), make the governance key (once), and sign and install a
    directory listing every node on every node when it would say something new.

    Returns what was seeded now (by country), the installed directory version, and whether it is new."""
    private_dir(root)
    seeded: dict[str, SeedResult] = {}
    for node in nodes:
        result = prepare(node.settings(), countries=[node.country])
        if result is not None:
            seeded[node.country] = result
    key = governance_key(root / "governance")
    for node in nodes:
        shutil.copyfile(root / "governance" / "anchor.jwks.json", node.anchor)  # public: each node its copy
        os.chmod(node.anchor, 0o600)
    entries = [_with_node(n, lambda s, _settings, n=n: _entry(s, _settings, n)) for n in nodes]
    body = {"region": REGION, "nodes": entries, "agreements": agreements([n.country for n in nodes])}
    installed = [_with_node(n, lambda s, _settings: current(s)) for n in nodes]
    now = utcnow()
    same = all(
        c is not None
        and c.directory.valid_until - RESIGN_BEFORE > now
        and {k: c.signed["directory"][k] for k in body} == body
        for c in installed
    )
    versions = [c.directory.version for c in installed if c is not None]
    if same and len(set(versions)) == 1:
        return seeded, versions[0], False
    version = max(versions, default=0) + 1
    document = {**body, "version": version, "issued_at": _z(now), "valid_until": _z(now + VALIDITY)}
    document = {
        k: document[k] for k in ("region", "version", "issued_at", "valid_until", "nodes", "agreements")
    }
    signed = {"directory": document, "signature": sign_directory(document, key=key)}
    write_private(
        root / "governance" / "region.json", json.dumps(signed, indent=2, ensure_ascii=False) + "\n"
    )
    for node in nodes:
        _with_node(
            node,
            lambda s, settings: install(
                s, signed, anchor=load_anchor(settings.region_anchor), now=utcnow(), actor=OPERATOR
            ),
        )
    return seeded, version, True


def start_region(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    countries: Sequence[str] = REGION_COUNTRIES,
    log_to_folders: bool = True,
    worker_concurrency: int = 1,
) -> LocalRegion:
    """Prepare the region in ``root`` and start every node's API and worker; wait until all answer.

    Every port is checked before anything is created. Each node's processes write to ``api.log`` and
    ``worker.log`` in its folder (several nodes' output on one terminal would be unreadable)."""
    nodes = plan(root, host=host, port=port, countries=countries)
    for node in nodes:
        check_port(host, node.port)
    seeded, version, changed = prepare_region(root, nodes)
    systems: list[System] = []
    try:
        for node in nodes:
            systems.append(
                spawn(
                    host=host,
                    port=node.port,
                    data_dir=node.folder,
                    env=node.env(),
                    log_dir=node.folder if log_to_folders else None,
                    worker_concurrency=worker_concurrency,
                )
            )
        wait_ready(systems)
    except BaseException:
        stop_all(systems)
        raise
    return LocalRegion(root, nodes, seeded, version, changed, systems)
