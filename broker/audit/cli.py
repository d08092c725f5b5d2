"""``spoc audit``: verify the log (in the database, or offline from a bundle), sign checkpoints, export bundles.

Exit codes, for scripts and cron jobs:

* 0 — verified / done;
* 1 — verification failed, or the log refused to sign (one line says where: the first bad position or
  entry, or the checkpoint that is inconsistent);
* 2 — usage error (a missing file, a malformed key or date): nothing was verified.

``spoc audit peers`` (a node of a region) sends the latest checkpoint to every peer node's witness, compares
the witnesses' views (gossip), and checks that every other node the directory lists cosigned it: exit 1
naming the nodes that did not, or an alert on a peer's log (``broker.witness.report``).

``spoc audit verify BUNDLE`` touches no database and no settings: an auditor can run it on a laptop that
has only this package and the bundle. Pin the log's key with ``--log-key`` (from ``GET /v1/audit/keys``,
the published key, or an earlier bundle you trust); without it the bundle's own key is used and its ID
printed, to compare by eye.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

audit_app = typer.Typer(no_args_is_help=True, help="The audit log: verify, checkpoint, export.")
OPERATOR = "cli-operator"


def _usage(message: str) -> NoReturn:
    typer.echo(f"spoc: {message}", err=True)
    raise typer.Exit(2)


def _failed(line: str) -> NoReturn:
    typer.echo(line)
    raise typer.Exit(1)


@audit_app.command("verify")
def verify(
    bundle: Annotated[
        Path | None, typer.Argument(help="An exported bundle to verify offline; omit to verify the database.")
    ] = None,
    log_key: Annotated[
        list[str] | None, typer.Option("--log-key", help="Trusted log verifier key (vkey); repeatable.")
    ] = None,
    witness_key: Annotated[
        list[str] | None, typer.Option("--witness-key", help="Trusted witness verifier key; repeatable.")
    ] = None,
    region_anchor: Annotated[
        Path | None,
        typer.Option(
            "--region-anchor",
            help="The governance JWKS: the bundle's regional directory (the peers' witness keys) must be signed by it.",
        ),
    ] = None,
) -> None:
    """Verify the whole log in the database, or a BUNDLE offline; exit 1 naming the first bad entry."""
    if bundle is None:
        if log_key or witness_key or region_anchor:
            _usage("--log-key, --witness-key and --region-anchor apply to a bundle; give the BUNDLE file")
        _verify_database()
    else:
        _verify_bundle(bundle, log_key or [], witness_key, region_anchor)


def _verify_database() -> None:
    from broker.audit.service import sequence_all, verify_log
    from broker.config import get_settings
    from broker.db import make_engine, make_sessionmaker, unit_of_work

    engine = make_engine(get_settings())
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            sequence_all(session)
        with unit_of_work(make_sessionmaker(engine)) as session:
            report = verify_log(session)
    finally:
        engine.dispose()
    if not report.ok:
        _failed(report.line())
    typer.echo(report.line())


def _verify_bundle(
    path: Path, log_keys: list[str], witness_keys: list[str] | None, region_anchor: Path | None
) -> None:
    from broker.audit.bundle import verify_bundle
    from broker.crypto import PublicKey
    from broker.crypto.note import NoteKey
    from broker.errors import InvalidInput

    if not path.is_file():
        _usage(f"no bundle file {path}")
    try:
        pinned_log = [NoteKey.from_vkey(k) for k in log_keys]
        pinned_witness = None if witness_keys is None else [NoteKey.from_vkey(k) for k in witness_keys]
    except InvalidInput as exc:
        _usage(f"bad verifier key: {exc.detail}")
    anchor: list[PublicKey] | None = None
    if region_anchor is not None:
        try:
            anchor = [PublicKey.from_jwk(k) for k in json.loads(region_anchor.read_text())["keys"]]
        except (OSError, ValueError, KeyError, TypeError, InvalidInput):
            _usage(f"{region_anchor} is not a readable JWKS of governance keys")
    try:
        data: Any = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        _failed(f"bundle FAILED: {path} is not JSON")
    report = verify_bundle(
        data, log_keys=pinned_log or None, witness_keys=pinned_witness, region_anchor=anchor
    )
    if not report.ok:
        _failed(report.line())
    typer.echo(report.line())


def _peer_client() -> Any:
    """The HTTP client of calls to peer nodes (timeouts, no proxy from the environment, no redirects)."""
    import httpx

    from broker.config import get_settings

    settings = get_settings()
    return httpx.Client(
        timeout=httpx.Timeout(settings.push_timeout_seconds, connect=settings.push_connect_timeout_seconds),
        trust_env=False,
        follow_redirects=False,
    )


@audit_app.command("peers")
def peers(
    submit: Annotated[
        bool,
        typer.Option(
            "--submit/--no-submit", help="Send the latest checkpoint to the peers' witnesses first."
        ),
    ] = True,
    gossip: Annotated[
        bool,
        typer.Option("--gossip/--no-gossip", help="Compare the peers' witnesses' views of every log first."),
    ] = True,
) -> None:
    """Check that every other node of the region cosigned this node's latest checkpoint; exit 1 if not."""
    import broker.models  # noqa: F401 - every mapper registered: a gossip alert notifies (foreign key to users)
    from broker.config import get_settings
    from broker.db import make_engine, make_sessionmaker, unit_of_work
    from broker.witness.gossip import gossip_all
    from broker.witness.report import peer_report
    from broker.witness.submit import submit_all

    engine = make_engine(get_settings())
    factory = make_sessionmaker(engine)
    try:
        with _peer_client() as http:
            if submit:
                for result in submit_all(factory, http):
                    if result.status not in ("cosigned", "already"):
                        typer.echo(f"{result.node_id}: {result.status} {result.detail}".rstrip(), err=True)
            if gossip:
                gossip_all(factory, http)
        with unit_of_work(factory) as session:
            report = peer_report(session)
    finally:
        engine.dispose()
    if not report.ok:
        _failed(report.line())
    typer.echo(report.line())


