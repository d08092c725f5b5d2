"""The optional second factor: RFC 6238 TOTP, checked at login, each code good once."""

from __future__ import annotations

import base64
import time

import pytest
from sqlalchemy.orm import Session

from broker.accounts import totp
from broker.accounts.admin import disable_totp, enable_totp
from broker.accounts.models import User
from broker.accounts.service import MAX_FAILED_LOGINS, create_user, login
from broker.audit.actions import AuditAction
from broker.audit.service import SYSTEM
from broker.config import Settings
from broker.crypto import MasterKey
from broker.errors import NotAuthenticated
from tests.broker.messages.spoc_builders import audit_entries

PASSWORD = "correct horse battery staple"
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()  # RFC 6238 Appendix B, SHA-1


@pytest.mark.parametrize(
    ("unix", "code"),
    [
        (59, "287082"),
        (1111111109, "081804"),
        (1111111111, "050471"),
        (1234567890, "005924"),
        (2000000000, "279037"),
    ],
)
def test_rfc_6238_vectors(unix: int, code: str) -> None:
    """The RFC's 8-digit values, truncated to the 6 digits authenticator apps show."""
    assert totp.code_at(RFC_SECRET, unix // 30) == code
    assert totp.verify(RFC_SECRET, code, now=unix, last_step=None) == unix // 30


def test_a_code_is_good_for_one_step_either_side_and_once() -> None:
    step = 1111111109 // 30
    code = totp.code_at(RFC_SECRET, step)
    assert totp.verify(RFC_SECRET, code, now=(step + 1) * 30 + 5, last_step=None) == step  # drift
    with pytest.raises(NotAuthenticated):
        totp.verify(RFC_SECRET, code, now=(step + 3) * 30, last_step=None)  # too old
    with pytest.raises(NotAuthenticated):
        totp.verify(RFC_SECRET, code, now=step * 30, last_step=step)  # replay


def test_provisioning_uri_for_authenticator_apps() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXP", username="al-officer")
    assert uri.startswith("otpauth://totp/spoc%3Aal-officer?secret=JBSWY3DPEHPK3PXP")
    assert "digits=6" in uri
    assert "period=30" in uri


@pytest.fixture
def master(settings: Settings) -> MasterKey:
    return MasterKey.from_secret(settings.master_key_secret())


@pytest.fixture
def account(db: Session) -> User:
    return create_user(
        db,
        username="totp-officer",
        password=PASSWORD,
        role="officer",
        contact_point_id="ME-SPOC",
        clearance="RESTRICTED",
        actor=SYSTEM,
    )


def test_login_with_a_second_factor(db: Session, account: User, master: MasterKey) -> None:
    secret, _ = enable_totp(db, account.username, master=master, actor=SYSTEM)
    assert account.totp_secret is not None
    assert secret not in account.totp_secret  # sealed under the master key
    assert audit_entries(db, object_id=account.username, action=AuditAction.ACCOUNT_TOTP_ENABLED)

    def attempt(otp: str | None, master_key: MasterKey | None = master) -> None:
        login(
            db,
            username=account.username,
            password=PASSWORD,
            ttl_seconds=60,
            request_id=None,
            otp=otp,
            master=master_key,
        )

    with pytest.raises(NotAuthenticated):
        attempt(None)  # the password alone is not enough
    code = totp.code_at(secret, int(time.time() // 30))
    with pytest.raises(NotAuthenticated):
        attempt(code, master_key=None)  # cannot check: fail closed
    attempt(code)
    with pytest.raises(NotAuthenticated):
        attempt(code)  # a code is good once
    assert account.failed_logins == 1  # counted (the good login before reset the count)

    disable_totp(db, account.username, actor=SYSTEM)
    attempt(None)


def test_wrong_codes_lock_the_account_like_wrong_passwords(
    db: Session, account: User, master: MasterKey
) -> None:
    enable_totp(db, account.username, master=master, actor=SYSTEM)
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(NotAuthenticated):
            login(
                db,
                username=account.username,
                password=PASSWORD,
                ttl_seconds=60,
                request_id=None,
                otp="000000",
                master=master,
            )
    assert account.locked_until is not None
