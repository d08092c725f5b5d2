"""The front door over HTTP: ``/ui`` (what the README and ``make run`` print) and ``/ui/`` lead to the queues
when logged in, else to the login page, which comes back to the page asked for afterwards."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.contact_points.test_ui_pages import _csrf, log_in
from tests.factories import Region


@pytest.mark.parametrize("path", ["/ui", "/ui/"])
def test_the_front_door_is_the_login_then_the_queue(client: TestClient, region: Region, path: str) -> None:
    client.cookies.clear()
    stranger = client.get(path)
    assert stranger.status_code == 200
    assert "<h1>Log in</h1>" in stranger.text
    log_in(client, "rs-officer", region.password("rs-officer"))
    officer = client.get(path)
    assert officer.status_code == 200
    assert "Queues of RS-SPOC" in officer.text


def test_the_login_comes_back_to_the_page_asked_for(client: TestClient, region: Region) -> None:
    client.cookies.clear()
    asked = "/ui/messages/00000000-0000-4000-8000-000000000000"
    sent = client.get(asked, follow_redirects=False)
    assert sent.status_code == 303
    login = client.get(sent.headers["location"])
    form = {
        "username": "rs-officer",
        "password": region.password("rs-officer"),
        "csrf": _csrf(login.text),
        "next": asked,
    }
    assert f'name="next" value="{asked}"' in login.text
    back = client.post("/ui/login", data=form, follow_redirects=False)
    assert back.headers["location"] == asked
    client.cookies.clear()
    login = client.get("/ui/login?next=//evil.example/ui")  # never sent off the site
    assert 'name="next"' not in login.text
    form = {**form, "csrf": _csrf(login.text), "next": "https://evil.example/ui"}
    assert client.post("/ui/login", data=form, follow_redirects=False).headers["location"] == "/ui/queue"
