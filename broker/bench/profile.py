"""Profile the intake path in one process: where does one ``POST /v1/messages`` (or one envelope of a
batch) spend its time?

The app runs in-process (Starlette's TestClient, no network), on a fresh PostgreSQL database, so the
profile shows our code, SQLAlchemy and the crypto rather than the kernel's loopback. It reports wall time
per request, SQL statements per request (counted by an engine event, so N+1 patterns show), and
pyinstrument's call tree of the slowest frames.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import event

from broker.bench.load import ROUTES, build_envelopes, chunks, credentials
from broker.bench.stack import database
from broker.client.agency import AgencyClient
from broker.config import Settings
from broker.crypto import MasterKey
from broker.launcher import prepare


@dataclass
class Profile:
    requests: int
    ms_per_request: float
    statements_per_request: float
    tree: str


def profile_intake(requests: int = 300, *, warmup: int = 30, batch: int = 1) -> Profile:
    """Submit ``warmup`` then ``requests`` envelopes through the real app; profile the latter. With
    ``batch`` > 1 they go ``batch`` at a time through ``POST /v1/messages/batches`` (figures stay per
    envelope: ``requests`` counts envelopes)."""
    from pyinstrument import Profiler

    from broker.app import create_app

    with tempfile.TemporaryDirectory(prefix="spoc-profile-") as tmp, database() as name:
        settings = Settings(
            database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            broker_url="memory://",
            master_key=SecretStr(MasterKey.generate_secret()),
            data_dir=Path(tmp),
            environment="test",
        )
        prepare(settings)
        app = create_app(settings)
        with TestClient(app) as http:
            envelopes = build_envelopes(
                "http://testserver", Path(tmp), warmup + requests, transport=http._transport
            )
            clients = {
                s: AgencyClient("http://testserver", credentials(Path(tmp), s), transport=http._transport)
                for s, _ in ROUTES
            }
            statements = 0

            def count(*_: Any) -> None:
                nonlocal statements
                statements += 1

            engine = app.state.engine
            for sender, envelope in envelopes[:warmup]:
                clients[sender].submit(envelope)
            event.listen(engine, "before_cursor_execute", count)
            profiler = Profiler(interval=0.0005)
            begun = time.perf_counter()
            profiler.start()
            for sender, chunk in chunks(envelopes[warmup:], batch):
                if batch > 1:
                    clients[sender].submit_batch(chunk)
                else:
                    clients[sender].submit(chunk[0])
            profiler.stop()
            elapsed = time.perf_counter() - begun
            event.remove(engine, "before_cursor_execute", count)
            for client in clients.values():
                client.close()
    return Profile(
        requests=requests,
        ms_per_request=elapsed * 1000 / requests,
        statements_per_request=statements / requests,
        tree=profiler.output_text(unicode=True, color=False, show_all=False),
    )
