"""The benchmark's load generator: payloads sealed once per route, a fresh header signed per message.

Every envelope it makes must be one the real exchange accepts (verified by the real verifier, then by the
real app's intake), with its own message id; the load processes must deliver every message they are given.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from pydantic import SecretStr

from broker.bench.generator import EnvelopeFactory, fake_exchange, route_payload
from broker.bench.load import ROUTES, credentials, plan
from broker.bench.pool import LoadPool, _post
from broker.client.agency import AgencyClient
from broker.config import Settings
from broker.crypto import KeyPair, MasterKey, open_sealed, verify_envelope
from broker.launcher import prepare
from schemas.envelope import RoutingHeader


def test_every_envelope_verifies_has_its_own_id_and_is_accepted(tmp_path: Path) -> None:
    from contact_points.app import create_app

    settings = Settings(
        data_dir=tmp_path, master_key=SecretStr(MasterKey.generate_secret()), environment="test"
    )
    prepare(settings)
    payload = route_payload(512)
    with TestClient(create_app(settings)) as http:
        clients = {
            s: AgencyClient("http://testserver", credentials(tmp_path, s), transport=http._transport)
            for s, _ in ROUTES
        }
        factories = {
            s: EnvelopeFactory.sealed_by(c, [t for s2, t in ROUTES if s2 == s], payload=payload)
            for s, c in clients.items()
        }
        made = [(sender, factories[sender].envelope(target, mid)) for sender, (target, mid) in plan(24)]
        ids = [env["header"]["message_id"] for _, env in made]
        assert len(set(ids)) == len(ids) == 24
        assert len({env["signature"] for _, env in made}) == 24  # each signature covers its own message

        for sender, env in made:
            header = RoutingHeader.model_validate(env["header"])
            assert header.sender_agency == sender
            keys = {k.kid: k for k in clients[sender].party_keys(sender)}
            verify_envelope(env["header"], env["payload"], env["signature"], resolve=keys.__getitem__)
            reader = KeyPair.from_private_jwk(
                credentials(tmp_path, str(header.destination_agency)).encryption_key
            )
            assert open_sealed(env["payload"], key=reader) == payload

        # Through the real app: each envelope alone, with the generator's own request signer, then the
        # same envelopes again as one batch of one sender (all refused as already stored, none half-way).
        with httpx.Client(base_url="http://testserver", transport=http._transport) as raw:
            answers = [_post(raw, factories[sender], [env]) for sender, env in made]
            assert [(took, problems) for _, took, problems in answers] == [(1, [])] * 24
            mine = [env for sender, env in made if sender == "AL-ASP"]
            _, took, problems = _post(raw, factories["AL-ASP"], mine)
            assert took == 0
            assert len(problems) == len(mine)
            fresh = [factories["AL-ASP"].envelope("MK-MOI", mid) for _, (_, mid) in plan(5)]
            assert _post(raw, factories["AL-ASP"], fresh)[1:] == (5, [])
        for client in clients.values():
            client.close()


def test_the_load_processes_send_every_message_once_and_report_their_cpu() -> None:
    with LoadPool(None, None, processes=2) as pool:
        single = pool.run(plan(40), concurrency=4)
        batched = pool.run(plan(90), concurrency=2, batch=25)
    assert (single.sent, single.accepted, single.errors) == (40, 40, [])
    assert (batched.sent, batched.accepted, batched.errors) == (90, 90, [])
    # One request per message; a batch is one sender's: 90 messages over 8 senders are 8 batches of <= 25.
    assert len(single.latencies) == 40
    assert len(batched.latencies) == 8
    assert single.generator_cpu_s > 0
    assert batched.generator_cpu_s > 0


def test_the_stand_in_answers_a_batch_with_its_size() -> None:
    with httpx.Client(base_url="http://bench.invalid", transport=fake_exchange()) as http:
        answer = http.post("/v1/messages/batches", content=b'{"envelopes":[{"spoc":"1"},{"spoc":"1"}]}')
    assert answer.json()["accepted"] == 2
