"""Sandbox cost: a CPU-bound and a syscall-heavy Python program, each timing its own work, run
under corral-run with policies/default.yaml and without any sandbox, interleaved."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Callable

from .daemon import remove_empty_cgroups
from .stats import median

PYTHON = "/usr/bin/python3"

# Each program prints the seconds its work took, measured inside, so interpreter and sandbox
# start-up are outside the figure: what is compared is the cost of running inside.
CPU_PROGRAM = """
import sys, time
n = int(sys.argv[1])
t = time.perf_counter()
total = 0
for i in range(n):
    total += (i * i) % 7
print(time.perf_counter() - t)
"""

# Many small file operations: open, write, fstat, close, stat, rename, unlink.
SYSCALL_PROGRAM = """
import os, sys, time
n, where = int(sys.argv[1]), sys.argv[2]
t = time.perf_counter()
for i in range(n):
    path = os.path.join(where, f"f{i % 64}")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    os.write(fd, b"x" * 64)
    os.fstat(fd)
    os.close(fd)
    os.stat(path)
    os.rename(path, path + ".r")
    os.unlink(path + ".r")
print(time.perf_counter() - t)
"""


def _time_program(prefix: list[str], source: str, args: list[str]) -> float:
    done = subprocess.run(prefix + [PYTHON, "-I", "-c", source] + args, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"sandbox cost program failed ({done.returncode}): "
                           f"{done.stderr.strip()[-500:]}")
    return float(done.stdout.strip().splitlines()[-1])


def measure(corral_run: str, policy: str, counts: dict, log: Callable[[str], None]) -> dict:
    """Outside, the syscall program works in a tmpfs directory (/dev/shm), as inside it works
    in the sandbox's tmpfs /tmp: the file system is the same kind on both sides."""
    cgroup_parent = f"corral-bench-run-{os.getpid()}"
    inside = [corral_run, "--policy", policy, "--cgroup-parent", cgroup_parent, "--"]
    scratch = tempfile.mkdtemp(prefix="corral-bench-", dir="/dev/shm")
    programs = {
        "cpu": (CPU_PROGRAM, [str(counts["cpu_iterations"])], [str(counts["cpu_iterations"])]),
        "syscall": (SYSCALL_PROGRAM, [str(counts["syscall_iterations"]), scratch],
                    [str(counts["syscall_iterations"]), "/tmp"]),
    }
    results = {}
    try:
        for name, (source, outside_args, inside_args) in programs.items():
            log(f"sandbox cost: {name}, {counts['sandbox_repeats']} runs each side")
            outside_s, inside_s = [], []
            for _ in range(counts["sandbox_repeats"]):
                outside_s.append(_time_program([], source, outside_args))
                inside_s.append(_time_program(inside, source, inside_args))
            results[name] = {"outside_s": median(outside_s), "inside_s": median(inside_s),
                             "ratio": median(inside_s) / median(outside_s),
                             "runs_outside_s": outside_s, "runs_inside_s": inside_s}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        remove_empty_cgroups(cgroup_parent)
    return results
