"""Managing accounts (service and ``spoc users``): every change audited, sessions ended where rights change."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from broker.accounts import admin
from broker.accounts.cli import users_app
from broker.accounts.models import User
from broker.accounts.service import MAX_FAILED_LOGINS, authenticate, create_user, login
from broker.audit.actions import AuditAction
from broker.audit.service import SYSTEM
from broker.config import Settings, get_settings
from broker.errors import InvalidInput, NotAuthenticated, NotFound
from tests.broker.messages.spoc_builders import audit_entries

PASSWORD = "correct horse battery staple"


@pytest.fixture
def account(db: Session) -> User:
    return create_user(
        db,
        username="admin-test-officer",
        password=PASSWORD,
        role="officer",
        contact_point_id="ME-SPOC",
        country="ME",
        clearance="RESTRICTED",
        actor=SYSTEM,
    )


def _session_token(db: Session, password: str = PASSWORD) -> str:
    return login(db, username="admin-test-officer", password=password, ttl_seconds=600, request_id=None).token


def test_lock_ends_sessions_and_unlock_lets_in_again(db: Session, account: User) -> None:
    token = _session_token(db)
    admin.lock(db, account.username, actor=SYSTEM)
    assert admin.status_of(account) == "locked"
    with pytest.raises(NotAuthenticated):
        authenticate(db, token)
    with pytest.raises(NotAuthenticated):
        _session_token(db)
    admin.unlock(db, account.username, actor=SYSTEM)
    assert admin.status_of(account) == "active"
    _session_token(db)
    actions = [e.action for e in audit_entries(db, object_id=account.username)]
    assert AuditAction.ACCOUNT_LOCKED in actions
    assert AuditAction.ACCOUNT_UNLOCKED in actions


def test_unlock_clears_a_lockout_after_failed_logins(db: Session, account: User) -> None:
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(NotAuthenticated):
            _session_token(db, password="wrong password!")
    assert admin.status_of(account) == "locked out"
    admin.unlock(db, account.username, actor=SYSTEM)
    _session_token(db)


def test_a_password_reset_ends_sessions(db: Session, account: User) -> None:
    token = _session_token(db)
    new = admin.new_password()
    admin.reset_password(db, account.username, password=new, actor=SYSTEM)
    with pytest.raises(NotAuthenticated):
        authenticate(db, token)
    with pytest.raises(NotAuthenticated):
        _session_token(db)
    _session_token(db, password=new)
    with pytest.raises(InvalidInput, match="12 characters"):
        admin.reset_password(db, account.username, password="short", actor=SYSTEM)


def test_role_and_clearance_changes_are_checked_audited_and_end_sessions(db: Session, account: User) -> None:
    token = _session_token(db)
    admin.update_user(db, account.username, actor=SYSTEM, role="supervisor", clearance="SECRET")
    assert (account.role, account.clearance) == ("supervisor", "SECRET")
    with pytest.raises(NotAuthenticated):
        authenticate(db, token)
    [entry] = audit_entries(db, object_id=account.username, action=AuditAction.ACCOUNT_UPDATED)
    assert entry.details == {"role": "supervisor", "clearance": "SECRET"}
    with pytest.raises(InvalidInput):
        admin.update_user(db, account.username, actor=SYSTEM, role="superuser")
    with pytest.raises(InvalidInput):
        admin.update_user(db, account.username, actor=SYSTEM, clearance="TOP SECRET")
    with pytest.raises(NotFound):
        admin.lock(db, "nobody-of-that-name", actor=SYSTEM)


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SPOC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SPOC_MASTER_KEY", settings.master_key_secret())
    monkeypatch.setenv("SPOC_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("cli_env")
def test_the_users_cli(db: Session) -> None:
    runner = CliRunner()
    name = f"cli-{uuid.uuid4().hex[:8]}"
    added = runner.invoke(
        users_app,
        ["add", name, "--role", "officer", "--contact-point", "RS-SPOC", "--clearance", "CONFIDENTIAL"],
    )
    assert added.exit_code == 0, added.output
    password = added.output.split("password: ", 1)[1].strip()
    assert len(password) >= 20

    listed = runner.invoke(users_app, ["list"])
    assert listed.exit_code == 0
    [line] = [row for row in listed.output.splitlines() if row.startswith(name)]
    assert "officer" in line
    assert "RS-SPOC" in line
    assert "active" in line

    assert runner.invoke(users_app, ["lock", name]).exit_code == 0
    assert "locked" in next(
        r for r in runner.invoke(users_app, ["list"]).output.splitlines() if r.startswith(name)
    )
    assert runner.invoke(users_app, ["unlock", name]).exit_code == 0
    reset = runner.invoke(users_app, ["reset-password", name])
    assert reset.exit_code == 0
    assert "password: " in reset.output
    second = runner.invoke(users_app, ["totp", name])
    assert second.exit_code == 0
    assert "otpauth://totp/spoc%3A" in second.output

    missing = runner.invoke(users_app, ["lock", "no-such-user"])
    assert missing.exit_code == 1
    assert "spoc users list" in missing.output

    with db.begin_nested():
        row = db.scalar(select(User).where(User.username == name))
        assert row is not None
        assert row.totp_secret is not None
        assert audit_entries(db, object_id=name, action=AuditAction.ACCOUNT_PASSWORD_RESET)
