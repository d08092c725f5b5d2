"""Settings: one pydantic-settings class, read from ``SPOC_*`` environment variables.

There are no import-time singletons: code asks ``get_settings()`` (cached, cleared by tests) and the
app / Celery factories take a ``Settings`` explicitly. The embedded default (no servers) is SQLite for
the database and kombu's SQLAlchemy transport on a second SQLite file for Celery, both under
``data_dir``; production sets ``SPOC_DATABASE_URL`` and ``SPOC_BROKER_URL`` to PostgreSQL and Redis.
"""

from __future__ import annotations

import functools
import ipaddress
import secrets
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from broker.files import private_dir, write_private
from schemas.codelists import codes


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPOC_", env_file=None, extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("var")
    database_url: str = ""
    broker_url: str = ""
    # The master key wraps every private key the broker holds (contact points, log signer).
    # In development it is generated into data_dir on first use; production must set it.
    master_key: SecretStr | None = None
    session_ttl_seconds: int = Field(default=8 * 3600, ge=60)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    outbox_redispatch_seconds: float = Field(default=30.0, gt=0)
    outbox_batch_size: int = Field(default=200, ge=1)
    # Finished outbox rows are deleted after this long (the hourly purge).
    outbox_keep_done_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    purge_interval_seconds: float = Field(default=3600.0, gt=0)
    audit_batch_size: int = Field(default=5000, ge=1)
    beat_interval_seconds: float = Field(default=1.0, gt=0)
    # Above the schema's 8 MiB ciphertext ceiling, so a valid envelope is never refused for size.
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # How old a signed agency request may be; its nonce is remembered at least this long.
    request_signature_max_age: int = Field(default=300, ge=10)
    # An envelope's created_at must lie within this window around its receipt (see broker.messages.timing):
    # at most this far behind (an agency retrying after an outage; the idempotency key's lifetime) ...
    envelope_max_age_seconds: int = Field(default=24 * 3600, ge=60)
    # ... and at most this far ahead (clock drift).
    envelope_max_future_seconds: int = Field(default=300, ge=0, le=3600)
    # A receipt's received_at must lie within this window around the acknowledgement (and not before the
    # broker received the message): behind it by at most receipt_max_age_seconds, ahead by the future bound.
    receipt_max_age_seconds: int = Field(default=3600, ge=60)
    db_pool_size: int = Field(default=10, ge=1)
    # Envelopes per batch submission; each costs one token of the agency's rate limit, so batches are also
    # capped at ``rate_limit_burst`` (a larger one could never pass).
    max_batch_envelopes: int = Field(default=200, ge=1, le=500)
    # Single submissions arriving together share one transaction and one commit (broker.messages.group;
    # PostgreSQL only): those that arrive while the previous group is written form the next, and the writer
    # waits group_commit_wait_ms more for others (0: none). False: each in its own transaction.
    group_commit: bool = True
    group_commit_wait_ms: float = Field(default=0.0, ge=0, le=100)
    celery_eager: bool = False
    # Several nodes on one Redis (a test region, or a shared server): each node's Celery keys under its own
    # prefix, so one node's tasks never reach another node's worker. Redis only; empty: no prefix.
    broker_key_prefix: str = ""

    # Agency calls per second and burst, per agency (token bucket; in Redis when the broker is Redis,
    # so every API replica shares one bucket). 0 turns the limit off.
    rate_limit_per_second: float = Field(default=200.0, ge=0)
    rate_limit_burst: int = Field(default=400, ge=1)

    # Logins (README "Security"). An account is locked for ``login_lockout_seconds`` once it has
    # ``login_max_failures`` failed logins within ``login_failure_window_seconds``, from any addresses.
    # Before that, each client address is throttled (429 + Retry-After): against one account it may fail
    # ``login_source_account_burst`` times and then once per ``login_source_account_refill_seconds``, so one
    # address alone stays under the account's limit (checked below); over all accounts it may fail
    # ``login_source_burst`` times and then once per ``login_source_refill_seconds`` (password spraying).
    # The buckets live in Redis when the broker is Redis (shared by replicas), in memory otherwise.
    login_max_failures: int = Field(default=10, ge=2)
    login_failure_window_seconds: int = Field(default=900, ge=60)
    login_lockout_seconds: int = Field(default=900, ge=60)
    login_source_account_burst: int = Field(default=3, ge=1)
    login_source_account_refill_seconds: float = Field(default=300.0, gt=0)
    login_source_burst: int = Field(default=20, ge=1)
    login_source_refill_seconds: float = Field(default=30.0, gt=0)

    # Pull inbox: a leased item is hidden from other readers this long unless acknowledged.
    inbox_visibility_seconds: int = Field(default=60, ge=1, le=3600)

    # Push delivery to an agency's registered endpoint: every outbound call has these timeouts; a failed
    # push is retried after min(cap, base * 2**(attempt-1)) seconds, jittered to 50-100 %, and
    # dead-lettered into the officers' queue after ``push_max_attempts``.
    push_connect_timeout_seconds: float = Field(default=3.0, gt=0)
    push_timeout_seconds: float = Field(default=10.0, gt=0)
    push_max_attempts: int = Field(default=8, ge=1)
    push_backoff_base_seconds: float = Field(default=2.0, gt=0)
    push_backoff_cap_seconds: float = Field(default=600.0, gt=0)
    push_batch_size: int = Field(default=50, ge=1)
    push_concurrency: int = Field(default=16, ge=1)
    # Hops to peer nodes leased at a time: one batch request per peer (up to the wire's 100); a larger batch
    # shares the request signature, the receipts' settle and the audit writes among more messages.
    hop_batch_size: int = Field(default=100, ge=1, le=100)
    # A claimed push not finished after this long (worker killed mid-call) is claimed again.
    push_lease_seconds: float = Field(default=60.0, gt=0)
    # Networks (CIDRs; comma-separated in SPOC_PUSH_ALLOWED_NETWORKS) that push endpoints may reach besides
    # public addresses. Empty by default: loopback, private, link-local (cloud metadata), CGNAT, multicast
    # and reserved targets are refused (``broker.delivery.egress``). Plain http:// only to an IP literal in
    # these networks. ``spoc run`` (the embedded demo) sets it to loopback, and says so.
    push_allowed_networks: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()

    # The region (DESIGN §8): the governance public keys (a JWKS file) this node trusts to sign the regional
    # directory. Configured out of band, like X-Road's configuration anchor; without it no directory installs.
    region_anchor: Path | None = None
    # Where else a node looks for a newer signed directory besides its peers (a governance mirror, https), and
    # how often it looks (broker.region.refresh; the directory is signed, so any source will do).
    region_directory_url: str | None = None
    region_refresh_seconds: float = Field(default=600.0, gt=0)
    # How often each node reconciles its hops with every peer over the last 7 days (broker.hop.reconcile;
    # mismatches raise an alert, every run is a `hop:reconciled` entry); 0 turns the schedule off.
    region_reconcile_seconds: float = Field(default=86400.0, ge=0)
    # Denied calls (401, 403, 404 out of scope, four eyes) are audit entries; at most this many a minute per
    # caller (per source address for anonymous calls) are written, the rest counted (broker.audit.denials).
    audit_denials_per_minute: int = Field(default=30, ge=1)
    # Retention (docs/retention.md, ``broker.retention``): an exchange's content is deleted this many days after
    # it ended (``retention_days_by_category`` overrides the default per category of crime; JSON in
    # SPOC_RETENTION_DAYS_BY_CATEGORY, e.g. ``{"terrorism": 3650}``), unless a legal hold is set on it. An
    # exchange counts as ended once every message of it is settled, or after ``retention_idle_days`` without
    # activity; it enters the compliance review queue ``retention_review_after_days`` after it ended.
    retention_default_days: int = Field(default=3 * 365, ge=1)
    retention_days_by_category: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    retention_review_after_days: int = Field(default=183, ge=1)
    retention_idle_days: int = Field(default=365, ge=1)
    retention_sweep_interval_seconds: float = Field(default=3600.0, gt=0)
    # Exchanges deleted per unit of work by the sweep (each batch commits on its own).
    retention_batch_size: int = Field(default=100, ge=1, le=1000)
    # Set when clients reach spoc over HTTPS (directly or through a TLS-terminating proxy): responses carry
    # Strict-Transport-Security and every cookie is marked Secure.
    behind_tls: bool = False
    # Operations (docs/operations.md). ``/metrics`` answers callers from these networks (CIDRs, comma-separated in
    # SPOC_METRICS_ALLOW; empty: none) or presenting ``Authorization: Bearer <SPOC_METRICS_TOKEN>``; anyone else
    # gets 403. A worker with SPOC_WORKER_METRICS_PORT serves its own counters there (0: it does not), read from
    # PROMETHEUS_MULTIPROC_DIR (broker.ops.metrics says why that directory).
    metrics_allow: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = (
        IPv4Network("127.0.0.1/32"),
        IPv6Network("::1/128"),
    )
    metrics_token: SecretStr | None = None
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # Log lines: one JSON object a line (``json``) or plain text (``text``); unset: text in development, JSON
    # elsewhere. The level unset: WARNING in development (a terminal), INFO elsewhere (broker.ops.logs).
    log_format: Literal["json", "text"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None
    # Test suites only: new password hashes use argon2's cheapest parameters (broker.accounts.service).
    # Refused in production; never set by spoc itself.
    test_cheap_password_hash: bool = False

    @model_validator(mode="after")
    def _defaults_and_production_rules(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'spoc.db').resolve()}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{(self.data_dir / 'queue.db').resolve()}"
        if self.environment == "production" and self.master_key is None:
            raise ValueError("SPOC_MASTER_KEY must be set in production")
        if self.metrics_token is not None and len(self.metrics_token.get_secret_value()) < 16:
            raise ValueError("SPOC_METRICS_TOKEN must be at least 16 characters (or unset)")
        if self.environment == "production" and self.test_cheap_password_hash:
            raise ValueError("SPOC_TEST_CHEAP_PASSWORD_HASH is for test suites; unset it in production")
        one_source = self.login_source_account_burst + (
            self.login_failure_window_seconds / self.login_source_account_refill_seconds
        )
        if one_source >= self.login_max_failures:
            raise ValueError(
                "one address could lock an account: make SPOC_LOGIN_SOURCE_ACCOUNT_BURST + "
                "SPOC_LOGIN_FAILURE_WINDOW_SECONDS / SPOC_LOGIN_SOURCE_ACCOUNT_REFILL_SECONDS "
                "smaller than SPOC_LOGIN_MAX_FAILURES"
            )
        return self

    @field_validator("retention_days_by_category")
    @classmethod
    def _known_categories(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(codes("categories")))
        if unknown:
            raise ValueError(
                f"SPOC_RETENTION_DAYS_BY_CATEGORY names unknown categories: {', '.join(unknown)}"
            )
        return value

    def retention_days(self, category: str) -> int:
        """Days an exchange of ``category`` is kept after it ended."""
        return self.retention_days_by_category.get(category, self.retention_default_days)

    @field_validator("push_allowed_networks", "metrics_allow", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in value.split(",") if v.strip())
        return value

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _no_empty_token(cls, value: object) -> object:
        return None if value == "" else value  # SPOC_METRICS_TOKEN= (compose's empty default): no token

    @property
    def logs_as_json(self) -> bool:
        return self.log_format == "json" if self.log_format else self.environment != "development"

    @property
    def logging_level(self) -> str:
        return self.log_level or ("WARNING" if self.environment == "development" else "INFO")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def master_key_secret(self) -> str:
        """The master key secret; generated once into ``data_dir/master.key`` (0600) in development."""
        if self.master_key is not None:
            return self.master_key.get_secret_value()
        path = self.data_dir / "master.key"
        if not path.exists():
            private_dir(self.data_dir)
            write_private(path, secrets.token_urlsafe(32))
        return path.read_text().strip()


@functools.cache
def get_settings() -> Settings:
    return Settings()
