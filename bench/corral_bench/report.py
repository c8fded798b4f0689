"""The one table printed to stdout; the same figures go to bench/results/latest.json."""

from __future__ import annotations

from .targets import POOL


def _f(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _machine(m: dict) -> list[str]:
    return [f"machine: {m['cores']} cores ({m['cpu']}), {m['memory_total_bytes'] / 2**30:.1f} GiB, "
            f"kernel {m['kernel']}, {m['os']}",
            f"cgroups: {m['cgroup_layout']}; load average at start "
            f"{' '.join(f'{x:.1f}' for x in m['load_average_at_start'])}"]


START_ROWS = [
    ("corral_process", "corral, process backend"),
    ("plain", "(a) python3 worker.py, no sandbox"),
    ("bwrap", "(b) same worker under bubblewrap"),
    ("plain_heavy", "(c) (a) + heavy imports"),
    ("bwrap_heavy", "(c) (b) + heavy imports"),
]


def _start(figures: dict, counts: dict) -> list[str]:
    lines = [f"SESSION START, ms (create until ready; baselines: spawn to first ping); "
             f"heavy imports cost {figures['heavy_import_ms']:.0f} ms here",
             f"  {'':46} {'p50':>8} {'p99':>8} {'max':>8} {'p50 / (b)':>10}"]
    for mode, label in (("sequential", "sequential"),
                        ("concurrent", f"{counts['start_concurrency']}-way concurrent")):
        row = figures["session_start"][mode]
        bwrap = row["bwrap"]["p50_ms"]
        lines.append(f"  {label}, {row['corral_process']['count']} each")
        for key, name in START_ROWS:
            s = row[key]
            rel = s["p50_ms"] / bwrap if bwrap else None
            lines.append(f"    {name:44} {_f(s['p50_ms']):>8} {_f(s['p99_ms']):>8} "
                         f"{_f(s['max_ms']):>8} {_f(rel, 2) + 'x':>10}")
        server = row.get("corral_server_ready_p50_ms")
        lines.append(f"    {'  of which inside corrald (its log), p50':44} {_f(server):>8}")
        lines.append(f"    {'corral, pool backend':44} {POOL}")
    return lines


def _calls(figures: dict) -> list[str]:
    c = figures["calls"]
    lines = ["CALL: execute of a trivial python program, us (C++ keep-alive client)",
             f"  {'':46} {'p50':>8} {'p99':>8} {'calls/s':>9}"]
    rows = [("floor: framed request straight to a worker", c["floor"]),
            ("corral process, 1 client", c["corral_1_client"])]
    for key in sorted(k for k in c if k.endswith("_clients")):
        clients = key.split("_")[1]
        rows.append((f"corral process, {clients} clients / "
                     f"{len(c['sessions'])} sessions", c[key]))
    for name, r in rows:
        lines.append(f"    {name:44} {_f(r['p50_us'], 0):>8} {_f(r['p99_us'], 0):>8} "
                     f"{_f(r['calls_per_s'], 0):>9}")
    lines.append(f"    overhead over the floor, 1 client: p50 {c['overhead_p50_us']:.0f} us "
                 f"({c['overhead_p50_ratio']:.1f}x), p99 {c['overhead_p99_us']:.0f} us "
                 f"({c['overhead_p99_ratio']:.1f}x)")
    lines.append(f"    {'corral, pool backend':44} {POOL}")
    return lines


def _density(figures: dict) -> list[str]:
    d = figures["density"]
    lines = ["DENSITY: process backend, live sessions each having run one program",
             "    live  PSS/sess  cgroup/sess  host/sess  daemon RSS  host used   "
             "start p50/p99 ms   call p50/p99 us",
             "          MiB       MiB          MiB        MiB         MiB"]
    for s in d["steps"]:
        lines.append(
            f"    {s['live_sessions']:>4}  {_f(s['pss_per_session_mib']):>8}  "
            f"{_f(s['cgroup_per_session_mib']):>11}  {_f(s['host_used_per_session_mib']):>9}  "
            f"{_f(s['daemon_rss_mib']):>10}  {_f(s['host_used_mib'], 0):>9}   "
            f"{_f(s['start']['p50_ms']):>7} / {_f(s['start']['p99_ms']):<7}  "
            f"{_f(s['call']['p50_us'], 0):>6} / {_f(s['call']['p99_us'], 0):<6}")
    if d["stopped_early"]:
        lines.append(f"    {d['stopped_early']}")
    lines.append(f"    pool backend: {POOL}")
    return lines


def _sandbox(figures: dict) -> list[str]:
    lines = ["SANDBOX COST: work timed inside the program, median of runs, s",
             f"  {'':46} {'outside':>8} {'inside':>8} {'ratio':>8}"]
    for name, label in (("cpu", "CPU-bound (integer loop)"),
                        ("syscall", "syscall-heavy (small files in tmpfs)")):
        r = figures["sandbox_cost"][name]
        lines.append(f"    {label:44} {r['outside_s']:>8.3f} {r['inside_s']:>8.3f} "
                     f"{r['ratio']:>8.3f}")
    return lines


def _targets(targets: dict) -> list[str]:
    lines = ["TARGETS (issue 6; tracked, never asserted)"]
    for name, verdict in targets.items():
        detail = f": {verdict['detail']}" if verdict["detail"] else ""
        lines.append(f"    {name:44} {verdict['status']}{detail}")
    return lines


def table(result: dict) -> str:
    figures, counts = result["figures"], result["counts"]
    parts = [_machine(result["machine"]),
             [f"mode: {result['mode']}; daemon overrides: "
              f"{', '.join(result['daemon_overrides']) or 'none'}"],
             _start(figures, counts), _calls(figures), _density(figures), _sandbox(figures),
             _targets(result["targets"])]
    return "\n\n".join("\n".join(p) for p in parts) + "\n"
