"""Reconciliation of hops between two nodes: each serves its ledger, an auditor compares (DESIGN §8).

``GET /v1/hop/ledger`` serves this node's ledger of hops with the **calling peer node** (authenticated by its
RFC 9421 ``spoc-node`` transport signature, exactly as ``POST /v1/hop/messages``): a node may read what its
peer says about their common border, never about the peer's other borders. ``GET /v1/hop/ledger/{peer}``
serves the same ledger to this node's own **auditors** (regional, or the national auditor of the one country
a national node serves); it is what an auditor exports for offline reconciliation. Both take ``since`` and
``until`` (RFC 3339), and both are audit entries (``audit:exported``).

``POST /v1/hop/reconcile`` (an auditor) and ``spoc region reconcile --peer ID`` (the operator) build this
node's ledger, fetch the peer's, compare them (``broker.hop.ledger.compare``) and record the run; findings
raise an alert for the node's auditors. The ledgers are read with a margin around the period so that hops
crossing its boundary are not false alarms. Nothing here trusts the peer: its ledger is checked against the
peer's log key and transport keys from the governance-signed directories this node installed.

The peer is fetched with no transaction open: the first unit of work (sequencing the log, signing a
checkpoint if needed, building this node's ledger and the signed request) commits before the call.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

import httpx
from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broker.audit.actions import AuditAction
from broker.audit.alerts import raise_alert
from broker.audit.service import Actor, record
from broker.config import Settings
from broker.crypto import MasterKey, digest
from broker.crypto.httpsig import NODE_LABEL, sign_request
from broker.db import unit_of_work, utcnow
from broker.deps import Auditor, DbSession, Keys, Principal, SettingsDep
from broker.errors import InvalidInput, NotFound, NotPermitted, SpocError
from broker.hop.api import CurrentPeer
from broker.hop.ledger import Keyring, build_ledger, compare, stamp
from broker.hop.service import live_directory, problem_reason, this_node
from broker.keys.service import DatabaseKeyStore
from broker.region.models import InstalledDirectory
from broker.region.sync import TRANSPORT_PARTY
from schemas.region import DirectoryNode, SignedDirectory

__all__ = [
    "DEFAULT_PERIOD",
    "LEDGER_PATH",
    "MARGIN",
    "PeerUnreachable",
    "Prepared",
    "conclude",
    "export_ledger",
    "fetch",
    "installed_keyring",
    "period",
    "prepare",
    "record_failure",
    "router",
]

LEDGER_PATH: Final = "/v1/hop/ledger"
MARGIN: Final = timedelta(hours=1)
"""How far beyond the period both ledgers are read, so that a counterpart just across the boundary is found."""
DEFAULT_PERIOD: Final = timedelta(days=7)
LONGEST_PERIOD: Final = timedelta(days=366)
RECONCILED: Final = AuditAction.HOP_RECONCILED

router = APIRouter(tags=["hop"])


class PeerUnreachable(SpocError):
    """The peer node did not serve its ledger (down, refusing, or not a ledger): reconcile again later."""

    status = 502
    slug = "peer-unreachable"
    title = "The peer node did not serve its ledger"


def period(since: datetime | None, until: datetime | None, *, now: datetime) -> tuple[datetime, datetime]:
    """The period asked for: by default the last seven days; aware times, ``since`` < ``until``, <= 366 days."""
    end = until or now
    start = since or end - DEFAULT_PERIOD
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("since and until need a time zone (e.g. 2026-12-01T00:00:00Z)")
    if not start < end or end - start > LONGEST_PERIOD:
        raise InvalidInput("since must be before until, at most 366 days apart")
    return start, end


def installed_keyring(session: Session) -> Keyring:
    """Transport and log keys of every directory this node ever installed (keys rotate; receipts and
    checkpoints signed by a key that a later directory dropped still verify under the one that listed it)."""
    signed = session.scalars(select(InstalledDirectory.signed).order_by(InstalledDirectory.version)).all()
    return Keyring.of(SignedDirectory.model_validate(s).directory for s in signed)


def _pair(session: Session, peer_id: str) -> tuple[dict[str, Any], DirectoryNode, DirectoryNode]:
    installed = live_directory(session)
    me = this_node(session, installed.directory)
    peer = installed.directory.node(peer_id)
    if peer is None or peer.node_id == me.node_id:
        raise NotFound(f"{peer_id!r} is not another node of the regional directory")
    return installed.signed, me, peer


def _ledger(
    session: Session, keys: DatabaseKeyStore, peer_id: str, since: datetime, until: datetime
) -> tuple[dict[str, Any], DirectoryNode, DirectoryNode]:
    signed, me, peer = _pair(session, peer_id)
    ledger = build_ledger(
        session,
        keys,
        signed_directory=signed,
        me=me,
        peer=peer,
        since=since - MARGIN,
        until=until + MARGIN,
        now=utcnow(),
    )
    return ledger, me, peer


@dataclass(frozen=True)
class Prepared:
    """The first step of a run: this node's ledger, and the signed request for the peer's."""

    me: DirectoryNode
    peer: DirectoryNode
    since: datetime
    until: datetime
    mine: dict[str, Any]
    url: str
    headers: dict[str, str]
    keys: Keyring


def prepare(
    session: Session, keys: DatabaseKeyStore, *, peer_id: str, since: datetime, until: datetime
) -> Prepared:
    """Build this node's ledger with ``peer_id`` and sign the GET of the peer's; flushes, the caller commits."""
    mine, me, peer = _ledger(session, keys, peer_id, since, until)
    query = urllib.parse.urlencode({"since": stamp(since - MARGIN), "until": stamp(until + MARGIN)})
    url = f"{peer.base_url.rstrip('/')}{LEDGER_PATH}?{query}"
    headers: dict[str, str] = {"accept": "application/json"}
    sign_request("GET", url, headers, b"", key=keys.signing_key(TRANSPORT_PARTY), label=NODE_LABEL)
    return Prepared(me, peer, since, until, mine, url, headers, installed_keyring(session))


def fetch(prepared: Prepared, *, client: httpx.Client) -> dict[str, Any]:
    """The peer's ledger with this node (no transaction open). PeerUnreachable says why not."""
    name = prepared.peer.node_id
    try:
        answer = client.get(prepared.url, headers=prepared.headers)
    except httpx.HTTPError as exc:
        raise PeerUnreachable(f"{type(exc).__name__} reaching node {name}") from None
    if answer.status_code != 200:
        reason = problem_reason(answer)
        raise PeerUnreachable(
            f"node {name} answered {answer.status_code}" + (f" ({reason})" if reason else "")
        )
    try:
        document = answer.json()
    except ValueError:
        raise PeerUnreachable(f"node {name} did not answer with JSON") from None
    if (
        not isinstance(document, dict)
        or document.get("node") != name
        or document.get("peer") != prepared.me.node_id
    ):
        raise PeerUnreachable(f"node {name} did not answer with its ledger with {prepared.me.node_id}")
    return document


