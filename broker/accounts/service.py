"""Accounts, password login (argon2id), lockout and expiring sessions.

Session tokens are random 256-bit values given to the client once; the database keeps only their
SHA-256, so a copy of the database does not log anyone in. Every login, failure and logout is audited.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.accounts import totp
from broker.accounts.models import User, UserSession
from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.crypto import AtRestCipher
from broker.db import utcnow
from broker.errors import InvalidInput, NotAuthenticated
from broker.errors import VerificationError as CryptoError

ROLES = ("officer", "supervisor", "auditor", "admin")
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
_hasher = PasswordHasher()
# A hash to verify against when the user does not exist, so timing does not reveal usernames.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    if len(password) < 12:
        raise InvalidInput("passwords have at least 12 characters")
    return _hasher.hash(password)


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: str,
    contact_point_id: str | None = None,
    country: str | None = None,
    clearance: str = "UNCLASSIFIED",
    full_name: str = "",
    actor: Actor,
) -> User:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role in ("officer", "supervisor") and contact_point_id is None:
        raise InvalidInput("officers and supervisors belong to a contact point")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        contact_point_id=contact_point_id,
        country=country,
        clearance=clearance,
        full_name=full_name,
    )
    session.add(user)
    session.flush()
    record(
        session,
        actor=actor,
        action=AuditAction.ACCOUNT_CREATED,
        object_type="user",
        object_id=username,
        countries=[country] if country else [],
        details={"role": role, "clearance": clearance},
    )
    return user


@dataclass(frozen=True)
class NewSession:
    token: str
    csrf_token: str
    session: UserSession
    user: User


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def login(
    session: Session,
    *,
    username: str,
    password: str,
    ttl_seconds: int,
    request_id: str | None,
    otp: str | None = None,
    master: AtRestCipher | None = None,
) -> NewSession:
    """Check the password (and the TOTP code, for an account with a second factor) and open a session.

    Failures are counted, audited and locked out; a wrong or replayed code counts like a wrong password.
    ``master`` unseals the account's TOTP secret; without it, an account with a second factor cannot log in.
    """
    now = utcnow()
    user = session.scalar(select(User).where(User.username == username))
    actor = Actor(name=username[:64], role=user.role if user else "unknown", request_id=request_id)
    ok = False
    try:
        ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password) and user is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    locked = user is not None and user.locked_until is not None and user.locked_until > now
    if ok and user is not None and user.totp_secret is not None:
        ok = _second_factor(user, otp, master, now=now)
    if not ok or locked or user is None or not user.active:
        if user is not None and not locked:
            user.failed_logins += 1
            if user.failed_logins >= MAX_FAILED_LOGINS:
                user.locked_until = now + LOCKOUT
                user.failed_logins = 0
        record(
            session,
            actor=actor,
            action=AuditAction.SESSION_LOGIN_FAILED,
            object_type="user",
            object_id=username[:64],
            outcome="locked" if locked else "denied",
        )
        raise NotAuthenticated("invalid username or password (or code), or the account is locked")
    user.failed_logins = 0
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    row = UserSession(
        token_hash=_digest(token),
        user_id=user.id,
        csrf_token=csrf,
        expires_at=now + timedelta(seconds=ttl_seconds),
    )
    session.add(row)
    record(
        session,
        actor=actor,
        action=AuditAction.SESSION_LOGIN,
        object_type="user",
        object_id=user.username,
        countries=[user.country] if user.country else [],
    )
    session.flush()
    return NewSession(token=token, csrf_token=csrf, session=row, user=user)


def _second_factor(user: User, otp: str | None, master: AtRestCipher | None, *, now: datetime) -> bool:
    if otp is None or master is None or user.totp_secret is None:
        return False
    try:
        secret = master.decrypt(user.totp_secret, context=totp_context(user.username)).decode()
        user.totp_last_step = totp.verify(secret, otp, now=now.timestamp(), last_step=user.totp_last_step)
    except (NotAuthenticated, CryptoError):
        return False
    return True


def totp_context(username: str) -> str:
    """The additional data a TOTP secret is sealed with: a sealed secret moved to another account fails."""
    return f"totp:{username}"


def authenticate(session: Session, token: str) -> tuple[User, UserSession]:
    row = session.scalar(select(UserSession).where(UserSession.token_hash == _digest(token)))
    if row is None or row.revoked or row.expires_at <= utcnow():
        raise NotAuthenticated("session expired or invalid; log in again")
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        raise NotAuthenticated("session expired or invalid; log in again")
    return user, row


def logout(session: Session, row: UserSession, user: User, *, request_id: str | None) -> None:
    row.revoked = True
    record(
        session,
        actor=Actor(user.username, user.role, request_id),
        action=AuditAction.SESSION_LOGOUT,
        object_type="user",
        object_id=user.username,
    )
    session.flush()
