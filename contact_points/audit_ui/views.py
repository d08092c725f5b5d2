"""The auditors' web pages: search the log, one exchange's timeline, checkpoints and witnesses, export.

Server-rendered like the officers' UI and sharing its layout (``base.html`` through a ChoiceLoader) and
its session cookie; the only form that changes anything ("sign a checkpoint now") carries the session's
CSRF token. Scope is the API's: ``broker.audit.search`` applies it, so a national auditor's page can only
ever show entries touching their country. Nothing here can show content: entries have none.

The timeline marks each entry as included in the latest checkpoint by checking its RFC 9162 inclusion
proof against the signed root on the server. That is a convenience for reading; the independent check
is the exported bundle verified with ``spoc audit verify BUNDLE`` on the auditor's own machine.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

import contact_points.ui
import contact_points.ui.common
from broker.audit import checkpoints as cps
from broker.audit import merkle
from broker.audit.actions import AuditAction
from broker.audit.alerts import alerts
from broker.audit.export import export_bundle
from broker.audit.models import AuditCheckpoint
from broker.audit.search import EntryFilter, Found, Scope, search, timeline
from broker.audit.service import record, sequence_all
from broker.audit.tree import StoredTree
from broker.audit.witness import witness_keys
from broker.deps import DbSession, Keys, Principal, current_principal
from broker.directory.models import Country
from broker.errors import InvalidInput, NotAuthenticated, SpocError

HERE = Path(__file__).parent
_env = jinja2.Environment(
    loader=jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(HERE / "templates"),
            jinja2.FileSystemLoader(Path(contact_points.ui.__file__).parent / "templates"),  # base.html
        ]
    ),
    autoescape=True,
)
_env.finalize = contact_points.ui.common.templates.env.finalize  # format characters shown as markers
templates = Jinja2Templates(env=_env)
router = APIRouter(prefix="/ui/audit", include_in_schema=False)
PAGE = 100


def _auditor(request: Request, session: Session) -> Principal | Response:
    """The logged-in auditor (or admin), or the response to send instead (login page, refusal page)."""
    try:
        principal = current_principal(request, session)
    except NotAuthenticated:
        return RedirectResponse("/ui/login", status_code=303)
    if principal.user.role not in ("auditor", "admin"):
        return _page(
            request, principal, "audit_error.html", {"error": "Only auditors read the audit log."}, 403
        )
    return principal


def _page(
    request: Request, principal: Principal, name: str, context: dict[str, Any], status: int = 200
) -> Response:
    base = {"user": principal.user, "csrf": principal.session.csrf_token, "error": None}
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status)


def _when(value: str | None) -> datetime | None:
    """A form's date or date-time (``datetime-local`` sends no zone): read as UTC; blank is no filter."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a date or date-time (YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _criteria(request: Request) -> EntryFilter:
    q = request.query_params

    def text(name: str, limit: int) -> str | None:
        value = q.get(name, "").strip()
        return value[:limit] or None

    country = text("country", 2)
    return EntryFilter(
        since=_when(text("since", 40)),
        until=_when(text("until", 40)),
        country=country.upper() if country else None,
        agency=text("agency", 32),
        action=text("action", 64),
        message=text("message", 64),
        actor=text("actor", 64),
    )


@router.get("/static/audit.css")
def stylesheet() -> FileResponse:
    """The few styles the auditors' pages add to ``/static/spoc.css`` (served here: that folder is the UI's)."""
    return FileResponse(HERE / "static" / "audit.css", media_type="text/css")


@router.get("", response_class=HTMLResponse)
def search_page(request: Request, session: DbSession) -> Response:
    who = _auditor(request, session)
    if isinstance(who, Response):
        return who
    scope = Scope.of(who.user)
    context: dict[str, Any] = {
        "scope": scope,
        "actions": [str(a) for a in AuditAction],
        "countries": session.scalars(select(Country.code).order_by(Country.code)).all(),
        "q": {
            k: request.query_params.get(k, "")
            for k in ("since", "until", "country", "agency", "action", "message", "actor")
        },
        "alerts": alerts(session, limit=5),
        "rows": [],
        "older": None,
    }
    try:
        criteria = _criteria(request)
        before = request.query_params.get("before", "")
        found = search(session, scope, criteria, limit=PAGE, before=int(before) if before.isdigit() else None)
    except SpocError as exc:
        return _page(request, who, "audit_search.html", {**context, "error": exc.detail}, 400)
    context["rows"] = [f.view() for f in found]
    context["export_query"] = criteria.as_query()
    if len(found) == PAGE:
        context["older"] = {**criteria.as_query(), "before": found[-1].entry.id}
    return _page(request, who, "audit_search.html", context)


