"""Memory of a session (PSS over its processes, its cgroup's usage) and of the daemon."""

from __future__ import annotations

import os

from .machine import cgroup_layout


def _memory_cgroup_dir(pid: int) -> str | None:
    """The directory of the memory cgroup holding `pid` (v1 memory hierarchy, or v2)."""
    unified = cgroup_layout() == "v2"
    try:
        with open(f"/proc/{pid}/cgroup") as file:
            for line in file:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if unified and controllers == "":
                    return "/sys/fs/cgroup" + path
                if not unified and "memory" in controllers.split(","):
                    return "/sys/fs/cgroup/memory" + path
    except OSError:
        return None
    return None


def session_pids(worker_pid: int) -> list[int]:
    """Every process of the worker's sandbox: the members of its memory cgroup (each sandbox
    has its own), or the worker alone if the cgroup cannot be read."""
    directory = _memory_cgroup_dir(worker_pid)
    if directory:
        try:
            with open(os.path.join(directory, "cgroup.procs")) as file:
                pids = [int(line) for line in file if line.strip()]
            if pids:
                return pids
        except OSError:
            pass
    return [worker_pid]


def pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as file:
            for line in file:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cgroup_usage_bytes(worker_pid: int) -> int | None:
    directory = _memory_cgroup_dir(worker_pid)
    if not directory:
        return None
    for name in ("memory.usage_in_bytes", "memory.current"):
        try:
            with open(os.path.join(directory, name)) as file:
                return int(file.read().strip())
        except OSError:
            continue
    return None


def session_memory(worker_pid: int) -> dict:
    pids = session_pids(worker_pid)
    return {"processes": len(pids), "pss_bytes": sum(pss_bytes(p) for p in pids),
            "cgroup_bytes": cgroup_usage_bytes(worker_pid)}
