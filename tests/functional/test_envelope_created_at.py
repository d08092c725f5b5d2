"""An envelope's ``created_at`` must lie within a window around its receipt, and the signing key is judged
at receipt: a rotated-out key does not sign again by back-dating, and a 2001 date is refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker.client.agency import AgencyClient, ClientError
from broker.crypto import KeyPair, sign_envelope
from tests.factories import Region, agency_client

CATEGORY = "migrant-smuggling"


def _dated(envelope: dict[str, Any], created_at: datetime | str, key: KeyPair) -> dict[str, Any]:
    """``envelope`` with another ``created_at``, signed again with ``key``."""
    header = dict(envelope["header"])
    header["created_at"] = created_at if isinstance(created_at, str) else created_at.isoformat()
    return {**envelope, "header": header, "signature": sign_envelope(header, envelope["payload"], key=key)}


def _key(region: Region, agency: str) -> KeyPair:
    return KeyPair.from_private_jwk(region.seed.agencies[agency].signing_key)


def _refused(agency: AgencyClient, envelope: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as refused:
        agency.submit(envelope)
    assert refused.value.status == 422, refused.value.problem
    problem: dict[str, Any] = refused.value.problem
    return problem


def test_a_2001_date_is_refused_with_a_clear_reason(client: TestClient, region: Region) -> None:
    agency = agency_client(region, "AL-ASP", client)
    envelope = agency.build(payload=b"{}", destination_country="RS", category=CATEGORY)
    problem = _refused(agency, _dated(envelope, "2001-01-01T00:00:00Z", _key(region, "AL-ASP")))
    assert problem["type"] == "urn:spoc:problem:policy-refused"
    assert problem["reason"] == "created-at"
    assert "2001-01-01" in problem["detail"]
    assert "24 hours" in problem["detail"]


def test_a_date_in_the_future_is_refused(client: TestClient, region: Region) -> None:
    agency = agency_client(region, "AL-ASP", client)
    envelope = agency.build(payload=b"{}", destination_country="RS", category=CATEGORY)
    ahead = datetime.now(UTC) + timedelta(hours=1)
    problem = _refused(agency, _dated(envelope, ahead, _key(region, "AL-ASP")))
    assert problem["reason"] == "created-at"
    assert "future" in problem["detail"]


def test_an_envelope_made_before_an_outage_is_accepted(client: TestClient, region: Region) -> None:
    """An agency retrying, hours later, the envelope it signed before its link went down."""
    agency = agency_client(region, "AL-ASP", client)
    envelope = agency.build(payload=b"{}", destination_country="RS", category=CATEGORY)
    earlier = datetime.now(UTC) - timedelta(hours=3)
    receipt = agency.submit(_dated(envelope, earlier, _key(region, "AL-ASP")))
    assert receipt["state"] == "origin_review"


def test_a_retired_key_cannot_sign_by_back_dating(client: TestClient, region: Region) -> None:
    creds = region.seed.agencies["BA-BP"]  # an agency no other test uses: its key is rotated here
    old_key = KeyPair.from_private_jwk(creds.signing_key)
    agency = agency_client(region, "BA-BP", client)
    envelope = agency.build(payload=b"{}", destination_country="HR", category=CATEGORY)
    new_key = KeyPair.generate("sig")
    assert agency._call("POST", "/v1/keys", json={"jwk": new_key.public.jwk}).status_code == 201
    rotated = AgencyClient(
        "http://testserver",
        replace(creds, signing_key=new_key.private_jwk_json()),
        transport=client._transport,
    )
    # Signed with the retired key after its retirement, dated five minutes before it.
    back_dated = _dated(envelope, datetime.now(UTC) - timedelta(minutes=5), old_key)
    problem = _refused(rotated, back_dated)
    assert "retired" in problem["detail"]
    assert old_key.kid in problem["detail"]
    # The same message signed with the current key goes through.
    assert rotated.submit(_dated(envelope, datetime.now(UTC), new_key))["state"] == "origin_review"
