"""The admins' new-account form over HTTP: an auditor is national or explicitly regional, and a refused
form comes back as a page with a message and what was typed (never raw problem+json)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.accounts.models import User
from tests.broker.messages.spoc_builders import committed
from tests.factories import Region


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


@pytest.fixture
def admin_page(app: FastAPI, region: Region) -> Iterator[tuple[TestClient, str]]:
    """An admin's browser, on its own address (the lifespan's end closes the app's connections)."""
    with TestClient(app, client=(f"198.51.100.{uuid.uuid4().int % 250 + 1}", 40000)) as browser:
        login_csrf = _csrf(browser.get("/ui/login").text)
        form = {"username": "admin", "password": region.password("admin"), "csrf": login_csrf}
        assert browser.post("/ui/login", data=form, follow_redirects=False).status_code == 303
        yield browser, _csrf(browser.get("/ui/admin/users").text)


def _create(browser: TestClient, csrf: str, **fields: str) -> tuple[int, str]:
    response = browser.post("/ui/admin/users", data={"clearance": "UNCLASSIFIED", "csrf": csrf, **fields})
    return response.status_code, response.text


def _account(client: TestClient, username: str) -> User | None:
    with committed(client) as session:
        return session.scalar(select(User).where(User.username == username))


def test_an_auditor_needs_a_country_or_an_explicit_regional_choice(
    admin_page: tuple[TestClient, str], client: TestClient
) -> None:
    browser, csrf = admin_page
    username = f"aud-{uuid.uuid4().hex[:8]}"
    status, page = _create(browser, csrf, username=username, role="auditor")
    assert status == 400
    assert "<h1>Accounts</h1>" in page
    assert "urn:spoc:problem" not in page
    assert "give the auditor a country" in page
    assert _account(client, username) is None

    status, page = _create(browser, csrf, username=username, role="auditor", country="AL")
    assert status == 200, page
    national = _account(client, username)
    assert national is not None
    assert national.country == "AL"

    regional_name = f"aud-{uuid.uuid4().hex[:8]}"
    status, page = _create(browser, csrf, username=regional_name, role="auditor", regional="yes")
    assert status == 200, page
    regional = _account(client, regional_name)
    assert regional is not None
    assert regional.country is None


def test_a_taken_username_shows_the_form_again_with_what_was_typed(
    admin_page: tuple[TestClient, str],
) -> None:
    browser, csrf = admin_page
    username = f"dup-{uuid.uuid4().hex[:8]}"
    typed = {"username": username, "role": "officer", "contact_point": "RS-SPOC", "full_name": "Ana Example"}
    assert _create(browser, csrf, **typed)[0] == 200
    status, page = _create(browser, csrf, **{**typed, "full_name": "Another Person"})
    assert status == 409
    assert "<h1>Accounts</h1>" in page
    assert "urn:spoc:problem" not in page
    assert f"the username {username} is taken" in page
    assert f'value="{username}"' in page
    assert 'value="Another Person"' in page
    assert re.search(r"<option selected>RS-SPOC</option>", page)
    assert 'class="secret"' not in page  # no password shown for a refused account
