"""The hop benchmark's printed rows: the CPU each process spent per hopped message is shown beside the rate
(a rate alone cannot tell a faster hop from a quieter machine)."""

from __future__ import annotations

from typing import Any

from broker.bench.hop import hop_rows


def _hop(**extra: Any) -> dict[str, Any]:
    return {
        "messages": 10,
        "received": 10,
        "duplicated": 0,
        "lost": 0,
        "dead_lettered_at_origin": 0,
        "hop_msgs_per_s": 5.0,
        "hop_added_latency_ms": {"p50": 1.0, "p99": 2.0, "max": 3.0},
        "nodes": ["al", "xk"],
        **extra,
    }


def test_the_cpu_per_message_of_each_process_is_a_row_of_its_own() -> None:
    rows = dict(hop_rows(_hop(cpu_ms_per_message={"al worker": 2.5, "xk api": 2.1, "other": 0.4}), None))
    assert rows["hop CPU ms per message, approval to last receipt"] == "al worker 2.5, xk api 2.1, other 0.4"


def test_a_run_without_cpu_figures_prints_none() -> None:
    assert not any("CPU" in measure for measure, _ in hop_rows(_hop(), None))


def test_the_span_is_shown_beside_the_time_the_approvals_took() -> None:
    rows = dict(hop_rows(_hop(span_seconds=7.8, approve_seconds=3.0), None))
    assert rows["hop span (first approval to last receipt), of which approving"] == "7.8 s, 3.0 s"
