"""How much each part of the benchmark measures: the full run and the smoke run (same code,
tiny counts). BENCH_HEAVY_IMPORTS (comma-separated module names) replaces the heavy set."""

from __future__ import annotations

import os

# A stdlib set that costs on the order of 100 ms to import on an idle core; the run measures and
# reports what it actually cost.
DEFAULT_HEAVY_IMPORTS = ["asyncio", "email.parser", "http.client", "json", "decimal",
                         "xml.etree.ElementTree", "sqlite3", "unittest"]

FULL = {
    "start_count": 200,
    "start_concurrency": 8,
    "latency_requests": 2000,
    "warmup": 100,
    "throughput_clients": [16, 64],
    "throughput_sessions": 16,
    "throughput_seconds": 10,
    "density_steps": [10, 100, 1000],
    "density_start_samples": 30,
    "density_call_requests": 500,
    # Pool creation is cheap: more cycles give its p99 weight (of 30, p99 is the slowest one).
    "pool_start_count": 1000,
    "pool_density_steps": [100, 1000, 10000],
    "pool_density_start_samples": 300,
    "cpu_iterations": 5_000_000,
    "syscall_iterations": 20_000,
    "sandbox_repeats": 5,
}

SMOKE = {
    "start_count": 4,
    "start_concurrency": 4,
    "latency_requests": 50,
    "warmup": 5,
    "throughput_clients": [16, 64],
    # corrald refuses a 9th waiting call on one session (process.max_queued_calls: 8), so 64
    # clients need at least 8 sessions.
    "throughput_sessions": 8,
    "throughput_seconds": 1,
    "density_steps": [2, 4],
    "density_start_samples": 2,
    "density_call_requests": 20,
    "pool_start_count": 10,
    "pool_density_steps": [4, 8],
    "pool_density_start_samples": 2,
    "cpu_iterations": 200_000,
    "syscall_iterations": 500,
    "sandbox_repeats": 1,
}

# Shipped defaults (manager/corral.yaml): process.max_concurrent_sessions,
# pool.max_concurrent_sessions, and pool.size, whose workers each hold the pool policy's
# limits.memory from process.memory_budget.
SHIPPED_MAX_SESSIONS = 100
SHIPPED_POOL_MAX_SESSIONS = 10000
SHIPPED_POOL_SIZE = 10
SESSION_MEMORY_MIB = 256  # limits.memory of policies/default.yaml, which pool workers run too


def counts(smoke: bool) -> dict:
    chosen = dict(SMOKE if smoke else FULL)
    names = os.environ.get("BENCH_HEAVY_IMPORTS", "")
    chosen["heavy_imports"] = [n.strip() for n in names.split(",") if n.strip()] or \
        DEFAULT_HEAVY_IMPORTS
    return chosen


def _headroom(chosen: dict, largest_step: int) -> int:
    """Live sessions at most: the largest density step, its start probe, and margin for the
    call and concurrent start sessions."""
    return (largest_step + chosen["throughput_sessions"] + chosen["start_concurrency"] + 10)


def daemon_overrides(chosen: dict) -> list[str]:
    """The benchmark's config over the shipped one: only what the density steps need. Each is
    reported with the results. The pool keeps its shipped size and everything else."""
    overrides = []
    needed = _headroom(chosen, max(chosen["density_steps"]))
    if needed > SHIPPED_MAX_SESSIONS:
        # The shipped memory budget (90% of the host) admits only as many sandboxes as the host
        # could give their whole limits.memory at once (~80 default ones on 24 GiB). The density
        # steps keep their sessions idle, so they overcommit on purpose, as an operator may; the
        # pool's workers hold their share of the budget too.
        budget = (needed + SHIPPED_POOL_SIZE) * SESSION_MEMORY_MIB
        overrides += [f"process.max_concurrent_sessions={needed}",
                      f"process.memory_budget={budget}Mi"]
    pool_needed = _headroom(chosen, max(chosen["pool_density_steps"]))
    if pool_needed > SHIPPED_POOL_MAX_SESSIONS:
        overrides.append(f"pool.max_concurrent_sessions={pool_needed}")
    return overrides
