"""The ``spoc`` command line.

Each command is one unit of work at the edge; errors print one line with a remedy and exit non-zero.

    spoc run            a region of separate nodes (XK, AL, MK, BA) on embedded defaults (Ctrl-C stops all);
                        --country CC one node alone; --hub every contact point on one node
    spoc demo           the regional scenario across separate nodes (own temporary region, or --url)
    spoc db upgrade     apply the Alembic migrations
    spoc seed           seed the demo region into an empty database
    spoc audit verify [BUNDLE]   verify the whole audit log, or an exported bundle offline
    spoc audit checkpoint|export   sign a checkpoint; export a bundle for auditors
    spoc schemas export DIR   write the JSON Schemas and code lists for integrators
    spoc keys list|rotate|revoke   the key registry
    spoc region keygen|sign|verify|install|show   the signed regional directory
    spoc users add|list|lock|unlock|reset-password|set|totp   accounts (``broker.accounts.cli``)
    spoc stats export --year YYYY   the Art. 18 statistics as CSV, JSON or printable HTML (``broker.stats.cli``)
    spoc retention sweep|queue   delete content past its period; the compliance review queue
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from broker.accounts.cli import users_app
from broker.audit.cli import audit_app
from broker.config import Settings, get_settings
from broker.errors import SpocError
from broker.files import PRIVATE_UMASK
from broker.region.cli import region_app
from broker.retention.cli import retention_app
from broker.stats.cli import stats_app

if TYPE_CHECKING:
    from broker.demo import Row
    from broker.localregion import LocalRegion

app = typer.Typer(add_completion=False, no_args_is_help=True, help="spoc — the contact-point exchange.")
db_app = typer.Typer(no_args_is_help=True, help="Database migrations.")
schemas_app = typer.Typer(no_args_is_help=True, help="Wire-format schemas.")
keys_app = typer.Typer(no_args_is_help=True, help="The key registry: list, rotate, revoke.")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(schemas_app, name="schemas")
app.add_typer(region_app, name="region")
app.add_typer(users_app, name="users")
app.add_typer(stats_app, name="stats")
app.add_typer(retention_app, name="retention")


def fail(message: str) -> None:
    typer.echo(f"spoc: {message}", err=True)
    raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration to SPOC_DATABASE_URL."""
    from broker.migrate import upgrade

    upgrade(get_settings())
    typer.echo("database at the latest revision")


@app.command()
def seed(
    country: Annotated[
        list[str] | None,
        typer.Option(
            help="Seed only this country's node (repeatable); the rest comes from the regional directory."
        ),
    ] = None,
) -> None:
    """Seed the demo region (countries, agencies, agreements, keys, accounts) into an empty database."""
    from broker.launcher import prepare

    os.umask(PRIVATE_UMASK)  # keys and passwords go into the data folder
    result = prepare(get_settings(), countries=[c.upper() for c in country] if country else None)
    if result is None:
        typer.echo("already seeded; nothing done")
    else:
        typer.echo(f"seeded {len(result.agencies)} agencies and {len(result.accounts)} accounts")


@schemas_app.command("export")
def schemas_export(directory: Path) -> None:
    """Write the JSON Schemas and the code lists into DIRECTORY."""
    from schemas.export import export

    for path in export(directory):
        typer.echo(str(path))


OPERATOR = "cli-operator"


@keys_app.command("list")
def keys_list(party: str) -> None:
    """Every key PARTY has had (agency, contact point such as AL-SPOC, or spoc-log), with its status."""
    from broker.db import make_engine, make_sessionmaker, unit_of_work
    from broker.keys.service import registry

    engine = make_engine(get_settings())
    with unit_of_work(make_sessionmaker(engine)) as session:
        rows = registry(session, party)
    engine.dispose()
    if not rows:
        fail(f"no party {party}; list parties with GET /v1/directory/agencies")
    for row in rows:
        when = row["revoked_at"] or row["retired_at"] or row["created_at"]
        typer.echo(
            f"{row['kid']}  {row['use']}  {row['status']:<8} {when}  {row['revocation_reason'] or ''}".rstrip()
        )


