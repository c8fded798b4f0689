"""Runs the whole benchmark: `python3 -m corral_bench --build DIR [--smoke]` (bench/run.sh).

Order: baselines and corral session start, calls and the floor, density (process backend),
the pool backend's session creation, calls and density, sandbox cost. Prints one table, writes
the figures to bench/results/latest.json. With --smoke it then checks that every figure was
produced and exits 1 if one is missing; it never judges speed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

from . import baselines, calls, density, machine, pool, report, sandbox_cost, session_start
from . import settings, targets
from .daemon import Client, Daemon, delete_session
from .stats import percentile

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(SOURCE_DIR, "bench", "results", "latest.json")
# Figures allowed to be null: the early-stop note when the density run went all the way.
MAY_BE_NULL = {"stopped_early", "first_error"}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def server_ready_p50(daemon: Daemon, prefix: str) -> float | None:
    """corrald's own 'ready in N ms' for sessions whose id starts with `prefix`: the part of
    the start the Python client did not add."""
    pattern = re.compile(r"ready in (\d+) ms")
    values = []
    with open(daemon.log_path, errors="replace") as file:
        for line in file:
            if f'"session":"{prefix}' not in line:
                continue
            match = pattern.search(line)
            if match:
                values.append(float(match.group(1)))
    return percentile(values, 50)


def measure_start(daemon: Daemon, starter: baselines.Starter, counts: dict) -> dict:
    figures = session_start.measure(daemon.port, starter, counts["start_count"],
                                    counts["start_concurrency"], log)
    for mode in ("sequential", "concurrent"):
        figures[mode]["corral_server_ready_p50_ms"] = server_ready_p50(daemon, f"start-{mode}-")
    return figures


def measure_calls(daemon: Daemon, load: calls.LoadClient, worker_dir: str, counts: dict) -> dict:
    figures = calls.measure(load, daemon.port, worker_dir, counts, log)
    figures.update(calls.overhead(figures["corral_1_client"], figures["floor"]))
    client = Client(daemon.port)
    for session_id in figures["sessions"]:
        delete_session(client, session_id)
    client.close()
    return figures


def run(args: argparse.Namespace, counts: dict) -> dict:
    build = os.path.abspath(args.build)
    worker_dir = os.path.join(SOURCE_DIR, "images", "python-worker")
    overrides = settings.daemon_overrides(counts)
    result = {"mode": "smoke" if args.smoke else "full", "machine": machine.describe(),
              "counts": counts, "daemon_overrides": overrides,
              "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    figures: dict = {}
    starter = baselines.Starter(worker_dir, counts["heavy_imports"])
    daemon = Daemon(build, SOURCE_DIR, overrides)
    load = calls.LoadClient(os.path.join(build, "corral-bench-load"))
    try:
        figures["heavy_import_ms"] = 1000 * baselines.measure_import_cost(counts["heavy_imports"])
        daemon.start()
        log(f"corrald pid {daemon.pid} on port {daemon.port}, state {daemon.state_dir}")
        # The pool's workers start with the daemon: measure nothing while they do.
        pool_ready_s = pool.wait_ready(daemon.port)
        log(f"corrald ready (pool workers started) after {pool_ready_s:.1f} s")
        figures["session_start"] = measure_start(daemon, starter, counts)
        figures["calls"] = measure_calls(daemon, load, worker_dir, counts)
        figures["density"] = density.measure(load, daemon.port, daemon.pid, counts, log)
        figures["pool"] = pool.measure(load, daemon, figures["calls"]["floor"], counts, log)
        figures["pool"]["ready_after_s"] = pool_ready_s
    finally:
        daemon.stop()
        daemon.cleanup(os.path.join(os.path.dirname(os.path.abspath(args.results)), "corrald.log"))
        starter.cleanup()
    figures["sandbox_cost"] = sandbox_cost.measure(
        os.path.join(build, "corral-run"), os.path.join(SOURCE_DIR, "policies", "default.yaml"),
        counts, log)
    result["figures"] = figures
    result["targets"] = targets.judge(figures, counts)
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # Other users of a shared machine move every figure: say how busy it was at both ends.
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    return result


def missing_figures(value, path: str = "") -> list[str]:
    """Paths of figures that are null (or absent lists), for the smoke check."""
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            if key not in MAY_BE_NULL:
                found += missing_figures(item, f"{path}.{key}" if path else key)
        return found
    if isinstance(value, list):
        found = [] if value else [path]
        for i, item in enumerate(value):
            found += missing_figures(item, f"{path}[{i}]")
        return found
    return [path] if value is None else []


def smoke_check(result: dict, counts: dict) -> list[str]:
    problems = missing_figures(result["figures"])
    for name, dense, wanted in (
            ("density", result["figures"]["density"], counts["density_steps"]),
            ("pool density", result["figures"]["pool"]["density"], counts["pool_density_steps"])):
        if len(dense["steps"]) != len(wanted) and not dense["stopped_early"]:
            problems.append(f"{name}: a step is missing")
    for name, verdict in result["targets"].items():
        if verdict["status"] not in ("met", "missed"):
            problems.append(f"target {name}: no verdict")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(prog="corral_bench")
    parser.add_argument("--build", required=True, help="build directory holding corrald")
    parser.add_argument("--smoke", action="store_true", help="tiny counts; check every figure")
    parser.add_argument("--results", default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    counts = settings.counts(args.smoke)
    result = run(args, counts)
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    with open(args.results, "w") as file:
        json.dump(result, file, indent=2)
    print(report.table(result), end="")
    log(f"figures written to {args.results}")
    if args.smoke:
        problems = smoke_check(result, counts)
        if problems:
            log("smoke check FAILED, figures missing: " + ", ".join(problems))
            return 1
        log("smoke check passed: every figure was produced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
