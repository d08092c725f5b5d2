"""deploy/: the example Prometheus alert rules and Grafana dashboard name only metrics that spoc exports, and
docs/operations.md describes every metric exported."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
METRIC = re.compile(r"\bspoc_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def exported(app: FastAPI) -> set[str]:
    """Every name a scrape of /metrics answers with: families, and their samples' names by type."""
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        client.get("/health")
        text = client.get("/metrics").text
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def _expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _expressions(item)


def _named(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in METRIC.findall(expr)}


def test_every_metric_the_alert_rules_name_is_exported(app: FastAPI) -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    expressions = list(_expressions(rules))
    assert len(expressions) >= 15
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    for wanted in (
        "SpocReviewQueueBackingUp",
        "SpocOutboxLag",
        "SpocPeerUnreachable",
        "SpocAuditLogNotAdvancing",
        "SpocDeadLettersRising",
        "SpocDeadlineBreached",
        "SpocWitnessAlert",
    ):
        assert wanted in alerts
    assert _named(expressions) - exported(app) == set()


def test_every_metric_the_dashboard_names_is_exported(app: FastAPI) -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/spoc-dashboard.json").read_text())
    expressions = list(_expressions(dashboard["panels"]))
    assert len(expressions) >= 14
    assert _named(expressions) - exported(app) == set()


def test_every_exported_metric_is_documented(app: FastAPI) -> None:
    doc = (ROOT / "docs/operations.md").read_text()
    families = {name for name in exported(app) if not name.endswith(("_bucket", "_count", "_sum", "_total"))}
    families |= {name.removesuffix("_total") for name in exported(app) if name.endswith("_total")}
    undocumented = {name for name in families if f"`{name}" not in doc}
    assert undocumented == set()


def test_the_prometheus_example_loads_the_rules() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    assert {job["job_name"] for job in config["scrape_configs"]} == {"spoc-api", "spoc-worker"}
