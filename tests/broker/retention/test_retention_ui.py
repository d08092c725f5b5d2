"""The compliance review pages over HTTP (in-process), as officers and auditors use them: the queue in the
navigation, holds from the message page (reason required), refusals shown and audited, release, delete now."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.audit.models import AuditEntry
from broker.messages.models import Message
from tests.broker.retention.scenario import answered_exchange, backdate, committed
from tests.contact_points.test_ui_pages import log_in
from tests.factories import Region


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def test_an_officer_holds_reviews_and_deletes_through_the_pages(client: TestClient, region: Region) -> None:
    x = answered_exchange(client, region)
    backdate(client, x.conversation_id, 200)
    log_in(client, "al-officer", region.password("al-officer"))

    queue = client.get("/ui/retention")
    assert queue.status_code == 200
    assert 'href="/ui/retention">Compliance review</a>' in queue.text
    assert f'id="x-{x.conversation_id}"' in queue.text
    csrf = _csrf(queue.text)

    page = client.get(f"/ui/messages/{x.request_id}").text
    assert 'id="retention"' in page
    assert f'action="/ui/retention/{x.conversation_id}/hold"' in page

    hold = f"/ui/retention/{x.conversation_id}/hold"
    assert client.post(hold, data={"reason": "x"}, follow_redirects=False).status_code == 403, "no CSRF token"
    refused = client.post(hold, data={"csrf": csrf, "reason": "  "}, follow_redirects=False)
    assert refused.status_code == 422
    assert "a legal hold needs a reason" in refused.text

    back = f"/ui/messages/{x.request_id}"
    done = client.post(
        hold, data={"csrf": csrf, "reason": "extradition pending", "back": back}, follow_redirects=False
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"{back}?done=hold"
    page = client.get(done.headers["location"]).text
    assert "Legal hold set" in page
    assert "Under legal hold" in page
    assert "extradition pending" in page

    review = f"/ui/retention/{x.conversation_id}/review"
    held = client.post(review, data={"csrf": csrf, "decision": "delete"}, follow_redirects=False)
    assert held.status_code == 409
    assert "legal hold" in held.text

    release = client.post(
        f"/ui/retention/{x.conversation_id}/release", data={"csrf": csrf}, follow_redirects=False
    )
    assert release.status_code == 303
    deleted = client.post(review, data={"csrf": csrf, "decision": "delete"}, follow_redirects=False)
    assert deleted.status_code == 303
    page = client.get(deleted.headers["location"]).text
    assert "the content of the exchange was deleted" in page
    assert page.count("under the retention rules") >= 2  # each message says so
    assert f'id="x-{x.conversation_id}"' not in client.get("/ui/retention").text

    with committed(client) as session:
        message = session.get(Message, x.request_id)
        assert message is not None
        assert message.content_deleted_at is not None
        actions = list(
            session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.object_id == x.conversation_id, AuditEntry.action.like("retention:%"))
                .order_by(AuditEntry.id)
            )
        )
    assert actions == [
        "retention:refused",
        "retention:hold-set",
        "retention:refused",
        "retention:hold-released",
        "retention:reviewed",
    ]


def test_auditors_have_the_page_and_admins_do_not(client: TestClient, region: Region) -> None:
    x = answered_exchange(client, region)
    backdate(client, x.conversation_id, 200)
    log_in(client, "mk-auditor", region.password("mk-auditor"))
    page = client.get("/ui/retention")
    assert page.status_code == 200
    assert f'id="x-{x.conversation_id}"' in page.text
    found = client.get("/ui/retention", params={"find": x.answer_id}, follow_redirects=False)
    assert found.headers["location"] == f"/ui/retention/{x.conversation_id}"
    assert "Set a legal hold" in client.get(found.headers["location"]).text

    log_in(client, "admin", region.password("admin"))
    assert client.get("/ui/retention").status_code == 403
    assert client.get(f"/ui/retention/{x.conversation_id}").status_code == 403


def test_a_csrf_token_that_is_not_ascii_is_refused_like_any_wrong_one(
    client: TestClient, region: Region
) -> None:
    """A forged token with a non-ASCII character is a 403 (audited), not a server error, on the forms and on the
    API called with the session cookie."""
    x = answered_exchange(client, region)
    log_in(client, "al-officer", region.password("al-officer"))
    hold = f"/ui/retention/{x.conversation_id}/hold"
    refused = client.post(hold, data={"csrf": "é-forged", "reason": "x"}, follow_redirects=False)
    assert refused.status_code == 403
    api = client.post(
        f"/v1/retention/{x.conversation_id}/hold",
        json={"reason": "x"},
        headers={"X-CSRF-Token": "é-forged".encode("latin-1")},
    )
    assert api.status_code == 403
    with committed(client) as session:
        denied = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "access:denied", AuditEntry.object_id == x.conversation_id
            )
        ).all()
    assert len(denied) == 2