@keys_app.command("rotate")
def keys_rotate(
    party: str,
    credentials: Annotated[
        Path | None, typer.Option(help="For an agency: its credentials file; new keys are written into it.")
    ] = None,
) -> None:
    """Publish new keys for PARTY; old keys retire (they still verify what they signed)."""
    from broker.audit.service import Actor
    from broker.client.credentials import AgencyCredentials
    from broker.crypto import KeyPair, MasterKey
    from broker.db import make_engine, make_sessionmaker, unit_of_work
    from broker.keys.service import register_agency_key, rotate_held

    settings = get_settings()
    actor = Actor(OPERATOR, "admin")
    engine = make_engine(settings)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            if credentials is None:
                master = MasterKey.from_secret(settings.master_key_secret())
                for pair in rotate_held(session, master, party_id=party, actor=actor):
                    typer.echo(f"{party}: new {pair.use} key {pair.kid}")
                return
            creds = AgencyCredentials.load(credentials)
            if creds.agency_id != party:
                fail(f"{credentials} holds the keys of {creds.agency_id}, not {party}")
            sig, enc = KeyPair.generate("sig"), KeyPair.generate("enc")
            register_agency_key(session, agency_id=party, key=sig.public, actor=actor)
            register_agency_key(session, agency_id=party, key=enc.public, actor=actor)
            session.flush()
            AgencyCredentials(party, sig.private_jwk_json(), enc.private_jwk_json()).save(credentials.parent)
            typer.echo(f"{party}: new sig key {sig.kid}, new enc key {enc.kid}; {credentials} updated")
    finally:
        engine.dispose()


@keys_app.command("revoke")
def keys_revoke(
    kid: str, reason: Annotated[str, typer.Option(help="Why (kept in the registry and the audit log).")]
) -> None:
    """Revoke key KID: anything signed with it from now on is refused. (A KID that begins with "-" goes after
    "--": spoc keys revoke --reason TEXT -- KID.)"""
    from broker.audit.service import Actor
    from broker.db import make_engine, make_sessionmaker, unit_of_work
    from broker.keys.service import revoke

    engine = make_engine(get_settings())
    with unit_of_work(make_sessionmaker(engine)) as session:
        row = revoke(session, kid=kid, reason=reason, actor=Actor(OPERATOR, "admin"))
        typer.echo(f"{row.kid} of {row.party_id} revoked at {row.revoked_at}")
    engine.dispose()


