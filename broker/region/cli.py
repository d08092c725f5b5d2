"""``spoc region``: the regional directory, from the governance's offline key to a node's installed copy.

    spoc region keygen --out gov.key.json --anchor-out anchor.jwks.json    (governance, offline machine)
    spoc region sign draft.json --key gov.key.json --out region.json        (governance, offline machine)
    spoc region verify region.json --anchor anchor.jwks.json                (anyone, no database)
    spoc region install region.json                                         (a node's operator)
    spoc region show                                                        (a node's operator)
    spoc region refresh                                                     (a node's operator; the beat too)
    spoc region reconcile --peer xk                                         (a node's operator)
    spoc region ledger --peer xk --out al.json                              (a node's operator, for auditors)
    spoc region reconcile --ledger al.json --ledger xk.json --anchor A      (a regional auditor, no database)

The governance key signs; it never sits on a node. ``keygen`` writes its private JWK with mode 0600 and
the public anchor (a JWKS) that every node is configured with (``SPOC_REGION_ANCHOR``). ``sign`` takes a
draft directory (``schemas.region.RegionDirectory`` as JSON; ``issued_at``/``valid_until`` may be left out
and are then set to now and now + ``--valid-days``), checks it against the schema, and writes the signed
form. ``install`` applies the node's rules (anchor, validity, version never goes back, no fork) and audits
the outcome either way. ``refresh`` asks the peers (and ``SPOC_REGION_DIRECTORY_URL``) for a newer directory
under the same rules. ``reconcile`` compares two nodes' ledgers of hops (docs/reconcile.md) and exits 2 when
they do not reconcile. Errors print one line and exit 1.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from broker.audit.service import Actor
from broker.config import get_settings
from broker.errors import InvalidInput, SpocError

region_app = typer.Typer(
    no_args_is_help=True,
    help="The regional directory (keygen, sign, verify, install, show, refresh) and reconciling hops.",
)
OPERATOR = Actor("cli-operator", "admin")


def _fail(message: str) -> None:
    typer.echo(f"spoc: {message}", err=True)
    raise typer.Exit(1)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path} as JSON: {exc}") from None


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 whatever the umask; refuse to overwrite (a key is never clobbered)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _errors(exc: SpocError) -> str:
    reason = exc.extra.get("reason")
    found = exc.extra.get("errors") or []
    where = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in found[:3])
    return exc.detail + (f" [{reason}]" if reason else "") + (f" ({where})" if where else "")


@region_app.command("keygen")
def keygen(
    out: Annotated[Path, typer.Option(help="Where the governance private key (JWK) goes; created 0600.")],
    anchor_out: Annotated[Path, typer.Option(help="Where the public anchor (JWKS) for the nodes goes.")],
) -> None:
    """Make a governance signing key (Ed25519). Keep it offline; give the anchor to every node."""
    from broker.crypto import KeyPair

    key = KeyPair.generate("sig")
    try:
        _write_private(out, key.private_jwk_json())
    except FileExistsError:
        _fail(f"{out} exists; a governance key is never overwritten")
    anchor_out.write_text(json.dumps({"keys": [key.public.jwk]}, indent=2) + "\n")
    typer.echo(f"governance key {key.kid} written to {out} (keep it offline); anchor in {anchor_out}")


@region_app.command("sign")
def sign(
    draft: Path,
    key: Annotated[Path, typer.Option(help="The governance private key (JWK file).")],
    out: Annotated[Path, typer.Option(help="Where the signed directory goes.")],
    valid_days: Annotated[int, typer.Option(min=1, max=366, help="Validity when the draft sets none.")] = 30,
) -> None:
    """Sign a draft directory with the governance key."""
    from broker.crypto import KeyPair
    from broker.crypto.directory import sign_directory
    from broker.db import utcnow
    from broker.region.service import parse_signed

    try:
        document = _read_json(draft)
        if not isinstance(document, dict):
            raise InvalidInput(f"{draft} is not a JSON object")
        now = utcnow().replace(microsecond=0)
        document.setdefault("issued_at", now.isoformat().replace("+00:00", "Z"))
        until = now + timedelta(days=valid_days)
        document.setdefault("valid_until", until.isoformat().replace("+00:00", "Z"))
        signer = KeyPair.from_private_jwk(key.read_text())
        signed = {"directory": document, "signature": sign_directory(document, key=signer)}
        parsed = parse_signed(signed)  # schema check before anything is written
    except SpocError as exc:
        _fail(_errors(exc))
        return
    except OSError as exc:
        _fail(f"cannot read the governance key {key}: {exc.strerror}")
        return
    out.write_text(json.dumps(signed, indent=2, ensure_ascii=False) + "\n")
    d = parsed.directory
    typer.echo(f"signed {d.region} version {d.version} ({len(d.nodes)} nodes) by {signer.kid} into {out}")


@region_app.command("verify")
def verify(
    signed: Path,
    anchor: Annotated[Path, typer.Option(help="The governance public keys (JWKS).")],
) -> None:
    """Check a signed directory offline: schema, governance signature, validity period."""
    from broker.db import utcnow
    from broker.region.service import load_anchor, verify_signed

    try:
        parsed, kid = verify_signed(_read_json(signed), anchor=load_anchor(anchor), now=utcnow())
    except SpocError as exc:
        _fail(_errors(exc))
        return
    d = parsed.directory
    typer.echo(
        f"ok: {d.region} version {d.version}, signed by {kid}, valid until {d.valid_until.isoformat()}, "
        f"nodes: {', '.join(n.node_id for n in d.nodes)}"
    )


@region_app.command("install")
def install_command(signed: Path) -> None:
    """Install a signed directory on this node (SPOC_REGION_ANCHOR must name the governance JWKS)."""
    from broker.db import make_engine, make_sessionmaker, unit_of_work, utcnow
    from broker.region.api import anchor_of
    from broker.region.service import install, record_refusal

    settings = get_settings()
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    try:
        raw = _read_json(signed)
        try:
            with unit_of_work(sessions) as session:
                installed, changed = install(
                    session,
                    raw,
                    anchor=anchor_of(settings),
                    now=utcnow(),
                    actor=OPERATOR,
                    require_https=settings.environment == "production",
                )
        except SpocError as exc:
            with unit_of_work(sessions) as session:
                record_refusal(session, OPERATOR, raw, exc)
            raise
    except SpocError as exc:
        _fail(_errors(exc))
        return
    finally:
        engine.dispose()
    d = installed.directory
    verb = "installed" if changed else "already installed:"
    typer.echo(f"{verb} {d.region} version {d.version} (valid until {d.valid_until.isoformat()})")


@region_app.command("show")
def show() -> None:
    """The directory this node has installed: version, validity, nodes and the countries they serve."""
    from broker.db import make_engine, make_sessionmaker, unit_of_work
    from broker.region.service import current

    engine = make_engine(get_settings())
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            installed = current(session)
    finally:
        engine.dispose()
    if installed is None:
        _fail("no regional directory installed; install one with `spoc region install FILE`")
        return
    d = installed.directory
    typer.echo(f"{d.region} version {d.version}, valid until {d.valid_until.isoformat()}, {installed.digest}")
    for node in d.nodes:
        countries = ", ".join(sorted(node.countries))
        typer.echo(f"  {node.node_id:<12} {countries:<12} {node.base_url}")


@region_app.command("node-entry")
def node_entry_command(
    node_id: Annotated[str, typer.Option(help="This node's id in the region (lower case, e.g. al).")],
    url: Annotated[str, typer.Option(help="The base URL peers reach this node at.")],
    out: Annotated[Path | None, typer.Option(help="Write the entry here instead of printing it.")] = None,
) -> None:
    """This node's entry for the regional directory (public keys only), to send to the region's governance."""
    from broker.crypto import MasterKey
    from broker.db import make_engine, make_sessionmaker, unit_of_work
    from broker.keys.service import DatabaseKeyStore
    from broker.region.sync import node_entry

    settings = get_settings()
    engine = make_engine(settings)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            master = MasterKey.from_secret(settings.master_key_secret())
            entry = node_entry(
                session, DatabaseKeyStore(session, master), master, node_id=node_id, base_url=url.rstrip("/")
            )
    except SpocError as exc:
        _fail(_errors(exc))
        return
    finally:
        engine.dispose()
    text = json.dumps(entry, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"node entry of {node_id} written to {out}")


def _when(value: str | None, what: str) -> Any:
    from datetime import datetime

    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"--{what} takes an RFC 3339 time, e.g. 2026-12-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"--{what} needs a time zone, e.g. 2026-12-01T00:00:00Z")
    return parsed


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    """The report, one finding a line; exit status 2 when anything does not reconcile (1 is for errors)."""
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        a, b = report["nodes"]
        verdict = "reconciled" if report["ok"] else "DOES NOT RECONCILE"
        typer.echo(f"hops between {a} and {b} from {report['since']} to {report['until']}: {verdict}")
        for pair, n in report["counts"].items():
            typer.echo(f"  {pair}: {n['sent']} sent, {n['received']} received")
        for name in ("sent_not_received", "received_not_sent", "digest_mismatches", "bad_receipts",
                     "not_in_log", "ledger_problems", "unsettled"):  # fmt: skip
            for item in report[name]:
                what = " ".join(f"{k}={v}" for k, v in item.items() if k not in ("kind",) and v is not None)
                typer.echo(f"  {name.replace('_', ' ')}: {what}")
        if "alert" in report:
            typer.echo(f"  alert {report['alert']} raised for this node's auditors")
    if not report["ok"]:
        raise typer.Exit(2)


@region_app.command("reconcile")
def reconcile_command(
    peer: Annotated[
        str | None, typer.Option(help="Reconcile this node's hops with this peer node (online).")
    ] = None,
    ledger: Annotated[
        list[Path] | None,
        typer.Option(
            help="Offline: two nodes' exported ledgers (spoc region ledger), given twice; no database."
        ),
    ] = None,
    anchor: Annotated[
        Path | None, typer.Option(help="Offline: the governance JWKS the ledgers' directories verify under.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339; default: until minus 7 days.")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339; default: now.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")] = False,
) -> None:
    """Compare two nodes' ledgers of hops: sent and not received, received and not sent, digest mismatches,
    receipts that do not verify, rows their node's log does not back. Exit 0 reconciled, 2 findings, 1 error.

    Online (``--peer``), on a node: builds this node's ledger, fetches the peer's over HTTP (signed with this
    node's transport key), records the run in the log and raises an alert on findings. Offline (``--ledger``
    twice, ``--anchor``): a regional auditor's check of two exports, trusting only the anchor."""
    try:
        start, end = _when(since, "since"), _when(until, "until")
        if ledger:
            report = _offline(ledger, anchor, start, end)
        elif peer:
            report = _online(peer, start, end)
        else:
            raise InvalidInput("say --peer NODE (on a node) or --ledger A --ledger B --anchor JWKS (offline)")
    except SpocError as exc:
        _fail(_errors(exc))
        return
    _print_report(report, as_json)


