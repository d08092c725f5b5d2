"""The raw limits of this machine, measured with the same primitives the exchange uses.

Each function runs for about ``seconds`` and returns operations per second. They are the denominators
of the benchmark's ratios: Ed25519 verification and JWE opening (the exchange's crypto per message),
PostgreSQL single-row and batched inserts (its storage), Redis round trips and trivial Celery tasks (its
queue), and a bare RabbitMQ queue of the same sealed messages (what a queue with no review, policy or
audit would do).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import redis

from broker.crypto import KeyPair, open_sealed, seal, sign_envelope, verify_envelope
from broker.crypto.bench import primitive_rates


def _rate(fn: Callable[[], object], *, seconds: float, batch: int = 1) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        fn()
        count += batch
    return count / (time.perf_counter() - start)


def sample_envelope(
    size: int = 2048,
) -> tuple[dict[str, Any], dict[str, Any], str, KeyPair, list[KeyPair]]:
    signer = KeyPair.generate("sig")
    readers = [KeyPair.generate("enc") for _ in range(3)]
    jwe = seal(os.urandom(size), readers=[r.public for r in readers])
    header = {"message_id": str(uuid.uuid4()), "category": "fraud"}
    return header, jwe, sign_envelope(header, jwe, key=signer), signer, readers


def raw_ed25519_verify_per_s(seconds: float = 1.0) -> float:
    """Bare Ed25519 verification of a 64-byte message: the hardware ceiling."""
    return primitive_rates(seconds)["ed25519_verify"]


def ed25519_verify_per_s(seconds: float = 1.0) -> float:
    """The exchange's originator-signature check: canonicalise header + 2 KB ciphertext, verify EdDSA."""
    header, jwe, signature, signer, _ = sample_envelope()
    public = signer.public
    return _rate(
        lambda: verify_envelope(header, jwe, signature, resolve=lambda _kid: public), seconds=seconds
    )


def jwe_open_per_s(seconds: float = 1.0) -> float:
    _, jwe, _, _, readers = sample_envelope()
    return _rate(lambda: open_sealed(jwe, key=readers[1]), seconds=seconds)


def jwe_seal_per_s(seconds: float = 1.0) -> float:
    readers = [KeyPair.generate("enc").public for _ in range(3)]
    payload = os.urandom(2048)
    return _rate(lambda: seal(payload, readers=readers), seconds=seconds)


def postgres_inserts_per_s(dsn: str, *, seconds: float = 1.0, batch: int = 0) -> float:
    """Single-row commits (batch=0) or ``batch`` rows per commit, into an unlogged-free plain table."""
    with psycopg.connect(dsn, autocommit=False) as conn:
        table = f"bench_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE TABLE {table} (id bigserial primary key, body text)")
        conn.commit()
        body = "x" * 200
        try:
            if batch:

                def many() -> None:
                    with conn.cursor() as cur:
                        cur.executemany(f"INSERT INTO {table} (body) VALUES (%s)", [(body,)] * batch)  # noqa: S608
                    conn.commit()

                return _rate(many, seconds=seconds, batch=batch)

            def one() -> None:
                conn.execute(f"INSERT INTO {table} (body) VALUES (%s)", (body,))  # noqa: S608 - our own table name
                conn.commit()

            return _rate(one, seconds=seconds)
        finally:
            conn.rollback()
            conn.execute(f"DROP TABLE {table}")
            conn.commit()


def redis_round_trips_per_s(url: str, *, seconds: float = 1.0) -> float:
    client = redis.Redis.from_url(url)
    return _rate(client.ping, seconds=seconds)


def rabbitmq_bare_queue_per_s(url: str, *, messages: int = 3000, size: int = 2048) -> float | None:
    """Publish and consume ``messages`` sealed envelopes through RabbitMQ with no review, policy or audit.

    Returns end-to-end messages/s (publish start to last consumed), or None when RabbitMQ is not reachable.
    """
    import json

    import amqp

    try:
        conn = amqp.Connection(
            url.removeprefix("amqp://").split("/")[0].split("@")[-1],
            userid="guest",
            password="guest",  # noqa: S106 - RabbitMQ's local default account, loopback only
            connect_timeout=2,
        )
        conn.connect()
    except (OSError, amqp.exceptions.AMQPError):
        return None
    header, jwe, signature, _, _ = sample_envelope(size)
    body = json.dumps({"header": header, "payload": jwe, "signature": signature}).encode()
    queue = f"spoc-bench-{uuid.uuid4().hex[:8]}"
    try:
        channel = conn.channel()
        channel.queue_declare(queue, durable=True, auto_delete=False)
        channel.confirm_select()
        received = 0
        start = time.perf_counter()
        for _ in range(messages):
            channel.basic_publish(amqp.Message(body, delivery_mode=2), routing_key=queue)

        def on_message(message: amqp.Message) -> None:
            nonlocal received
            received += 1
            message.channel.basic_ack(message.delivery_tag)

        channel.basic_qos(0, 500, False)
        tag = channel.basic_consume(queue, callback=on_message)
        deadline = time.monotonic() + 60
        while received < messages and time.monotonic() < deadline:
            conn.drain_events(timeout=5)
        elapsed = time.perf_counter() - start
        channel.basic_cancel(tag)
        channel.queue_delete(queue)
        return received / elapsed
    finally:
        conn.close()


def celery_trivial_tasks_per_s(broker_url: str, *, tasks: int = 2000, timeout: float = 60.0) -> float | None:
    """Send ``tasks`` trivial tasks to the running workers and time until all have run (send to done)."""
    from celery import Celery

    app = Celery("spoc-bench", broker=broker_url)  # a bare producer; the task runs in spoc's own workers
    client = redis.Redis.from_url(broker_url)
    counter = f"spoc-bench-noop-{uuid.uuid4().hex[:8]}"
    begun = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for _ in range(tasks):
            app.send_task("spoc.bench.noop", args=[counter], producer=producer)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = int(client.get(counter) or 0)
        if done >= tasks:
            client.delete(counter)
            return tasks / (time.perf_counter() - begun)
        time.sleep(0.05)
    return None