def _countries(*nodes: DirectoryNode) -> list[str]:
    return sorted({c for n in nodes for c in n.countries})


def conclude(session: Session, prepared: Prepared, theirs: dict[str, Any], *, actor: Actor) -> dict[str, Any]:
    """Compare, record the run (``hop:reconciled``) and, on any finding, raise an alert; the report."""
    report = compare(prepared.mine, theirs, since=prepared.since, until=prepared.until, keys=prepared.keys)
    findings = {
        k: len(v) for k, v in report.items() if isinstance(v, list) and k not in ("nodes", "unsettled")
    }
    fingerprint = digest({k: report[k] for k in findings})
    record(
        session,
        actor=actor,
        action=RECONCILED,
        object_type="node",
        object_id=prepared.peer.node_id,
        countries=_countries(prepared.me, prepared.peer),
        outcome="ok" if report["ok"] else "mismatch",
        details={
            "peer": prepared.peer.node_id,
            "since": report["since"],
            "until": report["until"],
            "counts": report["counts"],
            "findings": findings,
            "unsettled": len(report["unsettled"]),
            "report_digest": fingerprint,
        },
    )
    if not report["ok"]:
        summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in findings.items() if n)
        alert = raise_alert(
            session,
            kind="hop-mismatch",
            reporter=f"reconcile {prepared.me.node_id}-{prepared.peer.node_id} {fingerprint[-12:]}",
            detail=f"hops between {prepared.me.node_id} and {prepared.peer.node_id} from {report['since']} to "
            f"{report['until']} do not reconcile: {summary}",
        )
        report["alert"] = alert.id
    session.flush()
    return report


