"""The pool backend, measured in the same run and by the same code as the process backend:
session creation (session_start.py's cycles), calls (calls.py's load client) and density
(density.py's steps), plus what only the pool has: its workers' memory (GET /v1/pool), how often
a session's programs were re-created on another worker, and how often a worker was recycled.

Every pool session of the benchmark belongs to one tenant: a pool worker serves one tenant at a
time and is restarted before it serves another, so mixing tenants would measure restarts, not
the pool. The pool runs at its shipped size (pool.size); the report says how many workers."""

from __future__ import annotations

import os
import resource
import time
from typing import Callable

from . import calls, density, memory
from .calls import LoadClient
from .daemon import Client, Daemon, DaemonError, cgroup_dirs, delete_session, execute_path
from .machine import host_memory_used
from .session_start import corral_start
from .stats import summarize_ms

TENANT = "bench"
POOL_SESSION = {"backend": "pool", "tenant": TENANT}
# Every pool worker starts a sandbox at daemon start; on 2 busy cores 10 of them take seconds.
READY_TIMEOUT_S = 120.0
# corrald logs this line each time it replaces a pool worker (worker_pool.cc).
RECYCLE_LINE = "recycling pool worker"

Log = Callable[[str], None]


def wait_ready(port: int, timeout_s: float = READY_TIMEOUT_S) -> float:
    """Polls GET /readyz until it answers 200, which it does once every pool worker has
    started (a pool create gets 503 pool_starting before). Returns the seconds waited."""
    client = Client(port)
    started = time.monotonic()
    try:
        while True:
            status, body = client.request("GET", "/readyz")
            if status == 200:
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise DaemonError(f"corrald not ready after {timeout_s:.0f} s: HTTP {status} "
                                  f"{body}; GET /v1/pool: {stats(client)}")
            time.sleep(0.05)
    finally:
        client.close()


def stats(client: Client) -> dict:
    status, body = client.request("GET", "/v1/pool")
    if status != 200:
        raise DaemonError(f"GET /v1/pool: HTTP {status} {body}")
    return body


def recycles(log_path: str) -> int:
    """How many times corrald has replaced a pool worker so far (its log)."""
    with open(log_path, errors="replace") as file:
        return sum(RECYCLE_LINE in line for line in file)


def client_round_trip(port: int, count: int) -> dict:
    """GET /healthz through the driver's own client: the share of a measured create that is
    Python and HTTP rather than the pool."""
    client = Client(port)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        client.request("GET", "/healthz")
        samples.append(time.perf_counter() - started)
    client.close()
    return summarize_ms(samples)


def disk_commit(directory: str, count: int) -> dict:
    """Append 4 KiB + fdatasync to a file in the daemon's state directory, where the pool's
    session store (SQLite, WAL, synchronous=FULL) commits each create: the least one durable
    create costs on this disk."""
    path = os.path.join(directory, "bench-commit-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, b"\0" * 4096)
            os.fdatasync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        os.unlink(path)
    return summarize_ms(samples)


def measure_start(port: int, state_dir: str, counts: dict, log: Log) -> dict:
    """create (timed) then delete of pool sessions, sequentially and N-way concurrently; and
    two floors under them: the driver's own round trip and the disk's commit."""
    results: dict = {}
    count = counts["pool_start_count"]
    for mode, threads in (("sequential", 1), ("concurrent", counts["start_concurrency"])):
        log(f"pool: session creation, {mode}, {count} sessions")
        results[mode] = corral_start(port, count, threads, f"pool-start-{mode}", POOL_SESSION)
    results["client_round_trip"] = client_round_trip(port, count)
    results["disk_commit"] = disk_commit(state_dir, count)
    return results


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, all its threads (proc(5): utime, stime)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sandboxes_cpu_seconds(cgroup_parent: str) -> float | None:
    """CPU of every sandbox under the daemon's cgroup parent so far, ended ones included: v1's
    cpuacct charges every ancestor as it goes, and v2's cpu.stat keeps what removed children
    used. None when neither file is there."""
    for directory in cgroup_dirs(cgroup_parent):
        try:
            with open(os.path.join(directory, "cpuacct.usage")) as file:
                return int(file.read()) / 1e9
        except OSError:
            pass
        try:
            with open(os.path.join(directory, "cpu.stat")) as file:
                for line in file:
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) / 1e6
        except OSError:
            pass
    return None


