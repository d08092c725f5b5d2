"""Login, lockout and logout over the HTTP API (commits for real, so each test makes its own account)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.accounts.models import User
from broker.accounts.service import MAX_FAILED_LOGINS
from broker.audit.actions import AuditAction
from tests.broker.messages.spoc_builders import (
    ACCOUNT_PASSWORD,
    audit_entries,
    committed,
    new_officer_account,
)

PASSWORD = ACCOUNT_PASSWORD


def _new_account(client: TestClient) -> str:
    return new_officer_account(client, "api")


def _login(client: TestClient, username: str, password: str) -> int:
    status: int = client.post("/v1/auth/login", json={"username": username, "password": password}).status_code
    return status


def test_right_password_gives_a_bearer_token_that_works(client: TestClient) -> None:
    username = _new_account(client)
    response = client.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token"]
    assert body["csrf_token"]
    queue = client.get("/v1/cp/queues/outbound", headers={"Authorization": f"Bearer {body['token']}"})
    assert queue.status_code == 200


def test_wrong_password_is_401_problem_json(client: TestClient) -> None:
    username = _new_account(client)
    response = client.post("/v1/auth/login", json={"username": username, "password": "not the password"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "urn:spoc:problem:not-authenticated"


def test_failed_login_over_the_api_is_audited(client: TestClient) -> None:
    """The request's unit of work rolls back on the 401; the failure's audit entry must survive it."""
    username = _new_account(client)
    assert _login(client, username, "not the password") == 401
    with committed(client) as session:
        failures = audit_entries(session, object_id=username, action=AuditAction.SESSION_LOGIN_FAILED)
        assert [f.outcome for f in failures] == ["denied"]


def test_failed_logins_over_the_api_lock_the_account(app: FastAPI, client: TestClient) -> None:
    """The failure count must survive the 401's rollback, or the API would never lock an account.
    (From as many addresses: one address alone is throttled before it could lock; test_accounts_throttle.)"""
    username = _new_account(client)
    for i in range(MAX_FAILED_LOGINS):
        elsewhere = TestClient(app, client=(f"192.0.2.{i + 1}", 40000))
        assert _login(elsewhere, username, "not the password") == 401
    with committed(client) as session:
        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        assert user.locked_until is not None
    assert _login(client, username, PASSWORD) == 401


def test_logout_revokes_the_bearer_token(client: TestClient) -> None:
    username = _new_account(client)
    token = client.post("/v1/auth/login", json={"username": username, "password": PASSWORD}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/cp/queues/inbound", headers=headers).status_code == 200
    assert client.post("/v1/auth/logout", headers=headers).status_code == 204
    after = client.get("/v1/cp/queues/inbound", headers=headers)
    assert after.status_code == 401
    assert after.headers["content-type"].startswith("application/problem+json")
    assert client.post("/v1/auth/logout", headers=headers).status_code == 401


def test_a_made_up_bearer_token_is_401(client: TestClient) -> None:
    response = client.get("/v1/cp/queues/inbound", headers={"Authorization": "Bearer made-up"})
    assert response.status_code == 401
