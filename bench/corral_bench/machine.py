"""The machine the figures come from: cores, memory, kernel, cgroup layout, load."""

from __future__ import annotations

import os
import platform


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    values = {}
    with open("/proc/meminfo") as file:
        for line in file:
            name, rest = line.split(":", 1)
            parts = rest.split()
            values[name] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return values


def mem_available() -> int:
    return meminfo()["MemAvailable"]


def host_memory_used() -> int:
    info = meminfo()
    return info["MemTotal"] - info["MemAvailable"]


def cgroup_layout() -> str:
    """v2 (unified only), hybrid (v1 controllers plus a cgroup2 mount) or v1."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "v2"
    if os.path.exists("/sys/fs/cgroup/unified"):
        return "hybrid (v1 controllers, controller-less cgroup2 at /sys/fs/cgroup/unified)"
    return "v1"


def cpu_model() -> str:
    with open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def describe() -> dict:
    info = meminfo()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_total_bytes": info["MemTotal"],
        "memory_available_bytes_at_start": info["MemAvailable"],
        "kernel": platform.release(),
        "os": _os_release(),
        "cgroup_layout": cgroup_layout(),
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
    }


def _os_release() -> str:
    try:
        with open("/etc/os-release") as file:
            for line in file:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"
