"""The one table printed to stdout; the same figures go to bench/results/latest.json."""

from __future__ import annotations


def _f(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _loads(values: list[float]) -> str:
    return " ".join(f"{x:.1f}" for x in values)


def _machine(m: dict) -> list[str]:
    end = m.get("load_average_at_end")
    return [f"machine: {m['cores']} cores ({m['cpu']}), {m['memory_total_bytes'] / 2**30:.1f} GiB, "
            f"kernel {m['kernel']}, {m['os']}",
            f"cgroups: {m['cgroup_layout']}; load average at start "
            f"{_loads(m['load_average_at_start'])}" + (f", at end {_loads(end)}" if end else "")]


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
        lines.append(_pool_start_row(figures["pool"]["session_start"][mode], bwrap))
    floors = figures["pool"]["session_start"]
    for key, name in (("client_round_trip", "floor: the driver's HTTP round trip"),
                      ("disk_commit", "floor: 4 KiB append + fdatasync, state dir")):
        s = floors[key]
        lines.append(f"  {name:46} {_f(s['p50_ms'], 2):>8} {_f(s['p99_ms'], 2):>8} "
                     f"{_f(s['max_ms'], 2):>8}")
    return lines


def _pool_start_row(s: dict, bwrap: float | None) -> str:
    rel = s["p50_ms"] / bwrap if bwrap else None
    name = f"corral, pool backend ({s['count']} creates)"
    return (f"    {name:44} {_f(s['p50_ms'], 2):>8} {_f(s['p99_ms'], 2):>8} "
            f"{_f(s['max_ms'], 2):>8} {_f(rel, 3) + 'x':>10}")


def _client_keys(c: dict) -> list[str]:
    """The throughput runs of a call block ("corral_16_clients", ...), fewest clients first."""
    return sorted((k for k in c if k.endswith("_clients")), key=lambda k: int(k.split("_")[1]))


def _call_line(name: str, r: dict) -> str:
    return (f"    {name:44} {_f(r['p50_us'], 0):>8} {_f(r['p99_us'], 0):>8} "
            f"{_f(r['calls_per_s'], 0):>9}")


def _call_block(backend: str, c: dict) -> list[str]:
    lines = [_call_line(f"corral {backend}, 1 client", c["corral_1_client"])]
    for key in _client_keys(c):
        name = f"corral {backend}, {key.split('_')[1]} clients / {len(c['sessions'])} sessions"
        lines.append(_call_line(name, c[key]))
    lines.append(f"    {backend} overhead over the floor, 1 client: p50 "
                 f"{c['overhead_p50_us']:.0f} us ({c['overhead_p50_ratio']:.1f}x), p99 "
                 f"{c['overhead_p99_us']:.0f} us ({c['overhead_p99_ratio']:.1f}x)")
    return lines


def _calls(figures: dict) -> list[str]:
    c, p = figures["calls"], figures["pool"]["calls"]
    lines = ["CALL: execute of a trivial python program, us (C++ keep-alive client)",
             f"  {'':46} {'p50':>8} {'p99':>8} {'calls/s':>9}",
             _call_line("floor: framed request straight to a worker", c["floor"])]
    cpu = c["floor"]["cpu_per_call_us"]
    lines.append(f"    floor: CPU per call {cpu['worker']:.0f} us worker, {cpu['client']:.0f} us "
                 f"client")
    lines += _call_block("process", c) + _call_block("pool", p)
    for key in _client_keys(p):
        r, cpu = p[key], p[key]["cpu_per_call_us"]
        lines.append(f"    pool, {key.split('_')[1]} clients: CPU per call {_f(cpu['corrald'], 0)} "
                     f"us corrald, {_f(cpu['workers'], 0)} us workers, "
                     f"{_f(cpu['load_client'], 0)} us load client;")
        lines.append(f"      programs re-created on another worker {r['programs_recreated']}, "
                     f"workers recycled {r['workers_recycled']}")
    q = p["queue"]
    lines.append(f"    pool queue over all pool calls: {q['waits']} waits, mean "
                 f"{q['wait_ms_mean']:.2f} ms, max {q['wait_ms_max']:.1f} ms; "
                 f"{q['expired']} expired, {q['rejected']} rejected")
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
    return lines


def _pool_density(figures: dict) -> list[str]:
    d = figures["pool"]["density"]
    row = "    {:>6}  {:>6}  {:>15}  {:>12}  {:>10}  {:>9}  {:>9}   {:>17}   {:>15}"
    lines = [f"DENSITY: pool backend ({figures['pool']['size']} workers, one tenant), live "
             f"sessions each having run one program; held: sessions whose programs a worker holds, "
             f"summed over the workers",
             row.format("live", "held", "workers' cgroup", "workers' PSS", "daemon RSS",
                        "host used", "host/sess", "create p50/p99 ms", "call p50/p99 us"),
             row.format("", "", "MiB", "MiB", "MiB", "MiB", "KiB", "", "").rstrip()]
    for s in d["steps"]:
        lines.append(row.format(
            s["live_sessions"], s["sessions_held"], _f(s["workers_memory_mib"]),
            _f(s["workers_pss_mib"]),
            _f(s["daemon_rss_mib"]), _f(s["host_used_mib"], 0),
            _f(s["host_used_per_session_kib"]),
            f"{_f(s['start']['p50_ms'], 2)} / {_f(s['start']['p99_ms'], 2)}",
            f"{_f(s['call']['p50_us'], 0)} / {_f(s['call']['p99_us'], 0)}"))
    if d["stopped_early"]:
        lines.append(f"    {d['stopped_early']}")
    lines.append(f"    pool workers recycled during the density run: {d['workers_recycled']}")
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
              f"{', '.join(result['daemon_overrides']) or 'none'}",
              f"pool: {figures['pool']['size']} workers (shipped pool.size), ready "
              f"{figures['pool']['ready_after_s']:.1f} s after corrald opened its port"],
             _start(figures, counts), _calls(figures), _density(figures),
             _pool_density(figures), _sandbox(figures), _targets(result["targets"])]
    return "\n\n".join("\n".join(p) for p in parts) + "\n"
