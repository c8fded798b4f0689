"""corral's Python worker: runs tenant programs for one session (or, in a pool, for many).

Started inside the session's sandbox as ``/usr/bin/python3 -I /opt/corral/worker.py``. It speaks
the worker protocol (ARCHITECTURE.md "The worker protocol") on a dedicated descriptor, never on
stdout, because tenant code may print anything: what it prints is captured, bounded, and returned
with the result. One frame = a 4-byte big-endian length + one UTF-8 JSON object. Requests are
handled one at a time, in order; while one runs, the worker may send `lm_request` frames and
wait for their `lm_response` (corral_lm.py).

Environment: CORRAL_CHANNEL_FD (3), CORRAL_MAX_FRAME (16 MiB), CORRAL_MAX_OUTPUT (characters
of captured stdout, and of stderr, kept per call: 1 Mi), CORRAL_MAX_RESULT (8 MiB), CORRAL_POOL
(1: every request names its session), CORRAL_LOG_FORMAT (json or text). Logs go to stderr as
lines with the daemon's keys: time, level, component, msg, session.
"""

from __future__ import annotations

import os
import sys

# `-I` keeps the script's directory off sys.path; the worker's own modules live beside it. That
# directory is a read-only bind in the sandbox, so never try to write bytecode into it.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from corral_protocol import Channel, Config, Log, ProtocolError  # noqa: E402
from corral_commands import Worker  # noqa: E402
import corral_lm  # noqa: E402


def serve(channel: Channel, worker: Worker, log: Log) -> int:
    """The main loop: one request, one reply, until the daemon closes the channel."""
    while True:
        try:
            request = channel.read_frame()
            reply = worker.handle(request) if request is not None else b""
        except ProtocolError as error:
            log.write("error", f"refusing the daemon's frame, exiting: {error}")
            return 2
        except OSError as error:
            log.write("error", f"reading the channel failed, exiting: {error}")
            return 1
        if request is None:
            log.write("info", "channel closed by the daemon, exiting")
            return 0
        try:
            channel.write_frame(reply)
        except OSError as error:
            log.write("error", f"writing the channel failed, exiting: {error}")
            return 1


def main() -> int:
    try:
        config = Config.from_env(os.environ)
    except ValueError as error:
        Log("json").write("error", f"bad worker environment: {error}")
        return 2
    log = Log(config.log_format)
    channel = Channel(config.channel_fd, config.max_frame)
    lm = corral_lm.LmPort(channel, config.max_frame)
    corral_lm.install(lm)  # signature programs and `import corral` in tenant code share it
    worker = Worker(config, log, lm)
    mode = "pool" if config.pool else "process"
    log.write("info", f"worker started in {mode} mode, pid {os.getpid()}")
    return serve(channel, worker, log)


if __name__ == "__main__":
    sys.exit(main())