@app.command()
def bench(
    messages: Annotated[int, typer.Option(help="Messages per concurrency level.")] = 1500,
    levels: Annotated[str, typer.Option(help="Concurrency levels, comma-separated.")] = "4,16,64",
    out: Annotated[Path, typer.Option(help="Where results go.")] = Path("bench/results"),
    batch: Annotated[
        int,
        typer.Option(
            help="Envelopes per request in the batched phase (POST /v1/messages/batches); 1 skips it."
        ),
    ] = 100,
    profile: Annotated[
        int, typer.Option(help="Instead: profile N in-process submissions (pyinstrument) and print the tree.")
    ] = 0,
    hop_messages: Annotated[
        int,
        typer.Option(
            min=0,
            max=100_000,
            help="Also hop N messages between two nodes (own databases, API and worker processes each).",
        ),
    ] = 0,
    hop_only: Annotated[
        bool,
        typer.Option(help="Only the hop (--hop-messages), beside the latest single-node figures in --out."),
    ] = False,
    crosscheck: Annotated[
        int,
        typer.Option(
            help="Instead: cross-check a generated corpus of N people (known links, similar names) and print "
            "true links found, false links and the cost per message."
        ),
    ] = 0,
    api_processes: Annotated[
        int, typer.Option(min=1, max=64, help="uvicorn worker processes of the API under test.")
    ] = 2,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Celery worker processes under test.")] = 2,
    generator_only: Annotated[
        bool,
        typer.Option(
            help="Instead: measure the load generator alone (envelopes built, signed and sent to an "
            "in-process stand-in, no server) and print its rate and CPU per message."
        ),
    ] = False,
    audit_only: Annotated[
        bool,
        typer.Option(
            help="Instead: only the audit log on a fresh PostgreSQL database: appends/s against the same "
            "run's batched-rows limit, and full verification entries/s."
        ),
    ] = False,
    audit_entries: Annotated[
        int, typer.Option(min=1000, max=10_000_000, help="Entries for --audit-only.")
    ] = 100_000,
) -> None:
    """Measure the exchange on the real stack (PostgreSQL, Redis, API, workers) next to this machine's limits.

    Needs PostgreSQL and Redis on 127.0.0.1 (RabbitMQ optional, for the bare-queue baseline). Bounded:
    about 4 x MESSAGES messages one per request, and 2 x max(2000, 2 x MESSAGES) in batches of BATCH.
    Writes bench/results/<date>.json and a PNG chart. With ``--hop-messages N`` it also starts two nodes (AL,
    XK: each its own PostgreSQL database, Redis database, uvicorn and Celery worker) and measures the hop between
    them: messages/s node to node and the latency the hop adds (origin approval to destination receipt);
    ``--hop-only`` measures just that, printed beside the latest single-node run in ``--out``.
    ``--api-processes`` and ``--workers`` set the stack's process counts (more API processes than cores
    shows that nothing is serialised outside PostgreSQL); ``--generator-only`` measures the load generator
    alone (MESSAGES envelopes, no server); ``--audit-only`` the audit log alone (appends and verification).
    """
    from rich.console import Console

    from broker.bench.report import table
    from broker.bench.runner import run as run_bench
    from broker.bench.runner import write

    console = Console()
    if generator_only:
        from broker.bench.pool import measure_generator
        from broker.bench.report import generator_rows

        for measure, figure in generator_rows(measure_generator(messages)):
            typer.echo(f"{measure}: {figure}")
        return
    if audit_only:
        from broker.bench.audit import audit_rows, run_audit

        with console.status("audit benchmark") as status:

            def tell_audit(line: str) -> None:
                status.update(line)
                console.log(line)

            audited = run_audit(audit_entries, tell_audit)
        for measure, figure in audit_rows(audited):
            typer.echo(f"{measure}: {figure}")
        return
    if crosscheck:
        from broker.bench.crosscheck import run as run_crosscheck

        for line in run_crosscheck(crosscheck, say=console.log).lines():
            typer.echo(line)
        return
    if profile:
        from broker.bench.profile import profile_intake

        found = profile_intake(profile, batch=batch)
        typer.echo(found.tree)
        typer.echo(
            f"{found.requests} envelopes ({'batches of ' + str(batch) if batch > 1 else 'one per request'}): "
            f"{found.ms_per_request:.2f} ms each, "
            f"{found.statements_per_request:.1f} SQL statements each"
        )
        return
    if hop_only:
        from broker.bench.hop import hop_rows, latest_single_node, run_hop

        if hop_messages < 1:
            fail("--hop-only needs --hop-messages N (e.g. 500)")
        with console.status("hop benchmark") as status:

            def tell(line: str) -> None:
                status.update(line)
                console.log(line)

            hop = run_hop(hop_messages, tell)
        for measure, figure in hop_rows(hop, latest_single_node(out)):
            typer.echo(f"{measure}: {figure}")
        return
    try:
        parsed = tuple(int(x) for x in levels.split(",") if x.strip())
    except ValueError:
        fail("--levels takes whole numbers separated by commas, e.g. 4,16,64")
    if not 1 <= batch <= 500:
        fail("--batch takes 1 to 500 envelopes per request")
    with console.status("benchmark") as status:

        def say(line: str) -> None:
            status.update(line)
            console.log(line)

        results = run_bench(
            messages=messages,
            levels=parsed,
            out_dir=out,
            say=say,
            batch=batch,
            api_processes=api_processes,
            workers=workers,
        )
        if hop_messages:
            from broker.bench.hop import run_hop

            results["hop"] = run_hop(hop_messages, say)
    path, chart = write(results, out)
    console.print(table(results))
    if hop_messages:
        from broker.bench.hop import hop_rows

        for measure, figure in hop_rows(results["hop"], None):
            typer.echo(f"{measure}: {figure}")
    typer.echo(f"results: {path}" + (f"  chart: {chart}" if chart else ""))


