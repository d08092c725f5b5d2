"""Lockout, second factor and throttling hold under parallel logins over HTTP, on PostgreSQL.

Each request runs in its own thread through its own TestClient (the app runs sync routes in a thread
pool), so the requests really overlap in the database. Each client has its own address, as distributed
guessing would; the per-address throttle is tested on its own in ``test_accounts_throttle``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.accounts import admin, totp
from broker.accounts.models import User
from broker.accounts.service import MAX_FAILED_LOGINS
from broker.audit.actions import AuditAction
from broker.audit.service import SYSTEM
from tests.broker.messages.spoc_builders import (
    ACCOUNT_PASSWORD,
    audit_entries,
    committed,
    new_officer_account,
)

PASSWORD = ACCOUNT_PASSWORD
PARALLEL = 20


def _new_account(client: TestClient) -> str:
    return new_officer_account(client, "race")


def _address() -> tuple[str, int]:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}", 40000


def _in_parallel(app: FastAPI, count: int, body: Callable[[int], dict[str, str]]) -> list[int]:
    """POST /v1/auth/login ``count`` times at once, each from its own address; the statuses."""
    clients = [TestClient(app, client=_address()) for _ in range(count)]
    start = threading.Barrier(count)
    statuses: list[int] = [0] * count

    def one(i: int) -> None:
        start.wait()
        statuses[i] = clients[i].post("/v1/auth/login", json=body(i)).status_code

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return statuses


def test_parallel_wrong_passwords_all_count_and_lock_the_account(app: FastAPI, client: TestClient) -> None:
    username = _new_account(client)
    statuses = _in_parallel(
        app, PARALLEL, lambda i: {"username": username, "password": f"wrong guess {i:04}"}
    )
    assert statuses == [401] * PARALLEL
    with committed(client) as session:
        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        assert user.locked_until is not None, (
            f"{PARALLEL} parallel failures did not lock (count {user.failed_logins})"
        )
        failures = audit_entries(session, object_id=username, action=AuditAction.SESSION_LOGIN_FAILED)
    assert len(failures) == PARALLEL
    assert PARALLEL > MAX_FAILED_LOGINS
    # The right password, from yet another address, is refused while the lock holds.
    fresh = TestClient(app, client=_address())
    assert fresh.post("/v1/auth/login", json={"username": username, "password": PASSWORD}).status_code == 401


def test_one_totp_code_opens_at_most_one_session_in_parallel(app: FastAPI, client: TestClient) -> None:
    username = _new_account(client)
    with committed(client) as session:
        secret, _ = admin.enable_totp(session, username, master=app.state.master_key, actor=SYSTEM)
    # Away from a step boundary, so every request sees the same current step.
    if time.time() % totp.STEP_SECONDS > totp.STEP_SECONDS - 5:
        time.sleep(6)
    code = totp.code_at(secret, int(time.time() // totp.STEP_SECONDS))
    statuses = _in_parallel(app, 8, lambda i: {"username": username, "password": PASSWORD, "otp": code})
    assert statuses.count(200) <= 1, statuses
    assert set(statuses) <= {200, 401}
