"""Refreshing the regional directory from the region itself: peers, and an optional distribution URL.

Every node serves the directory it installed (``GET /v1/region/directory``, public: it holds only public
keys and is signed). So a node refreshes by asking every **other node of the directory it has** (their
``base_url``) and, when set, a **distribution URL** (``SPOC_REGION_DIRECTORY_URL``, e.g. the governance's
mirror), on a beat schedule (``SPOC_REGION_REFRESH_SECONDS``, ``workers.region_tasks``) or once by hand
(``spoc region refresh``). Whoever serves it is not trusted: a document is installed only if it passes every
install rule of ``broker.region.service.install`` — the anchor's signature, the validity period, a version
that never goes back, the same bytes under a version already installed, this node's own keys listed exactly.

What each source gets:

* a **newer** directory that passes every rule: installed (``region:directory-installed``);
* the **same** document as installed: nothing (most runs);
* an **older** one, correctly signed: ignored, not even logged — a peer that has not refreshed yet is normal;
* a **fork** (the installed version with other content) or a **wrong signature**: refused, audited
  (``region:directory-refused``) and **alerted** (``broker.audit.alerts``): either the governance key signed
  two histories or someone serves forged directories, and people must look;
* any other refusal (expired, another region, this node's keys not listed, plain http in production):
  refused and audited, no alert (a stale or misconfigured peer, not an attack);
* unreachable, or not a JSON document: reported by the run, nothing else.

Candidates are tried newest first, each in its own unit of work (a refusal rolls back only itself), so one
bad source does not stop a good one. Fetching happens with no transaction open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson
from sqlalchemy.orm import Session, sessionmaker

from broker.audit.alerts import raise_alert
from broker.audit.service import Actor
from broker.config import Settings
from broker.crypto import PublicKey, digest
from broker.crypto.directory import verify_directory
from broker.db import unit_of_work, utcnow
from broker.errors import PolicyRefused, SpocError, VerificationError
from broker.hop.service import this_node
from broker.region.api import anchor_of
from broker.region.service import current, install, parse_signed, record_refusal

__all__ = ["DIRECTORY_PATH", "REFRESHER", "Outcome", "fetch", "refresh", "sources"]

DIRECTORY_PATH: Final = "/v1/region/directory"
REFRESHER: Final = Actor("region-refresh", "system")
MAX_BYTES: Final = 4 * 1024 * 1024
"""A directory is a few kilobytes per node; a source answering more than this is not serving one."""
ALERTED: Final = frozenset({"directory-fork", "directory-signature"})


@dataclass(frozen=True)
class Outcome:
    """What one source gave: ``installed``, ``same``, ``older``, ``refused`` (with its reason, and whether it
    was alerted) or ``unreachable``."""

    source: str
    status: str
    version: int | None = None
    reason: str | None = None
    alert: int | None = None

    def line(self) -> str:
        version = f" version {self.version}" if self.version is not None else ""
        reason = f" [{self.reason}]" if self.reason else ""
        alert = f" (alert {self.alert})" if self.alert is not None else ""
        return f"{self.source}: {self.status}{version}{reason}{alert}"


def sources(session: Session, settings: Settings) -> list[str]:
    """The directory's URL at every other node of the installed directory, and the distribution URL."""
    found: list[str] = []
    installed = current(session)
    if installed is not None:
        try:
            me: str | None = this_node(session, installed.directory).node_id
        except SpocError:
            me = None
        found += [
            n.base_url.rstrip("/") + DIRECTORY_PATH for n in installed.directory.nodes if n.node_id != me
        ]
    if settings.region_directory_url:
        found.append(settings.region_directory_url)
    return list(dict.fromkeys(found))


def fetch(
    urls: Sequence[str], *, client: httpx.Client
) -> tuple[list[tuple[str, dict[str, Any]]], list[Outcome]]:
    """GET each source (no transaction open): the JSON objects served, and the sources that served none."""
    got: list[tuple[str, dict[str, Any]]] = []
    failed: list[Outcome] = []
    for url in urls:
        try:
            with client.stream("GET", url, headers={"accept": "application/json"}) as answer:
                if answer.status_code != 200:
                    failed.append(Outcome(url, "unreachable", reason=f"answered {answer.status_code}"))
                    continue
                body = b""
                for chunk in answer.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise ValueError("too large")
            document = orjson.loads(body)
        except httpx.HTTPError as exc:
            failed.append(Outcome(url, "unreachable", reason=type(exc).__name__))
            continue
        except ValueError:
            failed.append(Outcome(url, "unreachable", reason="not a JSON document"))
            continue
        if not isinstance(document, dict):
            failed.append(Outcome(url, "unreachable", reason="not a JSON object"))
            continue
        got.append((url, document))
    return got, failed


def _claimed_version(raw: dict[str, Any]) -> int:
    document = raw.get("directory")
    version = document.get("version") if isinstance(document, dict) else None
    return version if isinstance(version, int) and not isinstance(version, bool) else -1


def _try(
    session: Session, url: str, raw: dict[str, Any], *, anchor: Sequence[PublicKey], settings: Settings
) -> Outcome:
    """Judge one served document (see the module docstring); raises the refusal, else the outcome."""
    signed = parse_signed(raw)
    try:
        verify_directory(raw["directory"], raw["signature"], anchor=anchor)
    except VerificationError:
        raise VerificationError(
            "the directory's signature does not verify under the region anchor", reason="directory-signature"
        ) from None
    installed = current(session)
    version = signed.directory.version
    if installed is not None and version < installed.directory.version:
        return Outcome(url, "older", version)
    _, changed = install(
        session,
        raw,
        anchor=anchor,
        now=utcnow(),
        actor=REFRESHER,
        require_https=settings.environment == "production",
    )
    return Outcome(url, "installed" if changed else "same", version)


def _refused(session: Session, url: str, raw: dict[str, Any], exc: SpocError) -> Outcome:
    record_refusal(session, REFRESHER, raw, exc)
    reason = exc.extra.get("reason")
    version = _claimed_version(raw)
    alert_id = None
    if reason in ALERTED:
        what = (
            "a fork of the installed directory"
            if reason == "directory-fork"
            else "a wrongly signed directory"
        )
        alert = raise_alert(
            session,
            kind=str(reason),
            reporter=f"region-refresh {digest(raw)[-16:]}",
            detail=f"{url} serves {what} (version {version}): {exc.detail}",
        )
        alert_id = alert.id
    return Outcome(
        url, "refused", version if version >= 0 else None, str(reason) if reason else None, alert_id
    )


def refresh(factory: sessionmaker[Session], settings: Settings, client: httpx.Client) -> list[Outcome]:
    """One refresh: ask every source, install what is newer and valid, refuse and alert what is forged."""
    anchor = anchor_of(settings)
    if not anchor:
        raise PolicyRefused(
            "this node has no region anchor; set SPOC_REGION_ANCHOR to the governance JWKS",
            reason="directory-no-anchor",
        )
    with unit_of_work(factory) as session:
        urls = sources(session, settings)
    got, outcomes = fetch(urls, client=client)
    for url, raw in sorted(got, key=lambda item: _claimed_version(item[1]), reverse=True):
        try:
            with unit_of_work(factory) as session:
                outcomes.append(_try(session, url, raw, anchor=anchor, settings=settings))
        except SpocError as exc:
            with unit_of_work(factory) as session:
                outcomes.append(_refused(session, url, raw, exc))
    return outcomes
