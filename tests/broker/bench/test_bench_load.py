"""How the load generator cuts its envelopes into requests: a batch is one agency's, nothing is lost."""

from __future__ import annotations

from typing import Any

from broker.bench.load import chunks


def _work(n: int) -> list[tuple[str, dict[str, Any]]]:
    senders = ("AL-ASP", "MK-MOI", "HR-POL")
    return [(senders[i % 3], {"header": {"message_id": str(i)}}) for i in range(n)]


def test_one_envelope_per_request_keeps_the_order() -> None:
    work = _work(7)
    assert chunks(work, 1) == [(sender, [env]) for sender, env in work]


def test_batches_hold_one_senders_envelopes_and_every_envelope_once() -> None:
    work = _work(50)
    requests = chunks(work, 8)
    for sender, envelopes in requests:
        assert 1 <= len(envelopes) <= 8
        assert all(
            int(e["header"]["message_id"]) % 3 == ("AL-ASP", "MK-MOI", "HR-POL").index(sender)
            for e in envelopes
        )
    ids = [e["header"]["message_id"] for _, envelopes in requests for e in envelopes]
    assert sorted(ids, key=int) == [str(i) for i in range(50)]
    assert len(requests) == 3 + 3 + 2  # 17, 17 and 16 envelopes: ceil(n / 8) requests per sender
