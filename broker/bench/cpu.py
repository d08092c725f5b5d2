"""Where the machine's CPU goes during a benchmark phase, per accepted message, by process role.

On a 2-core machine the load generator, the API, PostgreSQL, Redis and the Celery worker share the same
cores, so a throughput figure alone cannot say what bounds it. This reads ``/proc`` (Linux; elsewhere it
reports nothing) before and after a phase and attributes CPU time to roles: the API (uvicorn and its
workers), the worker (Celery and its children), PostgreSQL and Redis server processes, and the load
generator (this process and the load processes it started and reaped, through ``os.times``' children).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    by_pid: dict[int, tuple[int, int, str]]  # pid -> (ticks, parent pid, command name)
    own_children: float  # seconds used by reaped children of this process


def sample() -> CpuSample:
    by_pid: dict[int, tuple[int, int, str]] = {}
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited meanwhile
            name = stat[stat.find("(") + 1 : stat.rfind(")")]
            fields = stat[stat.rfind(")") + 2 :].split()
            by_pid[int(entry.name)] = (int(fields[11]) + int(fields[12]), int(fields[1]), name)
    times = os.times()
    return CpuSample(by_pid, times.children_user + times.children_system)


def _role(pid: int, before: CpuSample, after: CpuSample, roots: dict[str, int]) -> str | None:
    name = after.by_pid[pid][2]
    seen = 0
    current = pid
    while current > 1 and seen < 32:  # walk up to a root we know
        for role, root in roots.items():
            if current == root:
                return role
        current = after.by_pid.get(current, before.by_pid.get(current, (0, 0, "")))[1]
        seen += 1
    if name.startswith("postgres"):
        return "postgres"
    if name.startswith("redis"):
        return "redis"
    return None


def per_message(
    before: CpuSample, after: CpuSample, *, roots: dict[str, int], messages: int
) -> dict[str, float]:
    """Milliseconds of CPU per message by role (``roots``: role -> root pid); {} without ``/proc``."""
    if not after.by_pid or messages <= 0:
        return {}
    spent: defaultdict[str, float] = defaultdict(float)
    for pid, (ticks, _, _) in after.by_pid.items():
        used = ticks - before.by_pid.get(pid, (0, 0, ""))[0]
        if used <= 0:
            continue
        role = _role(pid, before, after, {**roots, "load generator": os.getpid()})
        spent[role or "other"] += used / _TICK
    spent["load generator"] += after.own_children - before.own_children
    return {
        role: round(seconds * 1000 / messages, 2)
        for role, seconds in sorted(spent.items(), key=lambda kv: -kv[1])
    }


def resident_mb(roots: dict[str, int]) -> dict[str, dict[str, float]]:
    """Resident memory of each role's process tree (``roots``: role -> root pid), from ``/proc``: the total,
    the largest single process and how many processes; {} without ``/proc``."""
    now = sample()
    out: dict[str, dict[str, float]] = {}
    for pid in now.by_pid:
        role = _role(pid, now, now, roots)
        if role not in roots:
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue  # exited meanwhile
        kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        found = out.setdefault(role, {"total_mb": 0.0, "max_mb": 0.0, "processes": 0})
        found["total_mb"] = round(found["total_mb"] + kb / 1024, 1)
        found["max_mb"] = round(max(found["max_mb"], kb / 1024), 1)
        found["processes"] += 1
    return out