def _offline(paths: list[Path], anchor: Path | None, since: Any, until: Any) -> dict[str, Any]:
    from broker.db import utcnow
    from broker.hop.ledger import Keyring, compare, verified_directory
    from broker.hop.reconcile import period
    from broker.region.service import load_anchor

    if len(paths) != 2 or anchor is None:
        raise InvalidInput("offline reconciliation takes --ledger twice (one per node) and --anchor")
    keys = load_anchor(anchor)
    a, b = (_read_json(p) for p in paths)
    if not isinstance(a, dict) or not isinstance(b, dict):
        raise InvalidInput("a ledger is a JSON object")
    directories = [verified_directory(x, anchor=keys) for x in (a, b)]
    start, end = period(
        since or _inner(a, b, "since", max), until or _inner(a, b, "until", min), now=utcnow()
    )
    return compare(a, b, since=start, until=end, keys=Keyring.of(directories))


def _inner(a: dict[str, Any], b: dict[str, Any], name: str, pick: Any) -> Any:
    """The period both ledgers cover, without the margin they were read with (``MARGIN``)."""
    from broker.hop.ledger import parse_time
    from broker.hop.reconcile import MARGIN

    value = pick(
        parse_time(a.get(name), f"the ledger's {name}"), parse_time(b.get(name), f"the ledger's {name}")
    )
    return value + MARGIN if name == "since" else value - MARGIN