def _print_accounts(data_dir: Path, country: str = "al", *, brief: bool = False) -> None:
    """The demo accounts of the node in ``data_dir`` (its own country's first; ``brief``: one line each)."""
    accounts = json.loads((data_dir / "demo-accounts.json").read_text())
    names = [f"{country}-officer", f"{country}-officer2", f"{country}-supervisor", f"{country}-auditor"]
    if not brief:
        names += ["rs-officer", "xk-officer"]
    names += ["regional-auditor", "admin"]
    if not brief:
        typer.echo("Demo accounts (passwords are random per installation):")
    for name in (n for n in dict.fromkeys(names) if n in accounts):
        a = accounts[name]
        typer.echo(f"  {name:<18} {a['password']:<20} {a['role']:<10} cleared {a['clearance']}")
    if not brief:
        typer.echo(f"  … all {len(accounts)} accounts in {data_dir / 'demo-accounts.json'}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _push_networks(settings: Settings) -> str:
    allowed = ", ".join(str(n) for n in settings.push_allowed_networks)
    if allowed:
        return f"push endpoints: public https, and the allow-listed networks {allowed} (SPOC_PUSH_ALLOWED_NETWORKS)"
    return "push endpoints: public https only (SPOC_PUSH_ALLOWED_NETWORKS allow-lists e.g. 127.0.0.1/32)"


def _leave_pending_work(url: str, settings: Settings) -> None:
    """Demo work in the queues of a freshly seeded region; a failure is reported, the system runs on."""
    import httpx

    from broker.client.agency import ClientError
    from broker.demo import leave_pending_work

    typer.echo("leaving demo work in the queues (--no-pending: none) …")
    try:
        leave_pending_work(url, settings.data_dir, settings=settings)
    except (ClientError, TimeoutError, httpx.HTTPError, SpocError) as exc:
        typer.echo(
            f"spoc: the demo work could not all be made ({type(exc).__name__}: {exc}); queues may be partial",
            err=True,
        )


@app.command()
def run(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port of the first node's API and UI (the region's next nodes: PORT+1, …).")
    ] = 8000,
    pending: Annotated[
        bool,
        typer.Option(
            "--pending/--no-pending",
            help="On first start, leave demo work waiting in the queues (urgent, four eyes, H3, returned, "
            "near its deadline, inbound across nodes, a dead letter).",
        ),
    ] = True,
    country: Annotated[
        str | None,
        typer.Option(
            help="Start one node alone for this country, in SPOC_DATA_DIR on SPOC_DATABASE_URL (SQLite by "
            "default); it exchanges with other nodes once a regional directory is installed on it."
        ),
    ] = None,
    hub: Annotated[
        bool,
        typer.Option(
            "--hub",
            help="Instead of separate nodes: one deployment hosting every country's contact point "
            "(the single-process demo region, in SPOC_DATA_DIR).",
        ),
    ] = False,
) -> None:
    """Start a region of separate nodes on embedded defaults (SQLite, no queue server); Ctrl-C stops all.

    By default: one node per country for XK, AL, MK and BA, each with its own API, worker, SQLite database
    and folder under SPOC_DATA_DIR/region/, on ports PORT, PORT+1, …; the region's governance key in
    SPOC_DATA_DIR/region/governance/ (outside every node, as the offline key it stands for) signs the
    directory installed on every node. A second start reuses the folders. --country CC starts one node
    alone; --hub the single deployment that hosts every contact point."""
    from broker.launcher import check_port, prepare, start

    os.umask(PRIVATE_UMASK)  # the data folders hold keys and passwords; the APIs and workers inherit it
    if country is not None and hub:
        fail("--country starts one country's node, --hub every country in one: choose one")
    # SIGTERM (a service manager, `kill`) and SIGHUP (the terminal closed) stop everything as Ctrl-C does,
    # and Ctrl-C works even where the shell started us with SIGINT ignored (a background job): the children
    # run in their own process groups, so without this they would outlive us.
    if country is None and not hub:
        _run_region(host, port, pending)
        return
    check_port(host, port)  # before anything is created, started or printed
    settings = get_settings()
    seeded = prepare(settings, countries=[country.upper()] if country else None)
    env = {"SPOC_DATA_DIR": str(settings.data_dir.resolve())}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    system = start(settings, host=host, port=port, env=env)
    try:
        if seeded is not None and pending and hub:
            _leave_pending_work(system.url, settings)
        what = f"{country.upper()}'s node" if country else "spoc (every contact point on one node)"
        typer.echo(f"{what} is running at {system.url}/ui  (API docs: {system.url}/docs)")
        typer.echo(f"data: {settings.data_dir.resolve()}   database: {settings.database_url}")
        if country:
            typer.echo(_directory_status(settings))
        typer.echo(_push_networks(settings))
        _print_accounts(settings.data_dir, country.lower() if country else "al")
        typer.echo("Press Ctrl-C to stop.")
        while system.alive():
            time.sleep(0.5)
        typer.echo("spoc: a process exited; stopping the others", err=True)
    except KeyboardInterrupt:
        typer.echo("\nstopping…")
    finally:
        system.stop()
    typer.echo("stopped")


