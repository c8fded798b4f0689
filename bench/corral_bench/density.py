"""Density: live process sessions in steps, each having run one program; at each step the
memory per session, the daemon's RSS, the host's memory used, and start and call latency."""

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
    """The live density sessions and their worker pids."""

    def __init__(self, port: int) -> None:
        self.port = port
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
        session_id = f"dense-{index}"
        client = self._client()
        info = create_session(client, session_id)
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
    fleet = Fleet(port)
    host_used_before = host_memory_used()
    steps = []
    try:
        _run_steps(fleet, load, port, daemon_pid, counts, host_used_before, steps, log)
    finally:
        log(f"density: deleting {len(fleet.workers)} sessions")
        fleet.clear()
    return {"steps": steps, "stopped_early": fleet.stop_reason}


def _run_steps(fleet: Fleet, load: LoadClient, port: int, daemon_pid: int, counts: dict,
               host_used_before: int, steps: list, log: Callable[[str], None]) -> None:
    for target in counts["density_steps"]:
        log(f"density: growing to {target} live sessions")
        # Keep room for the step's start probes (one extra session at a time) and a margin.
        fleet.grow_to(target, reserve=PROBE_RESERVE_BYTES)
        if fleet.stop_reason:
            log(f"density: {fleet.stop_reason}")
        step = memory_figures(fleet, daemon_pid, host_used_before)
        step["target"] = target
        log(f"density: {step['live_sessions']} live: start and call latency")
        step["start"] = corral_start(port, counts["density_start_samples"], 1, f"probe-{target}")
        paths = [execute_path(s) for s in fleet.workers]
        step["call"] = load.http(port, paths, 1, requests=counts["density_call_requests"])
        steps.append(step)
        if fleet.stop_reason:
            break
