"""Session start: corral's create-until-ready, and the baselines' spawn-to-first-ping, each run
sequentially and N-way concurrently by the same runner."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from . import baselines
from .daemon import Client, create_session, delete_session
from .stats import summarize_ms

_ids = itertools.count()


def run_cycles(cycle: Callable[[], float], count: int, concurrency: int) -> list[float]:
    """Runs `cycle` `count` times on `concurrency` threads; returns each cycle's timed span."""
    if concurrency <= 1:
        return [cycle() for _ in range(count)]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda _: cycle(), range(count)))


class CorralStarts:
    """create (timed: the 201 means the worker answered ping, so the next call runs at once;
    for a pool session, that the session is stored and any worker of its tenant may serve it),
    then delete (timed apart). One keep-alive connection per thread."""

    def __init__(self, port: int, prefix: str, extra: dict | None = None) -> None:
        self.port = port
        self.prefix = prefix
        self.extra = extra  # more fields of the create body: the pool's backend and tenant
        self.local = threading.local()
        self.deletes: list[float] = []
        self.lock = threading.Lock()

    def _client(self) -> Client:
        if not hasattr(self.local, "client"):
            self.local.client = Client(self.port)
        return self.local.client

    def cycle(self) -> float:
        client = self._client()
        session_id = f"{self.prefix}-{next(_ids)}"
        started = time.perf_counter()
        create_session(client, session_id, self.extra)
        created = time.perf_counter()
        delete_session(client, session_id)
        with self.lock:
            self.deletes.append(time.perf_counter() - created)
        return created - started


def corral_start(port: int, count: int, concurrency: int, prefix: str,
                 extra: dict | None = None) -> dict:
    starts = CorralStarts(port, prefix, extra)
    figures = summarize_ms(run_cycles(starts.cycle, count, concurrency))
    figures["delete"] = summarize_ms(starts.deletes)
    return figures


def baseline_start(starter: baselines.Starter, sandbox: str, heavy: bool, count: int,
                   concurrency: int) -> dict:
    argv = starter.argv(sandbox, heavy)
    return summarize_ms(run_cycles(lambda: baselines.start_to_first_ping(argv), count,
                                   concurrency))


def measure(port: int | None, starter: baselines.Starter, count: int, concurrency: int,
            log: Callable[[str], None]) -> dict:
    """Every start figure: corral (if a daemon is given) and the four baselines, sequential and
    concurrent."""
    results: dict = {}
    for mode, threads in (("sequential", 1), ("concurrent", concurrency)):
        row: dict = {}
        if port is not None:
            log(f"session start: corral, {mode}, {count} sessions")
            row["corral_process"] = corral_start(port, count, threads, f"start-{mode}")
        for sandbox in ("none", "bwrap"):
            for heavy in (False, True):
                name = f"{'plain' if sandbox == 'none' else 'bwrap'}{'_heavy' if heavy else ''}"
                log(f"session start: baseline {name}, {mode}, {count} starts")
                row[name] = baseline_start(starter, sandbox, heavy, count, threads)
        results[mode] = row
    return results