def _online(peer: str, since: Any, until: Any) -> dict[str, Any]:
    from broker.crypto import MasterKey
    from broker.db import make_engine, make_sessionmaker, utcnow
    from broker.hop.reconcile import peer_client, period, reconcile_with

    settings = get_settings()
    engine = make_engine(settings)
    master = MasterKey.from_secret(settings.master_key_secret())
    start, end = period(since, until, now=utcnow())
    try:
        with peer_client(settings) as client:
            return reconcile_with(
                make_sessionmaker(engine),
                master,
                client,
                peer_id=peer,
                since=start,
                until=end,
                actor=OPERATOR,
            )
    finally:
        engine.dispose()


@region_app.command("ledger")
def ledger_command(
    peer: Annotated[str, typer.Option(help="The peer node whose border with this node the ledger covers.")],
    out: Annotated[Path, typer.Option(help="Where the ledger (JSON) goes.")],
    since: Annotated[str | None, typer.Option(help="RFC 3339; default: until minus 7 days.")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339; default: now.")] = None,
) -> None:
    """Export this node's ledger of hops with a peer, for a regional auditor's offline reconciliation.

    Read with the same margin as an online run, so that two exports of one period reconcile; audited."""
    from broker.crypto import MasterKey
    from broker.db import make_engine, make_sessionmaker, unit_of_work, utcnow
    from broker.hop.reconcile import export_ledger, period
    from broker.keys.service import DatabaseKeyStore

    settings = get_settings()
    engine = make_engine(settings)
    try:
        start, end = period(_when(since, "since"), _when(until, "until"), now=utcnow())
        with unit_of_work(make_sessionmaker(engine)) as session:
            master = MasterKey.from_secret(settings.master_key_secret())
            document = export_ledger(
                session,
                DatabaseKeyStore(session, master),
                peer_id=peer,
                since=start,
                until=end,
                actor=OPERATOR,
            )
    except SpocError as exc:
        _fail(_errors(exc))
        return
    finally:
        engine.dispose()
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    typer.echo(f"ledger of {document['node']} with {peer}: {len(document['rows'])} hops into {out}")


@region_app.command("refresh")
def refresh_command() -> None:
    """Look for a newer signed directory at every peer of the installed one (and SPOC_REGION_DIRECTORY_URL),
    once; install it if it passes every install rule. What the beat does every SPOC_REGION_REFRESH_SECONDS.

    One line per source: installed, same, older (ignored), refused [reason] (a fork or a wrong signature is
    also alerted to this node's auditors), unreachable. Exit 2 when something was refused, 1 on an error."""
    from broker.db import make_engine, make_sessionmaker
    from broker.hop.reconcile import peer_client
    from broker.region.refresh import refresh

    settings = get_settings()
    engine = make_engine(settings)
    try:
        with peer_client(settings) as client:
            outcomes = refresh(make_sessionmaker(engine), settings, client)
    except SpocError as exc:
        _fail(_errors(exc))
        return
    finally:
        engine.dispose()
    if not outcomes:
        typer.echo("no source to refresh from: install a directory first, or set SPOC_REGION_DIRECTORY_URL")
    for outcome in outcomes:
        typer.echo(outcome.line())
    if any(o.status == "refused" for o in outcomes):
        raise typer.Exit(2)