def _directory_status(settings: Settings) -> str:
    from broker.db import make_engine, make_sessionmaker, unit_of_work
    from broker.region.service import current

    engine = make_engine(settings)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            installed = current(session)
    finally:
        engine.dispose()
    if installed is None:
        return (
            "regional directory: none installed; this node exchanges with no other node until one is "
            "(spoc region node-entry, then spoc region install, docs/region.md)"
        )
    d = installed.directory
    return f"regional directory: {d.region} version {d.version}, {len(d.nodes)} nodes, valid until {d.valid_until}"


def _run_region(host: str, port: int, pending: bool) -> None:
    """``spoc run`` without --country/--hub: the local region of separate nodes (``broker.localregion``)."""
    from broker.launcher import check_port
    from broker.localregion import check_embedded, plan, start_region

    check_embedded()
    root = get_settings().data_dir / "region"
    for node in plan(root, host=host, port=port):
        check_port(host, node.port)  # every node's, before anything is created, started or printed
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    typer.echo(f"starting the region's nodes in {root.resolve()} …")
    region = start_region(root, host=host, port=port)
    try:
        if region.seeded and pending:
            _leave_regional_work(region)
        d = "a new" if region.directory_changed else "the"
        typer.echo(
            f"{d} regional directory, version {region.directory_version}, is installed on every node; "
            f"governance key (the offline key) in {region.governance.resolve()}"
        )
        typer.echo(_push_networks(get_settings()))
        for node in region.nodes:
            typer.echo("")
            typer.echo(
                f"{node.country} node  {node.url}/ui   (API docs {node.url}/docs)  data: {node.folder}"
            )
            _print_accounts(node.folder, node.country.lower(), brief=True)
        typer.echo("")
        typer.echo("Press Ctrl-C to stop all nodes.")
        while region.alive():
            time.sleep(0.5)
        typer.echo("spoc: a process of a node exited; stopping the others", err=True)
    except KeyboardInterrupt:
        typer.echo("\nstopping…")
    finally:
        region.stop()
    typer.echo("stopped")


def _leave_regional_work(region: LocalRegion) -> None:
    """Demo work across the nodes of a freshly seeded region; a failure is reported, the region runs on."""
    import httpx

    from broker.client.agency import ClientError
    from broker.demo import leave_regional_work

    typer.echo("leaving demo work in the nodes' queues (--no-pending: none) …")
    try:
        leave_regional_work(
            region.urls(), region.folders(), settings={n.country: n.settings() for n in region.nodes}
        )
    except (ClientError, TimeoutError, httpx.HTTPError, SpocError) as exc:
        typer.echo(
            f"spoc: the demo work could not all be made ({type(exc).__name__}: {exc}); queues may be partial",
            err=True,
        )