@audit_app.command("checkpoint")
def checkpoint(
    to_peers: Annotated[
        bool,
        typer.Option("--peers/--no-peers", help="Also have the region's other nodes' witnesses cosign it."),
    ] = True,
) -> None:
    """Sequence pending entries, sign a checkpoint, have every contact point (and peer node) cosign it; print
    the note."""
    import broker.models  # noqa: F401 - every mapper registered: an alert notifies (foreign key to users)
    from broker.audit import checkpoints as cps
    from broker.audit.models import AuditCheckpoint
    from broker.audit.service import sequence_all
    from broker.audit.witness import cosign, detect_forks, witnesses
    from broker.config import get_settings
    from broker.crypto import MasterKey
    from broker.db import make_engine, make_sessionmaker, unit_of_work
    from broker.keys.service import DatabaseKeyStore

    settings = get_settings()
    master = MasterKey.from_secret(settings.master_key_secret())
    engine = make_engine(settings)
    factory = make_sessionmaker(engine)
    try:
        with unit_of_work(factory) as session:
            sequence_all(session, batch=settings.audit_batch_size)
            issued = cps.issue(session, DatabaseKeyStore(session, master))
            checkpoint_id = issued.checkpoint.id if issued.checkpoint else None
        if checkpoint_id is None:
            _failed(f"audit log REFUSED to sign: {issued.problem}")
        problems = []
        with unit_of_work(factory) as session:
            names = witnesses(session)
        for witness in names:
            with unit_of_work(factory) as session:
                row = session.get(AuditCheckpoint, checkpoint_id)
                assert row is not None  # noqa: S101 - committed above
                result = cosign(session, DatabaseKeyStore(session, master), witness, row)
                if result.status == "alert":
                    problems.append(f"{witness}: {result.detail}")
        if to_peers:
            from broker.witness.submit import submit_all

            with _peer_client() as http:
                submit_all(factory, http)
        with unit_of_work(factory) as session:
            problems.extend(a.detail for a in detect_forks(session))
            row = session.get(AuditCheckpoint, checkpoint_id)
            assert row is not None  # noqa: S101 - committed above
            typer.echo(cps.full_note(session, row), nl=False)
    finally:
        engine.dispose()
    if problems:
        _failed(f"audit log ALERT: {problems[0]}")


@audit_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="Where to write the bundle (JSON).")],
    country: Annotated[
        str | None, typer.Option(help="Only entries touching this country (a national bundle).")
    ] = None,
    message: Annotated[str | None, typer.Option(help="Only the exchange this message belongs to.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Entries at or after this time (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Entries before this time (UTC).")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. message:routed.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only entries by this actor.")] = None,
    agency: Annotated[str | None, typer.Option(help="Only entries by or about this agency.")] = None,
    checkpoint_first: Annotated[
        bool, typer.Option("--checkpoint/--no-checkpoint", help="Sign a checkpoint first so all is covered.")
    ] = True,
) -> None:
    """Write a bundle (entries, signed checkpoints, proofs) that `spoc audit verify BUNDLE` checks offline."""
    from broker.audit import checkpoints as cps
    from broker.audit.export import export_bundle
    from broker.audit.search import EntryFilter, Scope
    from broker.audit.service import Actor, sequence_all
    from broker.config import get_settings
    from broker.crypto import MasterKey
    from broker.db import make_engine, make_sessionmaker, unit_of_work
    from broker.errors import InvalidInput
    from broker.keys.service import DatabaseKeyStore

    if country is not None and (len(country) != 2 or not country.isalpha()):
        _usage("--country is a two-letter code, e.g. AL")
    try:
        criteria = EntryFilter(since, until, None, agency, action, message, actor)
    except InvalidInput as exc:
        _usage(exc.detail)
    scope = Scope(country.upper() if country else None)
    settings = get_settings()
    engine = make_engine(settings)
    factory = make_sessionmaker(engine)
    try:
        if checkpoint_first:
            with unit_of_work(factory) as session:
                sequence_all(session, batch=settings.audit_batch_size)
                keys = DatabaseKeyStore(session, MasterKey.from_secret(settings.master_key_secret()))
                issued = cps.issue(session, keys)
            if issued.checkpoint is None:
                _failed(f"audit log REFUSED to sign: {issued.problem}")
            from broker.witness.submit import submit_all

            with _peer_client() as http:  # the peers' cosignatures on the anchor (none outside a region)
                submit_all(factory, http)
        with unit_of_work(factory) as session:
            bundle = export_bundle(session, scope, criteria, actor=Actor(OPERATOR, "admin"))
    finally:
        engine.dispose()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n")
    typer.echo(
        f"wrote {out}: {len(bundle['entries'])} entries, {len(bundle['earlier_checkpoints']) + 1} checkpoints"
        + (f", {bundle['uncovered']} too new for the checkpoint" if bundle["uncovered"] else "")
    )
