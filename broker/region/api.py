"""The regional directory over HTTP: any node (or anyone) reads the one a node has; an admin installs one.

``GET /v1/region/directory`` is public on purpose: the document holds only public keys and URLs, and it is
signed, so a node may refresh its directory from any peer (or any mirror) without trusting that peer — the
governance signature, the validity period and the version rule decide, not who served it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from broker.config import Settings
from broker.crypto import PublicKey
from broker.db import utcnow
from broker.deps import Admin, DbSession, SettingsDep
from broker.errors import NotFound, SpocError
from broker.region.service import current, install, load_anchor, record_refusal

router = APIRouter(prefix="/v1/region", tags=["region"])


def anchor_of(settings: Settings) -> list[PublicKey]:
    """The governance keys this node trusts (empty when none is configured: every install is refused)."""
    return load_anchor(settings.region_anchor) if settings.region_anchor is not None else []


@router.get("/directory", operation_id="get_region_directory", responses={404: {}})
def get_region_directory(session: DbSession) -> dict[str, Any]:
    """The signed regional directory this node has installed, exactly as it was signed."""
    installed = current(session)
    if installed is None:
        raise NotFound("this node has no regional directory installed")
    return installed.signed


@router.post("/directory", operation_id="install_region_directory", responses={400: {}, 409: {}, 422: {}})
def install_region_directory(
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    admin: Admin,
    body: Annotated[
        dict[str, Any], Body(description="A signed regional directory (schemas.region.SignedDirectory).")
    ],
) -> dict[str, Any]:
    """Install a newer signed directory. A refusal names its reason and is audited; nothing is installed."""
    actor = admin.actor(request)
    try:
        installed, changed = install(
            session,
            body,
            anchor=anchor_of(settings),
            now=utcnow(),
            actor=actor,
            require_https=settings.environment == "production",
        )
    except SpocError as exc:
        session.rollback()
        record_refusal(session, actor, body, exc)
        session.commit()
        exc.audited = True  # as region:directory-refused; not again as access:denied
        raise
    document = installed.directory
    return {
        "region": document.region,
        "version": document.version,
        "digest": installed.digest,
        "installed": changed,
        "valid_until": document.valid_until.isoformat(),
    }
