"""Per-process resources of a worker (engine, session factory, master key, HTTP client), made on first use.

Created lazily so that nothing connects at import and each forked worker process gets its own pool.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import httpx
from sqlalchemy.orm import Session, sessionmaker

import broker.models  # noqa: F401 - every mapper registered before the first query (foreign keys resolve)
from broker.config import get_settings
from broker.crypto import MasterKey
from broker.db import make_engine, make_sessionmaker
from broker.delivery.push import make_client


@dataclass(frozen=True)
class Runtime:
    sessionmaker: sessionmaker[Session]
    master_key: MasterKey


@functools.cache
def runtime() -> Runtime:
    settings = get_settings()
    return Runtime(
        make_sessionmaker(make_engine(settings)), MasterKey.from_secret(settings.master_key_secret())
    )


@functools.cache
def http() -> httpx.Client:
    """The pooled client of pushes to agencies (timeouts on every call; see ``broker.delivery.push``)."""
    return make_client(get_settings())


@functools.cache
def peer_http() -> httpx.Client:
    """The pooled client of hops to peer nodes: their URLs come from the signed regional directory (not from an
    agency), so no egress filter; timeouts on every call, no proxy from the environment, no redirects."""
    settings = get_settings()
    return httpx.Client(
        timeout=httpx.Timeout(settings.push_timeout_seconds, connect=settings.push_connect_timeout_seconds),
        trust_env=False,
        follow_redirects=False,
    )
