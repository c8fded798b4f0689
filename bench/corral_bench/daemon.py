"""A corrald of the benchmark's own: unique state dir and cgroup parent, stopped on every exit
path, so that it never disturbs another daemon or test running on the same host."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time


class DaemonError(Exception):
    pass


class Daemon:
    def __init__(self, build_dir: str, source_dir: str, overrides: list[str]) -> None:
        self.binary = os.path.join(build_dir, "corrald")
        self.config = os.path.join(source_dir, "manager", "corral.yaml")
        self.state_dir = tempfile.mkdtemp(prefix="corral-bench-state-")
        self.cgroup_parent = f"corral-bench-{os.getpid()}"
        self.overrides = overrides
        self.log_path = os.path.join(self.state_dir, "corrald.log")
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout_s: float = 30.0) -> None:
        argv = [self.binary, "--config", self.config, "--listen", "127.0.0.1:0",
                "--set", f"state_dir={self.state_dir}",
                "--set", f"cgroup.parent={self.cgroup_parent}"]
        for override in self.overrides:
            argv += ["--set", override]
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.port = self._wait_for_port(timeout_s)

    def _wait_for_port(self, timeout_s: float) -> int:
        port_file = os.path.join(self.state_dir, "corrald.port")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DaemonError(f"corrald exited with {self.process.returncode}: "
                                  f"{self.log_tail()}")
            if os.path.exists(port_file):
                with open(port_file) as file:
                    return int(file.read().strip())
            time.sleep(0.02)
        raise DaemonError(f"corrald wrote no port within {timeout_s} s: {self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, which ends every session and removes its cgroup; SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cleanup(self, keep_log_as: str) -> None:
        """After stop: keeps the log, removes the state dir and the (empty) cgroup parent."""
        os.makedirs(os.path.dirname(keep_log_as), exist_ok=True)
        if os.path.exists(self.log_path):
            shutil.copyfile(self.log_path, keep_log_as)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        remove_empty_cgroups(self.cgroup_parent)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as file:
                return "".join(file.readlines()[-lines:])
        except OSError:
            return ""


def cgroup_dirs(name: str) -> list[str]:
    """Every cgroup directory called `name` a few levels under /sys/fs/cgroup (one per
    hierarchy: the daemon's cgroup parent is made in each)."""
    found = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        if name in dirs:
            found.append(os.path.join(root, name))
            dirs.remove(name)
        if root.count("/") - "/sys/fs/cgroup".count("/") >= 3:
            dirs[:] = []
    return found


def remove_empty_cgroups(name: str) -> None:
    """rmdir of every cgroup directory called `name`; the kernel refuses any that still holds
    a process or a child, so nothing live is touched."""
    for directory in cgroup_dirs(name):
        try:
            os.rmdir(directory)
        except OSError:
            pass


class Client:
    """One keep-alive HTTP connection (http.client), reconnecting when the daemon closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, body=payload, headers=headers)
                response = self.connection.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                # keep_alive_max reached: the daemon closed the connection between requests.
                self.connection.close()
                if attempt == 2:
                    raise
        parsed = json.loads(data) if data else {}
        return response.status, parsed

    def close(self) -> None:
        self.connection.close()


TRIVIAL_PROGRAM = "def forward(x):\n    return x\n"


def create_session(client: Client, session_id: str, extra: dict | None = None) -> dict:
    """POST /v1/sessions; `extra` adds fields to the body (backend, tenant)."""
    request = {"session_id": session_id, **(extra or {})}
    status, body = client.request("POST", "/v1/sessions", request)
    if status != 201:
        raise DaemonError(f"create `{session_id}`: HTTP {status} {body}")
    return body


def delete_session(client: Client, session_id: str) -> None:
    status, body = client.request("DELETE", f"/v1/sessions/{session_id}")
    if status != 204:
        raise DaemonError(f"delete `{session_id}`: HTTP {status} {body}")


def create_program(client: Client, session_id: str, program_id: str = "bench") -> None:
    body = {"program_id": program_id, "kind": "python", "source": TRIVIAL_PROGRAM}
    status, reply = client.request("POST", f"/v1/sessions/{session_id}/programs", body)
    if status not in (200, 201):
        raise DaemonError(f"create program in `{session_id}`: HTTP {status} {reply}")


def execute_path(session_id: str, program_id: str = "bench") -> str:
    return f"/v1/sessions/{session_id}/programs/{program_id}/execute"


def execute(client: Client, session_id: str) -> dict:
    status, reply = client.request("POST", execute_path(session_id), {"inputs": {"x": 1}})
    if status != 200:
        raise DaemonError(f"execute in `{session_id}`: HTTP {status} {reply}")
    return reply
