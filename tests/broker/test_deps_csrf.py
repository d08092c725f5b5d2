"""Every state-changing API call authenticated by the UI's session cookie needs the CSRF header.

The officers' routes had it first; this tries the others a browser session could reach: the auditors'
checkpoint and verification, a witness cosignature, an admin's key revocation and logout.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.factories import Region

WRITES = [
    ("regional-auditor", "/v1/audit/checkpoints", {200, 201}),
    ("regional-auditor", "/v1/audit/verify", {200}),
    ("admin", "/v1/admin/keys/no-such-kid/revoke", {404}),
    ("al-officer", "/v1/auth/logout", {204}),
]


@pytest.mark.parametrize(("username", "path", "allowed"), WRITES)
def test_a_cookie_session_without_the_csrf_header_is_refused(
    client: TestClient, region: Region, username: str, path: str, allowed: set[int]
) -> None:
    login = client.post("/v1/auth/login", json={"username": username, "password": region.password(username)})
    assert login.status_code == 200, login.text
    token, csrf = login.json()["token"], login.json()["csrf_token"]
    body = {"reason": "csrf test"} if "revoke" in path else None
    client.cookies.set("spoc_session", token)
    try:
        refused = client.post(path, json=body)
        assert refused.status_code == 403, refused.text
        assert "X-CSRF-Token" in refused.json()["detail"]
        forged = client.post(path, json=body, headers={"X-CSRF-Token": "not-" + csrf})
        assert forged.status_code == 403
        accepted = client.post(path, json=body, headers={"X-CSRF-Token": csrf})
        assert accepted.status_code in allowed, accepted.text
    finally:
        client.cookies.clear()
    # The same call with the bearer token needs no CSRF header (a browser never sends it on its own).
    if path != "/v1/auth/logout":
        bearer = client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        assert bearer.status_code in allowed, bearer.text