class CpuMeter:
    """CPU spent during a run by corrald, by the pool's workers (every sandbox under the
    daemon's cgroup parent, so a worker recycled during the run counts too; only pool workers
    live while the pool is measured) and by the load client (a reaped child of this driver)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.at_start: dict[str, float | None] = {}

    def _now(self) -> dict[str, float | None]:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"corrald": _cpu_seconds(self.daemon.pid),
                "workers": _sandboxes_cpu_seconds(self.daemon.cgroup_parent),
                "load_client": usage.ru_utime + usage.ru_stime}

    def start(self) -> None:
        self.at_start = self._now()

    def per_call_us(self, calls_made: int) -> dict[str, float | None]:
        """CPU since start() divided by the calls made, in microseconds per call."""
        per_call: dict[str, float | None] = {}
        for name, now in self._now().items():
            before = self.at_start[name]
            per_call[name] = (None if now is None or before is None
                              else 1e6 * (now - before) / max(calls_made, 1))
        return per_call


def _recreations(client: Client, sessions: list[str]) -> int:
    """Times the sessions' programs were re-created on a worker that lacked them."""
    total = 0
    for session_id in sessions:
        status, body = client.request("GET", f"/v1/sessions/{session_id}")
        if status != 200:
            raise DaemonError(f"GET session `{session_id}`: HTTP {status} {body}")
        total += body["pool"]["recreations"]
    return total


def measure_calls(load: LoadClient, daemon: Daemon, floor: dict, counts: dict, log: Log) -> dict:
    """Latency with one client and throughput at each client count, on pool sessions; each
    throughput run also counts re-created programs and recycled workers, and the CPU a call
    cost in corrald, in the workers and in the load client (warm-up calls included)."""
    port, log_path = daemon.port, daemon.log_path
    sessions = calls.ready_sessions(port, "pool-calls", counts["throughput_sessions"],
                                    POOL_SESSION)
    paths = [execute_path(s) for s in sessions]
    client = Client(port)
    meter = CpuMeter(daemon)
    log(f"pool: calls, 1 client, {counts['latency_requests']} calls")
    results: dict = {"corral_1_client": load.http(port, paths[:1], 1,
                                                  requests=counts["latency_requests"],
                                                  warmup=counts["warmup"])}
    results.update(calls.overhead(results["corral_1_client"], floor))
    for clients in counts["throughput_clients"]:
        log(f"pool: calls, {clients} clients over {len(paths)} sessions, "
            f"{counts['throughput_seconds']} s")
        recreated, recycled = _recreations(client, sessions), recycles(log_path)
        meter.start()
        run = load.http(port, paths, clients, seconds=counts["throughput_seconds"],
                        warmup=calls.THROUGHPUT_WARMUP)
        run["cpu_per_call_us"] = meter.per_call_us(run["count"] + clients * calls.THROUGHPUT_WARMUP)
        run["programs_recreated"] = _recreations(client, sessions) - recreated
        run["workers_recycled"] = recycles(log_path) - recycled
        results[f"corral_{clients}_clients"] = run
    results["queue"] = stats(client)["queue"]
    results["sessions"] = sessions
    for session_id in sessions:
        delete_session(client, session_id)
    client.close()
    return results


def memory_figures(fleet: density.Fleet, daemon_pid: int, host_used_before: int) -> dict:
    """At a density step: the workers' memory (their cgroups, as GET /v1/pool reports it, and
    PSS over their processes), corrald's RSS, the host's memory used."""
    client = Client(fleet.port)
    pool = stats(client)
    client.close()
    workers = pool["workers"]
    pids = [w["pid"] for w in workers if w["pid"]]
    live = len(fleet.workers)
    host_used = host_memory_used()
    return {
        "live_sessions": live,
        "store_sessions": pool["store"]["sessions"],
        "workers": len(pids),
        "sessions_held": sum(w["sessions_held"] for w in workers),
        "workers_memory_mib": sum(w["memory_bytes"] for w in workers) / 2**20,
        "workers_pss_mib": sum(memory.session_memory(p)["pss_bytes"] for p in pids) / 2**20,
        "daemon_rss_mib": memory.rss_bytes(daemon_pid) / 2**20,
        "host_used_mib": host_used / 2**20,
        "host_used_per_session_kib": (host_used - host_used_before) / live / 2**10
                                     if live else None,
    }


def measure_density(load: LoadClient, port: int, daemon_pid: int, log_path: str, counts: dict,
                    log: Log) -> dict:
    """Live pool sessions in steps, each having run one program (density.py's steps)."""
    host_used_before = host_memory_used()
    recycled = recycles(log_path)
    fleet = density.Fleet(port, prefix="pool-", extra=POOL_SESSION)
    figures = density.run_steps(
        fleet, load, counts["pool_density_steps"], counts["pool_density_start_samples"], counts,
        lambda f: memory_figures(f, daemon_pid, host_used_before), log)
    figures["workers_recycled"] = recycles(log_path) - recycled
    return figures


def measure(load: LoadClient, daemon: Daemon, floor: dict, counts: dict, log: Log) -> dict:
    """Every pool figure. The daemon must be ready (wait_ready) before."""
    client = Client(daemon.port)
    size = stats(client)["size"]
    client.close()
    return {
        "size": size,
        "session_start": measure_start(daemon.port, daemon.state_dir, counts, log),
        "calls": measure_calls(load, daemon, floor, counts, log),
        "density": measure_density(load, daemon.port, daemon.pid, daemon.log_path, counts, log),
    }