@app.command()
def demo(
    url: Annotated[
        list[str] | None,
        typer.Option(
            help="Run against a running region instead of starting one: any node's URL (repeatable); the "
            "others are found in its regional directory. With --hub, the one deployment's URL."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="With --url: the region's folder (SPOC_DATA_DIR/region, one folder per node) or, with "
            "--hub, the deployment's data folder; the agencies' credentials and demo accounts are there."
        ),
    ] = None,
    hub: Annotated[
        bool, typer.Option("--hub", help="One deployment hosting every contact point, as before nodes.")
    ] = False,
) -> None:
    """A police force asks three neighbours about a smuggling network, across separate nodes.

    Kosovo Police ask Albania, North Macedonia and Bosnia and Herzegovina: each request crosses from XK's
    node to the destination's node (a signed hop), is answered there and the answer crosses back; BA–XK has
    no agreement in the regional directory, so that one is refused at intake. Ends by verifying every node's
    audit log. Without --url, starts a region (or a hub) in a temporary folder and removes it after."""
    from broker.demo import hub as hub_maps
    from broker.demo import run_scenario, table

    def say(line: str) -> None:
        typer.echo(line)

    os.umask(PRIVATE_UMASK)
    if url and hub:
        folder = data_dir or get_settings().data_dir
        rows, report = run_scenario(*hub_maps(url[0].rstrip("/"), folder), say)
    elif url:
        urls, folders = _running_region(url, data_dir or get_settings().data_dir / "region")
        rows, report = run_scenario(urls, folders, say)
    else:
        with tempfile.TemporaryDirectory(prefix="spoc-demo-") as tmp:
            for key in ("SPOC_DATABASE_URL", "SPOC_BROKER_URL", "SPOC_MASTER_KEY"):
                os.environ.pop(key, None)
            try:
                rows, report = _demo_in(Path(tmp), hub=hub, say=say)
            except TimeoutError as exc:
                fail(f"the demo stopped: {exc}")
                raise
    typer.echo("")
    typer.echo(table(rows))
    typer.echo("")
    typer.echo(report["summary"])
    if not report["ok"]:
        raise typer.Exit(1)


def _demo_in(tmp: Path, *, hub: bool, say: Callable[[str], None]) -> tuple[list[Row], dict[str, Any]]:
    """The demo on a throw-away region (or hub) in ``tmp``, on free ports; everything stopped after."""
    from broker.demo import hub as hub_maps
    from broker.demo import run_scenario
    from broker.launcher import free_port, free_ports, prepare, running
    from broker.localregion import start_region

    if hub:
        settings = Settings(data_dir=tmp)
        typer.echo(f"starting a temporary system in {tmp} …")
        prepare(settings)
        with running(
            settings, host="127.0.0.1", port=free_port(), env={"SPOC_DATA_DIR": str(tmp)}, log_dir=tmp
        ) as system:
            return run_scenario(*hub_maps(system.url, tmp), say)
    port = free_ports(4)
    typer.echo(f"starting a temporary region of 4 nodes in {tmp} (ports {port}–{port + 3}) …")
    region = start_region(tmp / "region", port=port)
    try:
        typer.echo(", ".join(f"{n.country} {n.url}" for n in region.nodes))
        rows, report = run_scenario(region.urls(), region.folders(), say)
        if not report["ok"]:
            _show_logs(region.nodes)
        return rows, report
    except TimeoutError:
        _show_logs(region.nodes)
        raise
    finally:
        region.stop()


def _show_logs(nodes: Sequence[Any]) -> None:
    """The folders go with the temporary directory: what each node logged is shown before they do."""
    for node in nodes:
        for name in ("worker.log", "api.log"):
            log = node.folder / name
            tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
            typer.echo(f"--- {node.country} node, last lines of {name} ---", err=True)
            typer.echo("\n".join(tail), err=True)


def _running_region(urls: list[str], root: Path) -> tuple[dict[str, str], dict[str, Path]]:
    """Every node of a running region, from the regional directory of the first URL (it is signed and lists
    them all), with each node's folder in ``root`` (``ROOT/<node id>``: ``spoc run``'s layout)."""
    import httpx

    from schemas.region import SignedDirectory

    try:
        answer = httpx.get(f"{urls[0].rstrip('/')}/v1/region/directory", timeout=10)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {urls[0]} ({type(exc).__name__}); is the region running (make run)?")
        raise
    if answer.status_code != 200:
        fail(f"{urls[0]} serves no regional directory ({answer.status_code}); for one deployment use --hub")
    directory = SignedDirectory.model_validate(answer.json()).directory
    found: dict[str, str] = {}
    folders: dict[str, Path] = {}
    for node in directory.nodes:
        for country in node.countries:
            found[country] = str(node.base_url).rstrip("/")
            folders[country] = root / node.node_id
    missing = [c for c, f in folders.items() if not (f / "demo-accounts.json").exists()]
    if missing:
        fail(
            f"no demo accounts for {', '.join(sorted(missing))} under {root}; name the region's folder with --data-dir"
        )
    return found, folders


def main() -> None:
    try:
        app()
    except SpocError as exc:
        typer.echo(f"spoc: {exc.detail}", err=True)
        sys.exit(1)