def record_failure(session: Session, *, peer_id: str, exc: SpocError, actor: Actor) -> None:
    """A run that could not compare (the peer did not answer, no directory) is recorded too."""
    record(
        session,
        actor=actor,
        action=RECONCILED,
        object_type="node",
        object_id=peer_id[:64],
        outcome="failed",
        details={
            "peer": peer_id[:64],
            "error": type(exc).__name__,
            "reason": exc.extra.get("reason"),
            "detail": exc.detail[:300],
        },
    )


def reconcile_with(
    factory: sessionmaker[Session],
    master: MasterKey,
    client: httpx.Client,
    *,
    peer_id: str,
    since: datetime,
    until: datetime,
    actor: Actor,
) -> dict[str, Any]:
    """One online run outside a request (the CLI, the beat task): three short transactions, none held open
    across the peer's answer; a run that cannot compare is recorded (``record_failure``) and re-raised."""
    try:
        with unit_of_work(factory) as session:
            prepared = prepare(
                session, DatabaseKeyStore(session, master), peer_id=peer_id, since=since, until=until
            )
        theirs = fetch(prepared, client=client)
    except SpocError as exc:
        with unit_of_work(factory) as session:
            record_failure(session, peer_id=peer_id, exc=exc, actor=actor)
        raise
    with unit_of_work(factory) as session:
        return conclude(session, prepared, theirs, actor=actor)


def reconcile_all(
    factory: sessionmaker[Session], master: MasterKey, client: httpx.Client, *, actor: Actor
) -> dict[str, str]:
    """The scheduled run: this node's hops with every other node of the installed directory over the default
    period (the last 7 days), each peer alone (one unreachable peer does not stop the others). Per peer:
    ``reconciled``, ``mismatch`` (an alert was raised) or ``failed: <reason>`` (recorded in the log)."""
    with unit_of_work(factory) as session:
        directory = live_directory(session).directory
        me = this_node(session, directory).node_id
    since, until = period(None, None, now=utcnow())
    outcomes: dict[str, str] = {}
    for node in directory.nodes:
        if node.node_id == me:
            continue
        try:
            report = reconcile_with(
                factory, master, client, peer_id=node.node_id, since=since, until=until, actor=actor
            )
        except SpocError as exc:
            outcomes[node.node_id] = f"failed: {exc.extra.get('reason') or type(exc).__name__}"
            continue
        outcomes[node.node_id] = "reconciled" if report["ok"] else "mismatch"
    return outcomes


def peer_client(settings: Settings) -> httpx.Client:
    """A client for one call to a peer: its URL comes from the signed directory; timeouts, no proxy, no redirect."""
    return httpx.Client(
        timeout=httpx.Timeout(settings.push_timeout_seconds, connect=settings.push_connect_timeout_seconds),
        trust_env=False,
        follow_redirects=False,
    )


# --- HTTP -------------------------------------------------------------------------------------------------


def _exported(
    session: Session, ledger: dict[str, Any], *, actor: Actor, me: DirectoryNode, peer: DirectoryNode
) -> None:
    record(
        session,
        actor=actor,
        action=AuditAction.AUDIT_EXPORTED,
        object_type="hop-ledger",
        object_id=peer.node_id,
        countries=_countries(me, peer),
        details={"since": ledger["since"], "until": ledger["until"], "rows": len(ledger["rows"])},
    )


