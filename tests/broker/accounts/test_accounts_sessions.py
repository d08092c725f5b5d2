"""Password login, lockout and expiring, revocable sessions (service level, rolled back)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.accounts.service import (
    FAILURE_WINDOW,
    LOCKOUT,
    MAX_FAILED_LOGINS,
    authenticate,
    create_user,
    hash_password,
    login,
    logout,
)
from broker.accounts.throttle import LoginPolicy
from broker.audit.actions import AuditAction
from broker.audit.service import SYSTEM
from broker.config import Settings
from broker.db import utcnow
from broker.errors import InvalidInput, NotAuthenticated
from tests.broker.messages.spoc_builders import audit_entries

PASSWORD = "correct horse battery staple"


@pytest.fixture
def account(db: Session) -> User:
    return create_user(
        db,
        username="acct-test-officer",
        password=PASSWORD,
        role="officer",
        contact_point_id="ME-SPOC",
        country="ME",
        clearance="RESTRICTED",
        actor=SYSTEM,
    )


def _login(db: Session, password: str, *, username: str = "acct-test-officer", ttl: int = 3600) -> str:
    return login(db, username=username, password=password, ttl_seconds=ttl, request_id=None).token


def test_right_password_opens_a_session_that_authenticates(db: Session, account: User) -> None:
    token = _login(db, PASSWORD)
    user, row = authenticate(db, token)
    assert user.id == account.id
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()  # the token itself is not stored
    assert row.token_hash != token
    [entry] = audit_entries(db, object_id=account.username, action=AuditAction.SESSION_LOGIN)
    assert entry.outcome == "ok"


def test_wrong_password_is_refused_and_audited(db: Session, account: User) -> None:
    with pytest.raises(NotAuthenticated):
        _login(db, "not the password at all")
    assert account.failed_logins == 1
    [entry] = audit_entries(db, object_id=account.username, action=AuditAction.SESSION_LOGIN_FAILED)
    assert entry.outcome == "denied"
    assert "not the password" not in str(entry.details)


def test_unknown_user_gets_the_same_answer(db: Session) -> None:
    with pytest.raises(NotAuthenticated) as unknown:
        _login(db, PASSWORD, username="nobody-here")
    assert "invalid username or password" in unknown.value.detail
    [entry] = audit_entries(db, object_id="nobody-here", action=AuditAction.SESSION_LOGIN_FAILED)
    assert entry.role == "unknown"


def test_ten_failures_lock_the_account_even_for_the_right_password(db: Session, account: User) -> None:
    assert MAX_FAILED_LOGINS == 10
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(NotAuthenticated):
            _login(db, "wrong password, again")
    assert account.locked_until is not None
    assert account.locked_until > utcnow() + LOCKOUT - timedelta(minutes=1)

    with pytest.raises(NotAuthenticated):
        _login(db, PASSWORD)
    failures = audit_entries(db, object_id=account.username, action=AuditAction.SESSION_LOGIN_FAILED)
    assert [f.outcome for f in failures] == ["denied"] * MAX_FAILED_LOGINS + ["locked"]
    assert audit_entries(db, object_id=account.username, action=AuditAction.SESSION_LOGIN) == []


def test_fewer_failures_do_not_lock_and_a_success_resets_the_count(db: Session, account: User) -> None:
    for _ in range(MAX_FAILED_LOGINS - 1):
        with pytest.raises(NotAuthenticated):
            _login(db, "wrong password, again")
    _login(db, PASSWORD)
    assert account.failed_logins == 0
    assert account.locked_until is None
    for _ in range(MAX_FAILED_LOGINS - 1):
        with pytest.raises(NotAuthenticated):
            _login(db, "wrong password, again")
    _login(db, PASSWORD)  # the count started again from zero


def test_the_lock_ends_after_its_time(db: Session, account: User) -> None:
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(NotAuthenticated):
            _login(db, "wrong password, again")
    account.locked_until = utcnow() - timedelta(seconds=1)
    db.flush()
    authenticate(db, _login(db, PASSWORD))


def test_an_inactive_account_cannot_log_in_nor_use_its_session(db: Session, account: User) -> None:
    token = _login(db, PASSWORD)
    account.active = False
    db.flush()
    with pytest.raises(NotAuthenticated):
        authenticate(db, token)
    with pytest.raises(NotAuthenticated):
        _login(db, PASSWORD)


def test_sessions_expire(db: Session, account: User) -> None:
    new = login(db, username=account.username, password=PASSWORD, ttl_seconds=60, request_id=None)
    assert new.session.expires_at - utcnow() <= timedelta(seconds=60)
    authenticate(db, new.token)
    new.session.expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    with pytest.raises(NotAuthenticated):
        authenticate(db, new.token)


def test_logout_revokes_the_token(db: Session, account: User) -> None:
    token = _login(db, PASSWORD)
    user, row = authenticate(db, token)
    other = _login(db, PASSWORD)
    logout(db, row, user, request_id=None)
    with pytest.raises(NotAuthenticated):
        authenticate(db, token)
    authenticate(db, other)  # only that session ends
    assert audit_entries(db, object_id=account.username, action=AuditAction.SESSION_LOGOUT)


def test_a_made_up_token_does_not_authenticate(db: Session) -> None:
    with pytest.raises(NotAuthenticated):
        authenticate(db, "not-a-token")


def test_short_passwords_and_unknown_roles_are_refused(db: Session) -> None:
    with pytest.raises(InvalidInput):
        hash_password("short")
    with pytest.raises(InvalidInput):
        create_user(db, username="x-role", password=PASSWORD, role="root", actor=SYSTEM)
    with pytest.raises(InvalidInput):
        create_user(db, username="x-cp", password=PASSWORD, role="officer", actor=SYSTEM)


def test_failures_older_than_the_window_start_the_count_again(db: Session, account: User) -> None:
    for _ in range(MAX_FAILED_LOGINS - 1):
        with pytest.raises(NotAuthenticated):
            _login(db, "wrong password, again")
    assert account.failures_since is not None
    account.failures_since -= FAILURE_WINDOW + timedelta(seconds=1)  # as if they were made long ago
    db.flush()
    with pytest.raises(NotAuthenticated):
        _login(db, "wrong password, again")
    assert account.failed_logins == 1
    assert account.locked_until is None


def test_the_default_policy_is_the_settings_default() -> None:
    defaults = Settings(environment="test", master_key=SecretStr("x" * 32))
    assert LoginPolicy.from_settings(defaults) == LoginPolicy()
    assert LoginPolicy(MAX_FAILED_LOGINS, FAILURE_WINDOW, LOCKOUT) == LoginPolicy(
        10, timedelta(minutes=15), timedelta(minutes=15)
    )


def test_settings_refuse_numbers_that_let_one_address_lock_an_account() -> None:
    with pytest.raises(ValidationError, match="one address could lock an account"):
        Settings(environment="test", master_key=SecretStr("x" * 32), login_source_account_burst=10)


def test_authentication_is_one_statement_and_holds_the_contact_point(db: Session, account: User) -> None:
    """An officer's every call authenticates: the session, its account and the account's contact point come
    in one statement, and the contact point is then found without another (``officer_contact_point``)."""
    from sqlalchemy import event

    from broker.directory.models import ContactPoint

    token = _login(db, PASSWORD)
    db.flush()
    db.expunge_all()
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    engine = db.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        user, _row = authenticate(db, token)
        contact_point = db.get(ContactPoint, "ME-SPOC")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert user.id == account.id
    assert contact_point is not None
    assert contact_point.country == "ME"
