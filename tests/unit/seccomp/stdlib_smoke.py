"""Exercises the parts of Python's stdlib the worker relies on; run under the seccomp filter.

Exits 0 when everything worked. Every step checks its own result, so a syscall refused with
EPERM that Python silently tolerates still shows up as a wrong answer here.
"""
import asyncio
import ctypes
import mmap
import multiprocessing
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading


def square(x: int) -> int:
    return x * x


def check_threads() -> None:
    results = []
    threads = [threading.Thread(target=results.append, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 1, 2, 3], results


def check_subprocess() -> None:
    assert subprocess.run(["/bin/true"]).returncode == 0
    out = subprocess.run([sys.executable, "-I", "-c", "print(6 * 7)"], capture_output=True)
    assert out.stdout.strip() == b"42", out


def check_multiprocessing() -> None:
    for method in ("fork", "spawn", "forkserver"):
        with multiprocessing.get_context(method).Pool(2) as pool:
            assert pool.map(square, range(5)) == [0, 1, 4, 9, 16], method


async def echo_roundtrip() -> bytes:
    async def handle(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping\n")
    line = await reader.readline()
    writer.close()
    server.close()
    await server.wait_closed()
    return line


def check_asyncio() -> None:
    assert asyncio.run(echo_roundtrip()) == b"ping\n"


def check_sqlite() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("create table t (x)")
    db.executemany("insert into t values (?)", [(1,), (2,)])
    assert db.execute("select sum(x) from t").fetchone() == (3,)


def check_ctypes() -> None:
    assert ctypes.CDLL(None).getpid() == os.getpid()


def check_files_and_mmap() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "data")
        with open(path, "wb") as f:
            f.write(b"x" * 4096)
        with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as mapped:
            mapped[0:1] = b"y"
            mapped.flush()
        with open(path, "rb") as f:
            assert f.read(1) == b"y"
    with tempfile.NamedTemporaryFile() as f:
        f.write(b"hello")
        f.flush()
        assert os.stat(f.name).st_size == 5


def check_select_and_signals() -> None:
    left, right = socket.socketpair()
    right.send(b"!")
    assert select.select([left], [], [], 5)[0] == [left]
    epoll = select.epoll()
    epoll.register(left.fileno(), select.EPOLLIN)
    assert epoll.poll(5)
    epoll.close()
    received = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    os.kill(os.getpid(), signal.SIGUSR1)
    assert received == [signal.SIGUSR1]


def main() -> None:
    check_threads()
    check_subprocess()
    check_multiprocessing()
    check_asyncio()
    check_sqlite()
    check_ctypes()
    check_files_and_mmap()
    check_select_and_signals()


if __name__ == "__main__":
    main()
