"""The officers' and admins' pages over HTTP (in-process): CSRF on every form, nothing loaded from outside,
only the allowed decisions, H3 acknowledged before content, the queue's live fragment, admin accounts."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.accounts import totp
from broker.accounts.admin import enable_totp
from broker.accounts.models import User
from broker.accounts.service import create_user
from broker.audit.service import SYSTEM
from broker.crypto import MasterKey
from tests.broker.messages.spoc_builders import URGENT_DIRECT, committed
from tests.factories import Region, agency_client

PASSWORD = "correct horse battery staple"
EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["'](?:https?:)?//""", re.IGNORECASE)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def log_in(client: TestClient, username: str, password: str, otp: str | None = None) -> str:
    client.cookies.clear()
    form = {"username": username, "password": password, "csrf": _csrf(client.get("/ui/login").text)}
    if otp:
        form["otp"] = otp
    response = client.post("/ui/login", data=form, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/queue", "login failed"
    return _csrf(client.get("/ui/provide").text) if "officer" in username or "supervisor" in username else ""


def _request(client: TestClient, region: Region, **build: object) -> str:
    asker = agency_client(region, "RS-MUP", client)
    envelope = asker.build(payload=build.pop("payload", b'{"q": "x"}'), destination_country="MK", **build)  # type: ignore[arg-type]
    message_id: str = asker.submit(envelope)["message_id"]
    return message_id


def test_pages_load_nothing_from_outside_and_carry_a_strict_csp(client: TestClient, region: Region) -> None:
    login_page = client.get("/ui/login")
    assert "default-src 'self'" in login_page.headers["content-security-policy"]
    assert login_page.headers["x-frame-options"] == "DENY"
    log_in(client, "rs-officer", region.password("rs-officer"))
    message_id = _request(client, region, category="fraud", priority=URGENT_DIRECT)
    for path in ("/ui/login", "/ui/queue", f"/ui/messages/{message_id}", "/ui/provide", "/static/spoc.css"):
        body = client.get(path).text
        assert not EXTERNAL.search(body), path
        assert "@import" not in body
        assert "url(http" not in body


def test_every_form_needs_the_csrf_token(client: TestClient, region: Region) -> None:
    message_id = _request(client, region, category="fraud")
    log_in(client, "rs-officer", region.password("rs-officer"))
    for path, form in [
        (f"/ui/messages/{message_id}/decide", {"action": "approve"}),
        (f"/ui/messages/{message_id}/acknowledge", {}),
        (
            "/ui/provide",
            {
                "destination_country": "MK",
                "category": "fraud",
                "classification": "RESTRICTED",
                "information": "x",
            },
        ),
        ("/ui/logout", {}),
        ("/ui/notifications/1/dismiss", {}),
    ]:
        refused = client.post(path, data=form, follow_redirects=False)
        assert refused.status_code == 403, path
        assert "CSRF" in refused.text
        assert refused.headers["content-type"].startswith("text/html")
    assert agency_client(region, "RS-MUP", client).status(message_id)["state"] == "origin_review"
    client.cookies.clear()
    bad_login = client.post(
        "/ui/login", data={"username": "rs-officer", "password": region.password("rs-officer")}
    )
    assert bad_login.status_code == 403


def test_a_refused_decision_says_why_and_changes_nothing(client: TestClient, region: Region) -> None:
    message_id = _request(client, region, category="fraud")
    csrf = log_in(client, "rs-officer", region.password("rs-officer"))
    response = client.post(f"/ui/messages/{message_id}/decide", data={"action": "reject", "csrf": csrf})
    assert response.status_code == 400
    assert "needs a reason" in response.text
    assert agency_client(region, "RS-MUP", client).status(message_id)["state"] == "origin_review"
    done = client.post(
        f"/ui/messages/{message_id}/decide",
        data={"action": "reject", "reason": "no legal ground given", "csrf": csrf},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert agency_client(region, "RS-MUP", client).status(message_id)["state"] == "rejected"
    elsewhere = client.get("/ui/messages/00000000-0000-4000-8000-000000000000")
    assert elsewhere.status_code == 404
    assert "no message" in elsewhere.text


def test_the_message_page_offers_only_what_the_officer_may_do(client: TestClient, region: Region) -> None:
    message_id = _request(client, region, category="money-laundering", classification="CONFIDENTIAL")
    log_in(client, "rs-officer", region.password("rs-officer"))
    low = client.get(f"/ui/messages/{message_id}").text
    assert "Metadata only." in low
    assert 'class="payload"' not in low
    assert 'name="action"' not in low
    log_in(client, "rs-officer2", region.password("rs-officer2"))
    page = client.get(f"/ui/messages/{message_id}").text
    actions = re.findall(r'name="action" value="([a-z]+)"', page)
    assert actions == ["approve", "reject", "return", "assign"]
    assert "Approve and forward" in page


def test_h3_conditions_first_then_the_content(client: TestClient, region: Region) -> None:
    payload = json.dumps({"q": "accounts", "conditions": "Only for the named investigation."}).encode()
    message_id = _request(client, region, category="fraud", handling_codes=("H0", "H3"), payload=payload)
    csrf = log_in(client, "rs-officer", region.password("rs-officer"))
    before = client.get(f"/ui/messages/{message_id}").text
    assert "Only for the named investigation." in before
    assert "I acknowledge these conditions" in before
    assert 'class="payload"' not in before
    assert 'name="action"' not in before
    client.post(f"/ui/messages/{message_id}/acknowledge", data={"csrf": csrf})
    after = client.get(f"/ui/messages/{message_id}").text
    assert 'class="payload"' in after
    assert "&#34;q&#34;: &#34;accounts&#34;" in after


def test_the_queue_fragment_changes_version_when_work_arrives(client: TestClient, region: Region) -> None:
    log_in(client, "rs-officer", region.password("rs-officer"))
    page = client.get("/ui/queue?priority=urgent")
    version = re.search(r'data-version="([0-9a-f]+)"', page.text)
    assert version is not None
    assert 'data-poll="/ui/queue/fragment?priority=urgent"' in page.text
    first = client.get("/ui/queue/fragment?priority=urgent")
    assert first.headers["x-queue-version"] == version.group(1)
    message_id = _request(client, region, category="kidnapping", priority=URGENT_DIRECT)
    second = client.get("/ui/queue/fragment?priority=urgent")
    assert second.headers["x-queue-version"] != version.group(1)
    assert message_id in second.text
    client.cookies.clear()
    assert client.get("/ui/queue/fragment").status_code == 401


def test_own_initiative_from_the_form(client: TestClient, region: Region) -> None:
    csrf = log_in(client, "rs-officer", region.password("rs-officer"))
    response = client.post(
        "/ui/provide",
        data={
            "destination_country": "MK",
            "category": "cybercrime",
            "classification": "RESTRICTED",
            "handling_codes": ["H0", "H2"],
            "information": "A botnet controller runs from a host in Skopje.",
            "csrf": csrf,
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    page = client.get(response.headers["location"]).text
    assert "Own-initiative information" in page
    assert "A botnet controller" in page
    assert 'value="approve"' not in page  # its author cannot approve it


def test_login_with_an_authenticator_code(client: TestClient, region: Region) -> None:
    username = f"ui-totp-{uuid.uuid4().hex[:8]}"
    master = client.app.state.master_key  # type: ignore[attr-defined]
    assert isinstance(master, MasterKey)
    with committed(client) as session:
        create_user(
            session,
            username=username,
            password=PASSWORD,
            role="officer",
            contact_point_id="RS-SPOC",
            actor=SYSTEM,
        )
        secret, _ = enable_totp(session, username, master=master, actor=SYSTEM)
    client.cookies.clear()
    form = {"username": username, "password": PASSWORD, "csrf": _csrf(client.get("/ui/login").text)}
    assert (
        client.post("/ui/login", data=form, follow_redirects=False).headers["location"] == "/ui/login?error=1"
    )
    log_in(client, username, PASSWORD, otp=totp.code_at(secret, int(time.time() // 30)))


def test_admins_manage_accounts_in_the_browser(client: TestClient, region: Region) -> None:
    log_in(client, "rs-officer", region.password("rs-officer"))
    assert client.get("/ui/admin/users").status_code == 403
    log_in(client, "admin", region.password("admin"))
    page = client.get("/ui/admin/users")
    assert page.status_code == 200
    csrf = _csrf(page.text)
    username = f"ui-new-{uuid.uuid4().hex[:8]}"
    created = client.post(
        "/ui/admin/users",
        data={
            "username": username,
            "role": "officer",
            "clearance": "RESTRICTED",
            "contact_point": "RS-SPOC",
            "csrf": csrf,
        },
    )
    assert created.status_code == 200
    assert "shown once" in created.text
    assert client.post(f"/ui/admin/users/{username}/lock", data={}).status_code == 403  # no CSRF
    assert "locked" in client.post(f"/ui/admin/users/{username}/lock", data={"csrf": csrf}).text
    reset = client.post(f"/ui/admin/users/{username}/reset-password", data={"csrf": csrf})
    assert "new password" in reset.text
    second = client.post(f"/ui/admin/users/{username}/totp", data={"csrf": csrf})
    assert "otpauth://totp/" in second.text
    promoted = client.post(
        f"/ui/admin/users/{username}/update", data={"role": "supervisor", "clearance": "SECRET", "csrf": csrf}
    )
    assert promoted.status_code == 200
    own = client.post("/ui/admin/users/admin/lock", data={"csrf": csrf})
    assert own.status_code == 400
    with committed(client) as session:
        row = session.scalar(select(User).where(User.username == username))
        assert row is not None
        assert (row.role, row.clearance, row.active) == ("supervisor", "SECRET", False)
        assert row.totp_secret is not None


@pytest.mark.parametrize("path", ["/ui/queue", "/ui/provide", "/ui/admin/users"])
def test_pages_send_strangers_to_the_login(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login"
