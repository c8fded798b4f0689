"""Issue 6's targets for this stage, judged from the figures: met, or missed by how much.
Tracked, never asserted: the benchmark's exit status never depends on them."""

from __future__ import annotations


def _verdict(ok: bool, detail: str) -> dict:
    return {"status": "met" if ok else "missed", "detail": detail}


def start_vs_bwrap(figures: dict) -> dict:
    seq = figures["session_start"]["sequential"]
    corral, bwrap = seq["corral_process"]["p50_ms"], seq["bwrap"]["p50_ms"]
    ratio = corral / bwrap
    return _verdict(ratio <= 1.2, f"p50 {corral:.1f} ms = {ratio:.2f}x bwrap's {bwrap:.1f} ms "
                                  f"(target <= 1.2x)")


def pool_create(figures: dict) -> dict:
    start = figures["pool"]["session_start"]
    seq, conc = start["sequential"]["p50_ms"], start["concurrent"]["p50_ms"]
    trip, disk = start["client_round_trip"]["p50_ms"], start["disk_commit"]["p50_ms"]
    return _verdict(seq < 1, f"p50 {seq:.2f} ms sequential, {conc:.2f} ms concurrent; floors: "
                             f"client round trip {trip:.2f} ms, disk commit {disk:.2f} ms "
                             f"(target < 1 ms)")


def call_overhead(calls: dict) -> dict:
    overhead = calls["overhead_p50_us"]
    return _verdict(overhead < 100, f"p50 overhead {overhead:.0f} us over the floor "
                                    f"(target < 100 us)")


def pool_throughput(figures: dict) -> dict:
    rate = figures["pool"]["calls"]["corral_16_clients"]["calls_per_s"]
    return _verdict(rate >= 10000, f"{rate:.0f} calls/s with 16 clients (target >= 10,000)")


def _growth(steps: list[dict], part: str, key: str) -> float:
    """How much a p99 grew from the smallest density step to the largest."""
    return steps[-1][part][key] / steps[0][part][key]


def density(dense: dict, wanted: int) -> dict:
    steps = dense["steps"]
    live = steps[-1]["live_sessions"]
    start_growth = _growth(steps, "start", "p99_ms")
    call_growth = _growth(steps, "call", "p99_us")
    ok = live >= wanted and start_growth < 2 and call_growth < 2
    first = steps[0]["live_sessions"]
    return _verdict(ok, f"{live} live sessions (wanted {wanted}); p99 from {first} to {live}: "
                        f"start x{start_growth:.2f}, call x{call_growth:.2f} (target < 2x)")


def sandbox_cpu(figures: dict) -> dict:
    ratio = figures["sandbox_cost"]["cpu"]["ratio"]
    return _verdict(ratio < 1.03, f"CPU-bound program {100 * (ratio - 1):+.1f}% inside "
                                  f"(target < +3%)")


def judge(figures: dict, counts: dict) -> dict:
    return {
        "start_p50_within_1.2x_bwrap": start_vs_bwrap(figures),
        "pool_create_p50_under_1ms": pool_create(figures),
        "call_overhead_p50_under_100us": call_overhead(figures["calls"]),
        "pool_call_overhead_p50_under_100us": call_overhead(figures["pool"]["calls"]),
        "pool_16_clients_10k_calls_per_s": pool_throughput(figures),
        "1000_process_sessions_p99_growth_under_2x": density(figures["density"],
                                                             max(counts["density_steps"])),
        "10000_pool_sessions_p99_growth_under_2x": density(figures["pool"]["density"],
                                                           max(counts["pool_density_steps"])),
        "sandbox_cpu_overhead_under_3pct": sandbox_cpu(figures),
    }
