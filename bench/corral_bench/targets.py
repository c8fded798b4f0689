"""Issue 6's targets for this stage, judged from the figures: met, missed by how much, or not
measurable yet. Tracked, never asserted: the benchmark's exit status never depends on them."""

from __future__ import annotations

POOL = "pool: not built"


def _verdict(ok: bool, detail: str) -> dict:
    return {"status": "met" if ok else "missed", "detail": detail}


def start_vs_bwrap(figures: dict) -> dict:
    seq = figures["session_start"]["sequential"]
    corral, bwrap = seq["corral_process"]["p50_ms"], seq["bwrap"]["p50_ms"]
    ratio = corral / bwrap
    return _verdict(ratio <= 1.2, f"p50 {corral:.1f} ms = {ratio:.2f}x bwrap's {bwrap:.1f} ms "
                                  f"(target <= 1.2x)")


def call_overhead(figures: dict) -> dict:
    overhead = figures["calls"]["overhead_p50_us"]
    return _verdict(overhead < 100, f"p50 overhead {overhead:.0f} us over the floor "
                                    f"(target < 100 us)")


def _growth(steps: list[dict], part: str, key: str) -> float:
    """How much a p99 grew from the smallest density step to the largest."""
    return steps[-1][part][key] / steps[0][part][key]


def density(figures: dict, wanted: int) -> dict:
    steps = figures["density"]["steps"]
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


def judge(figures: dict, wanted_sessions: int) -> dict:
    return {
        "start_p50_within_1.2x_bwrap": start_vs_bwrap(figures),
        "pool_create_p50_under_1ms": {"status": POOL, "detail": ""},
        "call_overhead_p50_under_100us": call_overhead(figures),
        "pool_16_clients_10k_calls_per_s": {"status": POOL, "detail": ""},
        "1000_process_sessions_p99_growth_under_2x": density(figures, wanted_sessions),
        "10000_pool_sessions": {"status": POOL, "detail": ""},
        "sandbox_cpu_overhead_under_3pct": sandbox_cpu(figures),
    }
