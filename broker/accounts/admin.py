"""Managing accounts: list, change role and clearance, lock, unlock, reset a password, second factor.

What the admin page and ``spoc users`` call. Every change is audited with the admin (or CLI operator) as
actor; locking, a password reset and a role change end the account's open sessions, so a changed account
never keeps rights it had before.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from broker.accounts import totp
from broker.accounts.models import User, UserSession
from broker.accounts.service import ROLES, hash_password, totp_context
from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.crypto import AtRestCipher
from broker.db import utcnow
from broker.errors import InvalidInput, NotFound
from schemas.codelists import codes

__all__ = [
    "disable_totp",
    "enable_totp",
    "get_user",
    "list_users",
    "lock",
    "new_password",
    "reset_password",
    "status_of",
    "unlock",
    "update_user",
]


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no account {username}; list accounts with `spoc users list`")
    return user


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.contact_point_id, User.role, User.username)).all()


def status_of(user: User, *, now: datetime | None = None) -> str:
    """``active``, ``locked`` (by an admin), or ``locked out`` (too many failed logins, until a time)."""
    if not user.active:
        return "locked"
    if user.locked_until is not None and user.locked_until > (now or utcnow()):
        return "locked out"
    return "active"


def new_password() -> str:
    """A random password for a reset: 20 characters, shown once to the admin, never stored in clear."""
    return secrets.token_urlsafe(15)


def _end_sessions(session: Session, user: User) -> None:
    session.execute(
        update(UserSession)
        .where(UserSession.user_id == user.id, UserSession.revoked.is_(False))
        .values(revoked=True)
    )


def _audit(session: Session, user: User, action: AuditAction, actor: Actor, **details: object) -> None:
    record(
        session,
        actor=actor,
        action=action,
        object_type="user",
        object_id=user.username,
        countries=[user.country] if user.country else [],
        details=dict(details),
    )
    session.flush()


def lock(session: Session, username: str, *, actor: Actor) -> User:
    user = get_user(session, username)
    user.active = False
    _end_sessions(session, user)
    _audit(session, user, AuditAction.ACCOUNT_LOCKED, actor)
    return user


def unlock(session: Session, username: str, *, actor: Actor) -> User:
    """Re-activate an account and clear a lockout after failed logins."""
    user = get_user(session, username)
    user.active = True
    user.locked_until = None
    user.failed_logins = 0
    _audit(session, user, AuditAction.ACCOUNT_UNLOCKED, actor)
    return user


def reset_password(session: Session, username: str, *, password: str, actor: Actor) -> User:
    user = get_user(session, username)
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    _end_sessions(session, user)
    _audit(session, user, AuditAction.ACCOUNT_PASSWORD_RESET, actor)
    return user


def update_user(
    session: Session,
    username: str,
    *,
    actor: Actor,
    role: str | None = None,
    clearance: str | None = None,
    contact_point_id: str | None = None,
    full_name: str | None = None,
) -> User:
    user = get_user(session, username)
    changes: dict[str, object] = {}
    if role is not None and role != user.role:
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        changes["role"] = role
    if clearance is not None and clearance != user.clearance:
        if clearance not in codes("classifications"):
            raise InvalidInput(f"unknown clearance {clearance!r}")
        changes["clearance"] = clearance
    if contact_point_id is not None and contact_point_id != user.contact_point_id:
        changes["contact_point_id"] = contact_point_id or None
    if full_name is not None and full_name != user.full_name:
        changes["full_name"] = full_name
    if not changes:
        return user
    for name, value in changes.items():
        setattr(user, name, value)
    if user.role in ("officer", "supervisor") and user.contact_point_id is None:
        raise InvalidInput("officers and supervisors belong to a contact point")
    if changes.get("role") == "auditor" and user.country is None:
        # An auditor without a country sees every country: that is only ever made explicitly.
        raise InvalidInput(
            "an account without a country cannot become an auditor (it would be regional); create the "
            "auditor with a country, or explicitly as regional"
        )
    _end_sessions(session, user)
    _audit(session, user, AuditAction.ACCOUNT_UPDATED, actor, **changes)
    return user


def enable_totp(session: Session, username: str, *, master: AtRestCipher, actor: Actor) -> tuple[str, str]:
    """Give the account a new second factor; returns (secret, otpauth URI), to be shown once."""
    user = get_user(session, username)
    secret = totp.generate_secret()
    user.totp_secret = master.encrypt(secret.encode(), context=totp_context(user.username))
    user.totp_last_step = None
    _end_sessions(session, user)
    _audit(session, user, AuditAction.ACCOUNT_TOTP_ENABLED, actor)
    return secret, totp.provisioning_uri(secret, username=user.username)


def disable_totp(session: Session, username: str, *, actor: Actor) -> User:
    user = get_user(session, username)
    user.totp_secret = None
    user.totp_last_step = None
    _audit(session, user, AuditAction.ACCOUNT_TOTP_DISABLED, actor)
    return user
