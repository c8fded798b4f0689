"""Density: live process sessions in steps, each having run one program; at each step the
memory per session, the daemon's RSS, the host's memory used, and start and call latency.
The steps themselves (run_steps) serve the pool's density too (pool.py)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from . import memory
from .calls import LoadClient
from .daemon import Client, create_program, create_session, delete_session, execute, execute_path
from .machine import host_memory_used, mem_available
from .session_start import corral_start
from .stats import median

# Never take the host below this much available memory (issue 6).
MIN_AVAILABLE_BYTES = 2 << 30
FILL_THREADS = 4
PROBE_RESERVE_BYTES = 256 << 20


class Fleet:
    """The live density sessions and their worker pids (for a pool session, the worker that
    served it last: the pool measures its workers instead). `extra` adds fields to each create
    body; `prefix` names the sessions and the start probes."""

    def __init__(self, port: int, prefix: str = "", extra: dict | None = None) -> None:
        self.port = port
        self.prefix = prefix
        self.extra = extra
        self.workers: dict[str, int] = {}
        self.lock = threading.Lock()
        self.local = threading.local()
        self.stop_reason: str | None = None

    def _client(self) -> Client:
        if not hasattr(self.local, "client"):
            self.local.client = Client(self.port)
        return self.local.client

    def add_one(self, index: int, reserve: int) -> None:
        if self.stop_reason:
            return
        if mem_available() - reserve < MIN_AVAILABLE_BYTES:
            self.stop_reason = (f"stopped at {len(self.workers)} sessions: MemAvailable would drop "
                                f"below 2 GiB")
            return
        session_id = f"{self.prefix}dense-{index}"
        client = self._client()
        info = create_session(client, session_id, self.extra)
        create_program(client, session_id)
        execute(client, session_id)
        with self.lock:
            self.workers[session_id] = info["worker"]["pid"]

    def clear(self) -> None:
        """Deletes every density session, so the daemon stops quickly afterwards."""
        def delete(session_id: str) -> None:
            delete_session(self._client(), session_id)
        with ThreadPoolExecutor(max_workers=FILL_THREADS) as pool:
            list(pool.map(delete, list(self.workers)))
        self.workers.clear()

    def grow_to(self, target: int, reserve: int) -> None:
        start = len(self.workers)
        with ThreadPoolExecutor(max_workers=FILL_THREADS) as pool:
            list(pool.map(lambda i: self.add_one(i, reserve), range(start, target)))


def memory_figures(fleet: Fleet, daemon_pid: int, host_used_before: int) -> dict:
    samples = [memory.session_memory(pid) for pid in fleet.workers.values()]
    pss = [s["pss_bytes"] for s in samples]
    cgroup = [s["cgroup_bytes"] for s in samples if s["cgroup_bytes"] is not None]
    live = len(samples)
    host_used = host_memory_used()
    grown = host_used - host_used_before
    return {
        "live_sessions": live,
        "processes_per_session": median([s["processes"] for s in samples]),
        "pss_per_session_mib": sum(pss) / live / 2**20 if live else None,
        "cgroup_per_session_mib": sum(cgroup) / len(cgroup) / 2**20 if cgroup else None,
        "daemon_rss_mib": memory.rss_bytes(daemon_pid) / 2**20,
        "host_used_mib": host_used / 2**20,
        "host_used_per_session_mib": grown / live / 2**20 if live else None,
    }


def measure(load: LoadClient, port: int, daemon_pid: int, counts: dict,
            log: Callable[[str], None]) -> dict:
    host_used_before = host_memory_used()
    return run_steps(Fleet(port), load, counts["density_steps"], counts["density_start_samples"],
                     counts, lambda fleet: memory_figures(fleet, daemon_pid, host_used_before),
                     log)


def run_steps(fleet: Fleet, load: LoadClient, targets: list[int], start_samples: int,
              counts: dict, memory_of: Callable[[Fleet], dict],
              log: Callable[[str], None]) -> dict:
    """Grows `fleet` to each target in turn; at each, `memory_of` the fleet, then
    `start_samples` sequential starts and call latency. Deletes the fleet's sessions at the
    end, whatever happened."""
    steps: list[dict] = []
    try:
        for target in targets:
            steps.append(_step(fleet, load, target, start_samples, counts, memory_of, log))
            if fleet.stop_reason:
                break
    finally:
        log(f"density: deleting {len(fleet.workers)} sessions")
        fleet.clear()
    return {"steps": steps, "stopped_early": fleet.stop_reason}


def _step(fleet: Fleet, load: LoadClient, target: int, start_samples: int, counts: dict,
          memory_of: Callable[[Fleet], dict], log: Callable[[str], None]) -> dict:
    backend = (fleet.extra or {}).get("backend", "process")
    log(f"density: growing to {target} live {backend} sessions")
    # Keep room for the step's start probes (one extra session at a time) and a margin.
    fleet.grow_to(target, reserve=PROBE_RESERVE_BYTES)
    if fleet.stop_reason:
        log(f"density: {fleet.stop_reason}")
    step = memory_of(fleet)
    step["target"] = target
    log(f"density: {step['live_sessions']} live: start and call latency")
    step["start"] = corral_start(fleet.port, start_samples, 1, f"{fleet.prefix}probe-{target}",
                                 fleet.extra)
    paths = [execute_path(s) for s in fleet.workers]
    step["call"] = load.http(fleet.port, paths, 1, requests=counts["density_call_requests"])
    return step
