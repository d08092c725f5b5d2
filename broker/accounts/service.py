"""Accounts, password login (argon2id), lockout and expiring sessions.

Session tokens are random 256-bit values given to the client once; the database keeps only their
SHA-256, so a copy of the database does not log anyone in. Every login, failure and logout is audited.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import argon2.profiles
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import ColumnElement, case, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.accounts import totp
from broker.accounts.models import User, UserSession
from broker.accounts.throttle import LoginPolicy, LoginThrottle
from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.crypto import AtRestCipher
from broker.db import utcnow
from broker.directory.models import ContactPoint
from broker.errors import Conflict, InvalidInput, NotAuthenticated, RateLimited
from broker.errors import VerificationError as CryptoError
from schemas.codelists import codes

ROLES = ("officer", "supervisor", "auditor", "admin")
# The defaults of ``LoginPolicy`` (and of ``Settings``): 10 failures within 15 minutes lock for 15 minutes.
MAX_FAILED_LOGINS = LoginPolicy.max_failures
FAILURE_WINDOW = LoginPolicy.failure_window
LOCKOUT = LoginPolicy.lockout
DEFAULT_POLICY = LoginPolicy()
# Test suites only (``Settings.test_cheap_password_hash``, refused in production): new hashes use argon2's
# cheapest parameters, so the hundreds of accounts and logins of a test run cost microseconds, not ~0.1 s
# each. Verifying reads the parameters from the stored hash, so hashes made either way verify either way.
CHEAP_HASH_VARIABLE = "SPOC_TEST_CHEAP_PASSWORD_HASH"


@functools.cache
def _hasher() -> PasswordHasher:
    if os.environ.get(CHEAP_HASH_VARIABLE, "").lower() in ("1", "true"):
        return PasswordHasher.from_parameters(argon2.profiles.CHEAPEST)
    return PasswordHasher()  # argon2id, RFC 9106's second recommendation (t=3, m=64 MiB, p=4)


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so timing does not reveal usernames."""
    return _hasher().hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    if len(password) < 12:
        raise InvalidInput("passwords have at least 12 characters")
    return _hasher().hash(password)


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: str,
    contact_point_id: str | None = None,
    country: str | None = None,
    regional: bool = False,
    clearance: str = "UNCLASSIFIED",
    full_name: str = "",
    actor: Actor,
) -> User:
    """Create an account. An officer's or supervisor's country is its contact point's; an auditor needs
    either a ``country`` (national: sees that country's events) or ``regional=True`` (sees every country),
    never neither, so a forgotten field cannot widen an auditor's scope to the whole region."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role in ("officer", "supervisor") and contact_point_id is None:
        raise InvalidInput("officers and supervisors belong to a contact point")
    if contact_point_id is not None:
        cp_country = session.scalar(select(ContactPoint.country).where(ContactPoint.id == contact_point_id))
        if cp_country is None:
            raise InvalidInput(f"no contact point {contact_point_id}")
        if country is not None and country != cp_country:
            raise InvalidInput(f"the country of {contact_point_id} is {cp_country}, not {country}")
        country = cp_country
    if role == "auditor":
        if regional and country is not None:
            raise InvalidInput("an auditor is either national (a country) or regional, not both")
        if not regional and country is None:
            raise InvalidInput(
                "give the auditor a country (a national auditor), or make it regional explicitly "
                "(--regional; sees every country)"
            )
    elif regional:
        raise InvalidInput("only auditors are regional")
    if role == "auditor" and country is not None and country not in codes("countries"):
        raise InvalidInput(f"unknown country {country!r}")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        contact_point_id=contact_point_id,
        country=country,
        clearance=clearance,
        full_name=full_name,
    )
    try:
        with session.begin_nested():  # a taken username undoes only this insert, not the caller's work
            session.add(user)
            session.flush()
    except IntegrityError:
        raise Conflict(f"the username {username} is taken; choose another") from None
    record(
        session,
        actor=actor,
        action=AuditAction.ACCOUNT_CREATED,
        object_type="user",
        object_id=username,
        countries=[country] if country else [],
        details={"role": role, "clearance": clearance, "regional": regional},
    )
    return user


def account_countries(user: User | None) -> list[str]:
    """The countries an account's login and logout entries carry, so that country's national auditor sees
    them: an officer's or supervisor's contact point's country, a national auditor's country; none for an
    admin, a regional auditor or an unknown username."""
    if user is None or user.role == "admin" or user.country is None:
        return []
    return [user.country]


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
    source: str | None = None,
    throttle: LoginThrottle | None = None,
    policy: LoginPolicy = DEFAULT_POLICY,
) -> NewSession:
    """Check the password (and the TOTP code, for an account with a second factor) and open a session.

    ``throttle`` and ``source`` (the client address) refuse an address that failed too often with
    RateLimited (429), before the password is checked. Failures are counted and audited; ``policy``
    locks the account. A wrong or replayed code counts like a wrong password. ``master`` unseals the
    account's TOTP secret; without it, an account with a second factor cannot log in.

    Concurrency: the failure count, the lockout and the TOTP step are changed by single conditional
    UPDATEs, so parallel requests cannot lose a failure or use one code twice (the row's lock serialises
    them, and PostgreSQL re-checks each condition on the row as the other request left it).
    """
    now = utcnow()
    name = username[:64]
    user = session.scalar(select(User).where(User.username == username))
    actor = Actor(name=name, role=user.role if user else "unknown", request_id=request_id)
    countries = account_countries(user)
    if throttle is not None and source is not None:
        wait = throttle.reserve(source, name)
        if wait is not None:
            _failed(session, actor, name, countries, outcome="throttled", source=source)
            raise RateLimited(
                f"too many failed logins from this address; retry in {wait} s", retry_after=wait
            )
    ok = False
    try:
        ok = _hasher().verify(user.password_hash if user else _dummy_hash(), password) and user is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    step: int | None = None
    if ok and user is not None and user.totp_secret is not None:
        step = _second_factor(user, otp, master, now=now)
        ok = step is not None
    if ok and user is not None:
        ok = _claim_success(session, user, now=now, step=step)
    if not ok or user is None:
        outcome = "denied" if user is None else _count_failure(session, user, now=now, policy=policy)
        _failed(session, actor, name, countries, outcome=outcome, source=source)
        raise NotAuthenticated("invalid username or password (or code), or the account is locked")
    if throttle is not None and source is not None:
        throttle.release(source, name)
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
        countries=countries,
    )
    session.flush()
    return NewSession(token=token, csrf_token=csrf, session=row, user=user)


def _failed(
    session: Session, actor: Actor, name: str, countries: list[str], *, outcome: str, source: str | None
) -> None:
    record(
        session,
        actor=actor,
        action=AuditAction.SESSION_LOGIN_FAILED,
        object_type="user",
        object_id=name,
        outcome=outcome,
        countries=countries,
        details={"source": source[:64]} if source else {},
    )
    session.flush()


def _not_locked(now: datetime) -> ColumnElement[bool]:
    return or_(User.locked_until.is_(None), User.locked_until <= now)


def _claim_success(session: Session, user: User, *, now: datetime, step: int | None) -> bool:
    """Reset the failure count, and use the TOTP ``step``, if the account is still active, not locked by a
    parallel request, and (with a code) has not used this step or a later one: one compare-and-set."""
    conditions = [User.id == user.id, User.active.is_(True), _not_locked(now)]
    values: dict[str, object] = {"failed_logins": 0, "failures_since": None}
    if step is not None:
        conditions.append(or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        values["totp_last_step"] = step
    claimed = session.execute(
        update(User)
        .where(*conditions)
        .values(values)
        .returning(User.id)
        .execution_options(synchronize_session=False)
    ).first()
    session.expire(user, ["failed_logins", "failures_since", "totp_last_step"])
    return claimed is not None


def _count_failure(session: Session, user: User, *, now: datetime, policy: LoginPolicy) -> str:
    """Count one failure atomically and lock the account at ``policy.max_failures``; the audit outcome.

    A count older than the window starts again at one. A locked account's failures are not counted (the
    lock already holds and ends at its time)."""
    stale = or_(User.failures_since.is_(None), User.failures_since <= now - policy.failure_window)
    count = session.execute(
        update(User)
        .where(User.id == user.id, _not_locked(now))
        .values(
            failed_logins=case((stale, 1), else_=User.failed_logins + 1),
            failures_since=case((stale, now), else_=User.failures_since),
        )
        .returning(User.failed_logins)
        .execution_options(synchronize_session=False)
    ).scalar()
    if count is not None and count >= policy.max_failures:
        # Still the same transaction, holding the row's lock from the UPDATE above: nobody counts between.
        session.execute(
            update(User)
            .where(User.id == user.id)
            .values(locked_until=now + policy.lockout, failed_logins=0, failures_since=None)
            .execution_options(synchronize_session=False)
        )
    session.expire(user, ["failed_logins", "failures_since", "locked_until"])
    return "locked" if count is None else "denied"


def _second_factor(user: User, otp: str | None, master: AtRestCipher | None, *, now: datetime) -> int | None:
    """The TOTP step ``otp`` matches, later than the last one used; None if it does not (or is a replay).
    The step is only claimed by ``_claim_success``, atomically."""
    if otp is None or master is None or user.totp_secret is None:
        return None
    try:
        secret = master.decrypt(user.totp_secret, context=totp_context(user.username)).decode()
        return totp.verify(secret, otp, now=now.timestamp(), last_step=user.totp_last_step)
    except (NotAuthenticated, CryptoError):
        return None


def totp_context(username: str) -> str:
    """The additional data a TOTP secret is sealed with: a sealed secret moved to another account fails."""
    return f"totp:{username}"


#: ``session.info`` key: the contact point of the account a request authenticated, held for its unit of work.
_CONTACT_POINT = "spoc.accounts.contact_point"


def authenticate(session: Session, token: str) -> tuple[User, UserSession]:
    """The account and session of a bearer token or session cookie: one statement for the session, its
    account and the account's contact point, which stays in the unit of work for the request (an officer's
    every call looks it up; ``session.get`` then finds it without a query)."""
    found = session.execute(
        select(UserSession, User, ContactPoint)
        .join(User, User.id == UserSession.user_id)
        .outerjoin(ContactPoint, ContactPoint.id == User.contact_point_id)
        .where(UserSession.token_hash == _digest(token))
    ).first()
    if found is None:
        raise NotAuthenticated("session expired or invalid; log in again")
    row, user, contact_point = found
    if row.revoked or row.expires_at <= utcnow() or not user.active:
        raise NotAuthenticated("session expired or invalid; log in again")
    # The identity map holds objects weakly: without this reference it would be read again.
    session.info[_CONTACT_POINT] = contact_point
    return user, row


def logout(session: Session, row: UserSession, user: User, *, request_id: str | None) -> None:
    row.revoked = True
    record(
        session,
        actor=Actor(user.username, user.role, request_id),
        action=AuditAction.SESSION_LOGOUT,
        object_type="user",
        object_id=user.username,
        countries=account_countries(user),
    )
    session.flush()
