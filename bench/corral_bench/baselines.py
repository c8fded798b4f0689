"""Start-up baselines: the same worker with no sandbox, and under bubblewrap, each timed from
spawn to its first answered ping over a socketpair (the channel corrald gives it)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time

PYTHON = "/usr/bin/python3"
HEAVY_WRAPPER = "heavy_worker.py"
# Inside bubblewrap, as inside corral's default policy: the worker's code read-only here.
SANDBOX_WORKER_DIR = "/opt/corral"
SANDBOX_BENCH_DIR = "/opt/bench"


def write_heavy_wrapper(directory: str, imports: list[str]) -> str:
    """A worker entry point that first imports `imports`, then runs the real worker."""
    path = os.path.join(directory, HEAVY_WRAPPER)
    lines = ["import runpy, sys"] + [f"import {name}" for name in imports]
    lines += ["sys.argv = [sys.argv[1]]", "runpy.run_path(sys.argv[0], run_name='__main__')"]
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")
    os.chmod(path, 0o644)
    return path


def bwrap_prefix(worker_dir: str, bench_dir: str) -> list[str]:
    """bubblewrap with namespaces and binds comparable to policies/default.yaml."""
    argv = [shutil.which("bwrap") or "/usr/bin/bwrap", "--unshare-all", "--unshare-user",
            "--uid", "1000", "--gid", "1000", "--die-with-parent", "--new-session",
            "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            argv += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif os.path.isdir(f"/{link}"):
            argv += ["--ro-bind", f"/{link}", f"/{link}"]
    argv += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache",
             "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--chdir", "/tmp",
             "--ro-bind", worker_dir, SANDBOX_WORKER_DIR,
             "--ro-bind", bench_dir, SANDBOX_BENCH_DIR,
             "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
             "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
             "--setenv", "CORRAL_CHANNEL_FD", "3", "--"]
    return argv


class Starter:
    """Builds the argv of one baseline variant: sandbox none|bwrap, imports light|heavy."""

    def __init__(self, worker_dir: str, heavy_imports: list[str]) -> None:
        self.worker_dir = os.path.abspath(worker_dir)
        self.bench_dir = tempfile.mkdtemp(prefix="corral-bench-worker-")
        os.chmod(self.bench_dir, 0o755)
        write_heavy_wrapper(self.bench_dir, heavy_imports)

    def argv(self, sandbox: str, heavy: bool) -> list[str]:
        if sandbox == "bwrap":
            worker_dir, bench_dir = SANDBOX_WORKER_DIR, SANDBOX_BENCH_DIR
            prefix = bwrap_prefix(self.worker_dir, self.bench_dir)
        else:
            worker_dir, bench_dir, prefix = self.worker_dir, self.bench_dir, []
        worker = f"{worker_dir}/worker.py"
        if heavy:
            return prefix + [PYTHON, "-I", f"{bench_dir}/{HEAVY_WRAPPER}", worker]
        return prefix + [PYTHON, "-I", worker]

    def cleanup(self) -> None:
        shutil.rmtree(self.bench_dir, ignore_errors=True)


def _frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return len(body).to_bytes(4, "big") + body


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise RuntimeError("worker closed its channel before answering ping")
        data += chunk
    return data


def start_to_first_ping(argv: list[str]) -> float:
    """Seconds from spawn to the first answered ping; the worker is then ended (end of file on
    its channel) and reaped, outside the timed span."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = {"CORRAL_CHANNEL_FD": "3", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=[
        (os.POSIX_SPAWN_DUP2, theirs.fileno(), 3),
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)])
    theirs.close()
    try:
        ours.sendall(_frame({"id": 1, "command": "ping", "args": {}}))
        size = int.from_bytes(_read_exact(ours, 4), "big")
        reply = json.loads(_read_exact(ours, size))
        elapsed = time.perf_counter() - started
        if "result" not in reply:
            raise RuntimeError(f"ping failed: {reply}")
        return elapsed
    finally:
        ours.close()
        os.waitpid(pid, 0)


def measure_import_cost(imports: list[str]) -> float:
    """Seconds the heavy import set costs in a fresh interpreter (import time only)."""
    code = ("import time; t = time.perf_counter(); " + "; ".join(f"import {m}" for m in imports)
            + "; print(time.perf_counter() - t)")
    read_end, write_end = os.pipe()
    pid = os.posix_spawn(PYTHON, [PYTHON, "-I", "-c", code], {},
                         file_actions=[(os.POSIX_SPAWN_DUP2, write_end, 1)])
    os.close(write_end)
    with os.fdopen(read_end) as output:
        text = output.read()
    os.waitpid(pid, 0)
    return float(text.strip())
