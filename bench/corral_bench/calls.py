"""Call latency and throughput through corrald, and the floor: the same request framed straight
to a worker over a socketpair. Both driven by the C++ load client (bench/load_client.cc)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from typing import Callable

from .daemon import Client, create_program, create_session, execute, execute_path

PYTHON = "/usr/bin/python3"
# Calls per client before a throughput run's timed phase: enough to open its connection and
# touch its sessions; more would only queue behind the daemon's HTTP threads.
THROUGHPUT_WARMUP = 5


class LoadClient:
    def __init__(self, binary: str) -> None:
        self.binary = binary

    def _run(self, args: list[str]) -> dict:
        done = subprocess.run([self.binary] + args, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"corral-bench-load {args[0]} failed: {done.stderr.strip()}")
        result = json.loads(done.stdout)
        if result["errors"]:
            raise RuntimeError(f"corral-bench-load {args[0]}: {result['errors']} failed calls, "
                               f"first: {result['first_error']}")
        return result

    def floor(self, worker: str, requests: int, warmup: int) -> dict:
        return self._run(["floor", "--python", PYTHON, "--worker", worker,
                          "--requests", str(requests), "--warmup", str(warmup)])

    def http(self, port: int, paths: list[str], clients: int, requests: int = 0,
             seconds: float = 0, warmup: int = 0) -> dict:
        with tempfile.NamedTemporaryFile("w", prefix="corral-bench-paths-", delete=False) as file:
            file.write("\n".join(paths) + "\n")
        try:
            args = ["http", "--port", str(port), "--paths", file.name, "--clients", str(clients),
                    "--warmup", str(warmup)]
            args += ["--requests", str(requests)] if requests else ["--seconds", str(seconds)]
            return self._run(args)
        finally:
            os.unlink(file.name)


def ready_sessions(port: int, prefix: str, count: int, extra: dict | None = None) -> list[str]:
    """`count` sessions, each with the trivial program and one execution behind it; `extra`
    adds fields to the create body (the pool's backend and tenant)."""
    client = Client(port)
    ids = []
    for i in range(count):
        session_id = f"{prefix}-{i}"
        create_session(client, session_id, extra)
        create_program(client, session_id)
        execute(client, session_id)
        ids.append(session_id)
    client.close()
    return ids


def overhead(one: dict, floor: dict) -> dict:
    """What a call through corrald (1 client) costs over the floor, at p50 and p99."""
    return {"overhead_p50_us": one["p50_us"] - floor["p50_us"],
            "overhead_p99_us": one["p99_us"] - floor["p99_us"],
            "overhead_p50_ratio": one["p50_us"] / floor["p50_us"],
            "overhead_p99_ratio": one["p99_us"] / floor["p99_us"]}


def measure(load: LoadClient, port: int, worker_dir: str, counts: dict,
            log: Callable[[str], None]) -> dict:
    """Latency with one client, the floor, and throughput at each client count."""
    results: dict = {}
    log(f"calls: floor, {counts['latency_requests']} framed calls straight to a worker")
    results["floor"] = load.floor(os.path.join(worker_dir, "worker.py"),
                                  counts["latency_requests"], counts["warmup"])

    sessions = ready_sessions(port, "calls", counts["throughput_sessions"])
    paths = [execute_path(s) for s in sessions]
    log(f"calls: corral, 1 client, {counts['latency_requests']} calls")
    results["corral_1_client"] = load.http(port, paths[:1], 1, requests=counts["latency_requests"],
                                           warmup=counts["warmup"])
    for clients in counts["throughput_clients"]:
        log(f"calls: corral, {clients} clients over {len(paths)} sessions, "
            f"{counts['throughput_seconds']} s")
        results[f"corral_{clients}_clients"] = load.http(
            port, paths, clients, seconds=counts["throughput_seconds"], warmup=THROUGHPUT_WARMUP)
    results["sessions"] = sessions
    return results