def _auditor_may_see(auditor: Principal, me: DirectoryNode) -> None:
    """A regional auditor (or an admin) sees every border of this node; a national auditor only those of a
    national node of their own country (on a hub the ledger would show other countries' borders)."""
    country = auditor.user.country
    if auditor.user.role == "auditor" and country is not None and me.countries != {country}:
        raise NotPermitted(
            "this node's ledger is for regional auditors and the auditors of the country it serves"
        )


Since = Annotated[datetime | None, Query(description="RFC 3339; default: until minus 7 days")]
Until = Annotated[datetime | None, Query(description="RFC 3339; default: now")]


@router.get(LEDGER_PATH, operation_id="hop_ledger_for_peer", responses={401: {}, 503: {}})
def ledger_for_peer(
    request: Request,
    session: DbSession,
    keys: Keys,
    peer: CurrentPeer,
    since: Since = None,
    until: Until = None,
) -> dict[str, Any]:
    """This node's ledger of hops with the calling node (RFC 9421 ``spoc-node`` signature), as it stands."""
    start, end = period(since, until, now=utcnow())
    me = this_node(session, peer.directory)
    signed = live_directory(session).signed
    ledger = build_ledger(
        session, keys, signed_directory=signed, me=me, peer=peer.node, since=start, until=end, now=utcnow()
    )
    _exported(session, ledger, actor=request.state.actor, me=me, peer=peer.node)
    return ledger


def export_ledger(
    session: Session, keys: DatabaseKeyStore, *, peer_id: str, since: datetime, until: datetime, actor: Actor
) -> dict[str, Any]:
    """This node's ledger with ``peer_id`` for an auditor, read with ``MARGIN`` either side of the period
    (as an online run reads both), so that two nodes' exports of one period reconcile offline; audited."""
    ledger, me, peer = _ledger(session, keys, peer_id, since, until)
    _exported(session, ledger, actor=actor, me=me, peer=peer)
    return ledger


@router.get(LEDGER_PATH + "/{peer_node}", operation_id="hop_ledger", responses={403: {}, 404: {}, 503: {}})
def ledger_for_auditor(
    request: Request,
    session: DbSession,
    keys: Keys,
    auditor: Auditor,
    peer_node: str,
    since: Since = None,
    until: Until = None,
) -> dict[str, Any]:
    """This node's ledger of hops with ``peer_node`` for one of its auditors, to reconcile offline (the period
    plus an hour either side)."""
    start, end = period(since, until, now=utcnow())
    _auditor_may_see(auditor, _pair(session, peer_node)[1])
    return export_ledger(
        session, keys, peer_id=peer_node, since=start, until=end, actor=auditor.actor(request)
    )


class ReconcileRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    peer: str = Field(max_length=32, description="The peer node's id in the regional directory.")
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None


@router.post(
    "/v1/hop/reconcile", operation_id="reconcile_hops", responses={403: {}, 404: {}, 502: {}, 503: {}}
)
def reconcile_hops(
    request: Request,
    session: DbSession,
    keys: Keys,
    settings: SettingsDep,
    auditor: Auditor,
    body: ReconcileRequest,
) -> dict[str, Any]:
    """Compare this node's ledger with the peer's for a period: what is missing on either side, digest
    mismatches, receipts that do not verify, rows their node's log does not back. Audited; findings alert."""
    actor = auditor.actor(request)
    start, end = period(body.since, body.until, now=utcnow())
    try:
        _auditor_may_see(auditor, _pair(session, body.peer)[1])
        prepared = prepare(session, keys, peer_id=body.peer, since=start, until=end)
        session.commit()  # the log sequenced and checkpointed; nothing held open across the call
        with peer_client(settings) as client:
            theirs = fetch(prepared, client=client)
    except SpocError as exc:
        if exc.denial:
            raise
        session.rollback()
        record_failure(session, peer_id=body.peer, exc=exc, actor=actor)
        session.commit()
        raise
    return conclude(session, prepared, theirs, actor=actor)
