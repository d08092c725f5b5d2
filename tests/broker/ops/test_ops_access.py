"""Who may read the metrics (``broker.ops.access``) and the settings behind it."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from broker.config import Settings
from broker.ops.access import admitted

TOKEN = "a-metrics-token-of-some-length"


def _settings(**kw: object) -> Settings:
    return Settings(environment="test", database_url="sqlite://", broker_url="memory://", **kw)  # type: ignore[arg-type]


def test_loopback_only_by_default() -> None:
    settings = _settings()
    assert admitted(settings, client="127.0.0.1", authorization=None)
    assert admitted(settings, client="::1", authorization=None)
    assert not admitted(settings, client="10.0.0.7", authorization=None)
    assert not admitted(settings, client="testclient", authorization=None)  # not an address
    assert not admitted(settings, client=None, authorization=None)


def test_allowed_networks_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOC_METRICS_ALLOW", "10.20.0.0/16, fd00::/8")
    settings = Settings(environment="test")
    assert admitted(settings, client="10.20.3.4", authorization=None)
    assert admitted(settings, client="fd00::1", authorization=None)
    assert not admitted(settings, client="127.0.0.1", authorization=None)
    monkeypatch.setenv("SPOC_METRICS_ALLOW", "")
    assert Settings(environment="test").metrics_allow == ()


def test_the_bearer_token_admits_from_anywhere() -> None:
    settings = _settings(metrics_token=SecretStr(TOKEN), metrics_allow=())
    assert admitted(settings, client="203.0.113.9", authorization=f"Bearer {TOKEN}")
    assert admitted(settings, client=None, authorization=f"bearer {TOKEN}")
    assert not admitted(settings, client="203.0.113.9", authorization=f"Bearer {TOKEN}x")
    assert not admitted(settings, client="203.0.113.9", authorization=f"Basic {TOKEN}")
    assert not admitted(settings, client="127.0.0.1", authorization=None)
    # no token configured: a bearer header admits nobody
    assert not admitted(_settings(metrics_allow=()), client="1.2.3.4", authorization="Bearer ")


def test_a_short_token_is_refused_and_an_empty_one_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="at least 16"):
        _settings(metrics_token=SecretStr("short"))
    monkeypatch.setenv("SPOC_METRICS_TOKEN", "")
    assert Settings(environment="test").metrics_token is None


def test_log_format_and_level_follow_the_environment() -> None:
    assert not Settings(environment="development").logs_as_json
    assert Settings(environment="development").logging_level == "WARNING"
    assert Settings(environment="test").logs_as_json
    assert Settings(environment="test").logging_level == "INFO"
    assert not Settings(environment="test", log_format="text").logs_as_json
    assert Settings(environment="development", log_level="DEBUG").logging_level == "DEBUG"
