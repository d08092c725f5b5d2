"""The benchmark's results as a table for the terminal and the README."""

from __future__ import annotations

from typing import Any


def _f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _errors(phase: dict[str, Any]) -> str:
    return (
        f"; {phase['errors']} of {phase['sent']} failed: {phase['first_error']}"
        if phase.get("errors")
        else ""
    )


def _resident(step: dict[str, Any]) -> str:
    found = step.get("resident") or {}
    parts = [
        f"{role} {r['total_mb']:,.0f} MB in {r['processes']:.0f} processes"
        for role, r in sorted(found.items())
    ]
    return "; resident " + ", ".join(parts) if parts else ""


def generator_rows(alone: dict[str, Any]) -> list[tuple[str, str]]:
    """The load generator measured alone (``broker.bench.load.measure_generator``)."""
    out = [
        (
            "generator alone: envelopes signed + requests signed per CPU-second (one core, no HTTP)",
            _f(alone.get("signed_per_s_one_core")),
        )
    ]
    for name in ("single", "batched"):
        phase = alone.get(name)
        if phase:
            how = "one per request" if phase["batch"] == 1 else f"batches of {phase['batch']}"
            out.append(
                (
                    f"generator alone: msg/s sent, {how}, concurrency {phase['concurrency']} "
                    f"({alone.get('load_processes')} load processes, no server)",
                    f"{_f(phase['sent_per_s'])} (generator CPU {phase['generator_cpu_ms_per_msg']:.2f} ms/msg"
                    f"{'; ' + str(phase['errors']) + ' errors' if phase['errors'] else ''})",
                )
            )
    return out


def rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    lim, out = results["limits"], []
    counts = results.get("processes")
    if counts:
        out.append(
            (
                "processes (on {cpus} cores)".format(**counts),
                f"API {counts['api_processes']}, workers {counts['worker_processes']}, beat "
                f"{counts['beat_processes']}, sequencers {counts['sequencers']}, load {counts['load_processes']}",
            )
        )
    for phase in results["submit"]:
        out.append(
            (
                f"accepted msg/s at concurrency {phase['concurrency']}",
                f"{_f(phase['accepted_per_s'])} (p50 {_f(phase['p50_ms'], 1)} ms, p99 {_f(phase['p99_ms'], 1)} ms"
                f"{_errors(phase)})",
            )
        )
    for phase in results.get("submit_batched", []):
        out.append(
            (
                f"accepted msg/s in batches of {phase['batch']}, {phase['concurrency']} in flight",
                f"{_f(phase['accepted_per_s'])} (per batch p50 {_f(phase['p50_ms'], 1)} ms, p99 "
                f"{_f(phase['p99_ms'], 1)} ms{_errors(phase)})",
            )
        )
    for phase in [*results["submit"], *results.get("submit_batched", [])]:
        if phase.get("cpu_ms_per_accepted"):
            shares = ", ".join(
                f"{role} {ms:.1f}" for role, ms in phase["cpu_ms_per_accepted"].items() if ms >= 0.1
            )
            how = f" in batches of {phase['batch']}" if phase.get("batch", 1) > 1 else ""
            own = phase.get("generator_cpu_ms_per_msg")
            if own is not None:
                shares += f" (load processes alone {own:.2f})"
            out.append((f"CPU ms per accepted message{how} at concurrency {phase['concurrency']}", shares))
    at500 = results.get("submit_at_500", {})
    if at500:
        out.append(
            (
                "submit latency at 500 msg/s offered",
                f"p50 {_f(at500['p50_ms'], 1)} ms, p95 {_f(at500['p95_ms'], 1)} ms, p99 {_f(at500['p99_ms'], 1)} ms"
                f" ({_f(at500['accepted_per_s'])} msg/s achieved{_errors(at500)})",
            )
        )
    e2e = results.get("end_to_end", {})
    out.append(
        (
            "delivered msg/s end to end (scripted officers)",
            f"{_f(e2e.get('delivered_per_s'))} ({e2e.get('delivered')} delivered, p50 "
            f"{_f(e2e.get('p50_submit_to_delivery_s'), 2)} s, p99 {_f(e2e.get('p99_submit_to_delivery_s'), 2)} s)",
        )
    )
    audit = results.get("audit", {})
    out.append(("audit entries appended/s (sequencer)", _f(audit.get("entries_appended_per_s"))))
    if audit.get("postgres_batched_rows_per_s"):
        out.append(
            (
                "limit beside the appends: PostgreSQL batched rows/s (median of 3)",
                _f(audit["postgres_batched_rows_per_s"]),
            )
        )
    out.append(("audit full-log verification entries/s", _f(audit.get("verify_entries_per_s"))))
    out.append(("inclusion proof ms", _f(audit.get("inclusion_proof_ms"), 2)))
    out.append(
        (
            "limit: Ed25519 verify/s (raw / envelope recipe)",
            f"{_f(lim['ed25519_verify_raw_per_s'])} / {_f(lim['envelope_verify_per_s'])}",
        )
    )
    out.append(("limit: JWE open/s (2 KB, 3 readers)", _f(lim["jwe_open_per_s"])))
    out.append(("limit: PostgreSQL single-row commits/s", _f(lim["postgres_single_row_commits_per_s"])))
    out.append(("limit: PostgreSQL batched rows/s", _f(lim["postgres_batched_rows_per_s"])))
    out.append(("limit: Redis round trips/s", _f(lim["redis_round_trips_per_s"])))
    out.append(("limit: Celery trivial tasks/s", _f(lim.get("celery_trivial_tasks_per_s"))))
    out.append(("baseline: RabbitMQ bare queue msg/s", _f(lim.get("rabbitmq_bare_queue_msgs_per_s"))))
    for step in results.get("scaling", []):
        out.append(
            (
                f"at {step['factor']}x stored ({step['messages_stored']:,} messages, {step['log_size']:,} log entries)",
                f"submit p50 {_f(step['p50_ms'], 1)} ms, p99 {_f(step['p99_ms'], 1)} ms; "
                f"inclusion proof {_f(step['inclusion_proof_ms'], 2)} ms{_resident(step)}",
            )
        )
    out += generator_rows(results.get("generator_alone", {})) if results.get("generator_alone") else []
    for name, value in results.get("ratios", {}).items():
        out.append((f"ratio: {name.replace('_', ' ')}", _f(value, 2)))
    return out


def table(results: dict[str, Any]) -> str:
    data = rows(results)
    width = max(len(k) for k, _ in data)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in data)


def markdown(results: dict[str, Any]) -> str:
    lines = ["| measure | figure |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows(results)]
    return "\n".join(lines)
