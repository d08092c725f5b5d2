"""One client address is refused (429, Retry-After, audited) long before it could lock an account, and
login and logout entries carry the account's country, over HTTP."""

from __future__ import annotations

import re
import uuid

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.accounts.models import User
from broker.accounts.service import MAX_FAILED_LOGINS, create_user
from broker.audit.actions import AuditAction
from broker.audit.service import SYSTEM
from broker.config import Settings
from tests.broker.messages.spoc_builders import audit_entries, committed
from tests.factories import Region

PASSWORD = "correct horse battery staple"


def _new_account(client: TestClient, *, cp: str = "ME-SPOC") -> str:
    username = f"thr-{uuid.uuid4().hex[:12]}"
    with committed(client) as session:
        create_user(
            session, username=username, password=PASSWORD, role="officer", contact_point_id=cp, actor=SYSTEM
        )
    return username


def _from_new_address(app: FastAPI) -> TestClient:
    n = uuid.uuid4().int
    return TestClient(app, client=(f"172.{16 + n % 16}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}", 50000))


def _login(client: TestClient, username: str, password: str) -> int:
    status: int = client.post("/v1/auth/login", json={"username": username, "password": password}).status_code
    return status


def test_one_address_is_refused_before_it_can_lock_an_account(app: FastAPI, client: TestClient) -> None:
    username = _new_account(client)
    attacker = _from_new_address(app)
    statuses = [_login(attacker, username, f"guess number {i}") for i in range(3 * MAX_FAILED_LOGINS)]
    assert statuses.count(401) < MAX_FAILED_LOGINS // 2 + 1, statuses
    assert statuses[-1] == 429
    refused = attacker.post("/v1/auth/login", json={"username": username, "password": "one more guess"})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["content-type"].startswith("application/problem+json")
    # Refused even with the right password: a throttled address gets no answer about passwords.
    assert _login(attacker, username, PASSWORD) == 429
    with committed(client) as session:
        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        assert user.locked_until is None
        outcomes = [
            e.outcome
            for e in audit_entries(session, object_id=username, action=AuditAction.SESSION_LOGIN_FAILED)
        ]
    assert "throttled" in outcomes
    # The owner, elsewhere, still logs in.
    assert _login(_from_new_address(app), username, PASSWORD) == 200


def test_one_address_spraying_many_accounts_is_refused(app: FastAPI, settings: Settings) -> None:
    sprayer = _from_new_address(app)
    statuses = [_login(sprayer, f"nobody-{uuid.uuid4().hex[:8]}", "a guessed password") for _ in range(40)]
    assert statuses[-1] == 429
    assert statuses[: settings.login_source_burst] == [401] * settings.login_source_burst


def test_many_addresses_still_lock_the_account(app: FastAPI, client: TestClient) -> None:
    """Distributed guessing: the account's own count, from any addresses, locks it."""
    username = _new_account(client)
    for i in range(MAX_FAILED_LOGINS):
        assert _login(_from_new_address(app), username, f"guess {i}") == 401
    with committed(client) as session:
        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        assert user.locked_until is not None
    assert _login(_from_new_address(app), username, PASSWORD) == 401


def test_the_login_form_answers_429_with_retry_after(app: FastAPI, client: TestClient) -> None:
    username = _new_account(client)
    browser = _from_new_address(app)
    status = 0
    for i in range(10):
        token = re.search(r'name="csrf" value="([^"]+)"', browser.get("/ui/login").text)
        assert token is not None
        form = {"username": username, "password": f"guess {i}", "csrf": token.group(1)}
        response = browser.post("/ui/login", data=form, follow_redirects=False)
        status = response.status_code
        if status == 429:
            break
        assert status == 303
    assert status == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert "Too many failed logins" in response.text


def test_failed_login_and_logout_are_seen_by_the_national_auditor(
    app: FastAPI, client: TestClient, region: Region
) -> None:
    username = _new_account(client, cp="AL-SPOC")
    nobody = f"nobody-{uuid.uuid4().hex[:8]}"
    user_side = _from_new_address(app)
    assert _login(user_side, username, "not the password") == 401
    assert _login(user_side, nobody, "not the password") == 401
    token = user_side.post("/v1/auth/login", json={"username": username, "password": PASSWORD}).json()[
        "token"
    ]
    assert user_side.post("/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204

    def seen_by(auditor: str, actor: str) -> list[tuple[str, str, list[str]]]:
        auditor_side = _from_new_address(app)
        login = auditor_side.post(
            "/v1/auth/login", json={"username": auditor, "password": region.password(auditor)}
        )
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        found = auditor_side.get("/v1/audit/entries", params={"actor": actor}, headers=headers)
        assert found.status_code == 200, found.text
        return [(e["action"], e["outcome"], e["countries"]) for e in found.json()["entries"]]

    national = seen_by("al-auditor", username)
    assert (AuditAction.SESSION_LOGIN_FAILED, "denied", ["AL"]) in national
    assert (AuditAction.SESSION_LOGOUT, "ok", ["AL"]) in national
    assert seen_by("me-auditor", username) == []
    # An unknown username: an entry all the same, with no country (the regional auditor sees it).
    assert seen_by("al-auditor", nobody) == []
    assert seen_by("regional-auditor", nobody) == [(AuditAction.SESSION_LOGIN_FAILED, "denied", [])]


def test_an_ipv6_client_walking_its_own_64_is_throttled_as_one_address(
    app: FastAPI, client: TestClient
) -> None:
    """Each guess from a fresh address of one /64 (what one IPv6 subscriber holds) still draws on one bucket."""
    username = _new_account(client)
    prefix = f"2001:db8:{uuid.uuid4().int % 0xFFFF:x}:1"
    statuses = [
        _login(TestClient(app, client=(f"{prefix}::{i + 1:x}", 50000)), username, f"guess {i}")
        for i in range(3 * MAX_FAILED_LOGINS)
    ]
    assert statuses[-1] == 429, statuses
    assert statuses.count(401) < MAX_FAILED_LOGINS // 2 + 1, statuses
    with committed(client) as session:
        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        assert user.locked_until is None  # refused before it could lock the account
    # Another /64 is another subscriber: not refused for the first one's guesses.
    other = TestClient(app, client=(f"2001:db8:{(uuid.uuid4().int % 0xFFFF) ^ 1:x}:2::1", 50000))
    assert _login(other, username, PASSWORD) == 200
