"""The HTTP edge, over HTTP: /docs served by spoc, security headers on every response (HSTS and Secure
cookies behind TLS), the server's own request id, and invisible format characters refused or shown."""

from __future__ import annotations

import re
import uuid

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.accounts.models import User
from broker.audit.models import AuditEntry
from broker.config import Settings
from broker.messages.models import Message
from tests.broker.messages.spoc_builders import agency_http, committed, officer_headers
from tests.factories import Region, agency_client

SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")


def test_docs_load_nothing_from_another_host(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "//" not in page.text.replace("<!doctype html>", "")  # no http://, https:// or //host
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        assert asset.startswith("/"), asset
        assert client.get(asset).status_code == 200, asset
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/redoc").status_code == 404  # it would load ReDoc from a CDN


def test_every_response_carries_the_security_headers(client: TestClient, region: Region) -> None:
    responses = [
        client.get("/docs"),
        client.get("/health"),
        client.get("/ui/login"),
        client.get("/v1/audit/entries"),  # a 401 problem
        client.get("/v1/cp/queues/outbound", headers=officer_headers(client, region, "hr-officer")),
    ]
    for response in responses:
        for name in SECURITY_HEADERS:
            assert name in response.headers, (response.url, name)
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp
        assert "http" not in csp  # no external origin
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Strict-Transport-Security" not in response.headers  # not behind TLS


def test_behind_tls_responses_carry_hsts_and_cookies_are_secure(settings: Settings, region: Region) -> None:
    from contact_points.app import create_app

    app: FastAPI = create_app(settings.model_copy(update={"behind_tls": True}))
    with TestClient(app) as tls:
        login_page = tls.get("/ui/login")
        assert login_page.headers["Strict-Transport-Security"].startswith("max-age=")
        cookies = login_page.headers.get_list("set-cookie")
        assert cookies
        assert all("; Secure" in c for c in cookies), cookies
        csrf = re.search(r'name="csrf" value="([^"]+)"', login_page.text)
        assert csrf is not None
        # Over plain http (as behind a TLS-terminating proxy) the client keeps Secure cookies to itself.
        login_cookie = cookies[0].split(";", 1)[0]
        login = tls.post(
            "/ui/login",
            data={"username": "hr-officer", "password": region.password("hr-officer"), "csrf": csrf.group(1)},
            headers={"Cookie": login_cookie},
            follow_redirects=False,
        )
        assert login.status_code == 303, login.text
        session_cookie = [c for c in login.headers.get_list("set-cookie") if c.startswith("spoc_session=")]
        assert session_cookie
        assert "; Secure" in session_cookie[0]


def test_the_request_id_is_the_servers_and_the_callers_is_kept_apart(
    client: TestClient, region: Region
) -> None:
    chosen = f"caller-{uuid.uuid4().hex[:8]}"
    response = client.post(
        "/v1/auth/login",
        json={"username": "hr-auditor", "password": region.password("hr-auditor")},
        headers={"X-Request-ID": chosen},
    )
    assert response.status_code == 200
    server_id = response.headers["X-Request-ID"]
    assert server_id != chosen
    assert response.headers["X-Client-Request-ID"] == chosen
    with committed(client) as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.request_id == server_id)).all()
        assert entry.action == "session:login"
        assert entry.details["client_request_id"] == chosen
        assert session.scalars(select(AuditEntry).where(AuditEntry.request_id == chosen)).all() == []

    unprintable = client.get("/health", headers={"X-Request-ID": "a" * 65})
    assert "X-Client-Request-ID" not in unprintable.headers
    assert unprintable.headers["X-Request-ID"] != "a" * 65


def test_a_bidi_override_in_the_header_is_refused_naming_the_field(
    client: TestClient, region: Region
) -> None:
    envelope = agency_client(region, "HR-DORH", client).build(
        payload=b'{"q": 1}', destination_country="SI", category="drug-trafficking"
    )
    envelope["header"] = {**envelope["header"], "legal_basis": "Agreement Art. \u202e5 .trA"}
    response = agency_http(client, region, "HR-DORH").post("/v1/messages", json=envelope)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["type"] == "urn:spoc:problem:invalid-input"
    [error] = problem["errors"]
    assert error["loc"][-1] == "legal_basis"
    assert "U+202E" in error["msg"]


def test_a_zero_width_character_in_a_reason_is_refused(client: TestClient, region: Region) -> None:
    message_id = agency_client(region, "HR-DORH", client).submit(
        agency_client(region, "HR-DORH", client).build(
            payload=b'{"q": 1}', destination_country="SI", category="drug-trafficking"
        )
    )["message_id"]
    response = client.post(
        f"/v1/cp/messages/{message_id}/decisions",
        json={"action": "reject", "reason": "not\u200b enough"},
        headers=officer_headers(client, region, "hr-supervisor"),
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["loc"][-1] == "reason"
    assert "U+200B" in response.json()["errors"][0]["msg"]


def test_the_ui_shows_format_characters_already_stored_as_markers(client: TestClient, region: Region) -> None:
    sender = agency_client(region, "HR-DORH", client)
    message_id = sender.submit(
        sender.build(payload=b'{"q": 1}', destination_country="SI", category="drug-trafficking")
    )["message_id"]
    with committed(client) as session:  # a header stored before the schema refused format characters
        message = session.get(Message, message_id)
        assert message is not None
        header = {**message.envelope["header"], "legal_basis": "Agreement \u202eexe.txt"}
        message.envelope = {**message.envelope, "header": header}
        assert session.scalar(select(User.id).where(User.username == "hr-officer")) is not None
    token = officer_headers(client, region, "hr-officer")["Authorization"].removeprefix("Bearer ")
    with httpx.Client(base_url="http://testserver", transport=client._transport) as browser:
        browser.cookies.set("spoc_session", token)
        page = browser.get(f"/ui/messages/{message_id}")
    assert page.status_code == 200, page.text
    assert "\u202e" not in page.text
    assert "Agreement [U+202E]exe.txt" in page.text