@router.get("/messages/{message_id}", response_class=HTMLResponse)
def timeline_page(message_id: str, request: Request, session: DbSession) -> Response:
    who = _auditor(request, session)
    if isinstance(who, Response):
        return who
    try:
        found = timeline(session, Scope.of(who.user), message_id)
    except SpocError as exc:
        return _page(request, who, "audit_error.html", {"error": exc.detail}, exc.status)
    anchor = cps.latest(session)
    return _page(
        request,
        who,
        "audit_timeline.html",
        {"message_id": message_id, "rows": _with_inclusion(session, found, anchor), "anchor": anchor},
    )


def _with_inclusion(
    session: Session, found: list[Found], anchor: AuditCheckpoint | None
) -> list[dict[str, Any]]:
    """Each entry's view plus whether its inclusion proof verifies against the latest signed root."""
    covered = [f.seq for f in found if f.seq is not None and anchor is not None and f.seq < anchor.size]
    proofs = StoredTree(session).inclusion_proofs(covered, anchor.size) if anchor and covered else {}
    rows = []
    for f in found:
        view = f.view()
        view["included"] = None
        if anchor is not None and f.seq in proofs:
            leaf, path = proofs[f.seq]
            try:
                merkle.verify_inclusion(f.seq, anchor.size, leaf, path, anchor.root)
                view["included"] = True
            except merkle.ProofError:
                view["included"] = False
        rows.append(view)
    return rows


@router.get("/checkpoints", response_class=HTMLResponse)
def checkpoints_page(request: Request, session: DbSession) -> Response:
    who = _auditor(request, session)
    if isinstance(who, Response):
        return who
    rows = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(20)).all()
    return _page(
        request,
        who,
        "audit_checkpoints.html",
        {
            "checkpoints": [cps.describe(session, r) for r in rows],
            "log_keys": sorted(k.vkey for k in cps.log_keys(session).values()),
            "witness_keys": sorted(k.vkey for k in witness_keys(session).values()),
            "alerts": alerts(session),
            "notice": request.query_params.get("notice"),
        },
    )


@router.post("/checkpoints")
def issue_checkpoint(
    request: Request, session: DbSession, keys: Keys, csrf: Annotated[str, Form(max_length=100)]
) -> Response:
    who = _auditor(request, session)
    if isinstance(who, Response):
        return who
    if not hmac.compare_digest(who.session.csrf_token, csrf):
        return _page(
            request, who, "audit_error.html", {"error": "The form expired; reload and try again."}, 403
        )
    sequence_all(session)
    issued = cps.issue(session, keys)
    if issued.checkpoint is None:
        return RedirectResponse("/ui/audit/checkpoints?notice=refused", status_code=303)
    if issued.new:
        record(
            session,
            actor=who.actor(request),
            action=AuditAction.LOG_CHECKPOINT_REQUESTED,
            object_type="checkpoint",
            object_id=str(issued.checkpoint.id),
            countries=[who.user.country] if who.user.country else [],
        )
    return RedirectResponse(f"/ui/audit/checkpoints?notice={'signed' if issued.new else 'unchanged'}", 303)


@router.get("/export")
def export(request: Request, session: DbSession) -> Response:
    who = _auditor(request, session)
    if isinstance(who, Response):
        return who
    try:
        bundle = export_bundle(session, Scope.of(who.user), _criteria(request), actor=who.actor(request))
    except SpocError as exc:
        return _page(request, who, "audit_error.html", {"error": exc.detail}, exc.status)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return JSONResponse(
        bundle, headers={"Content-Disposition": f'attachment; filename="spoc-audit-{stamp}.json"'}
    )
