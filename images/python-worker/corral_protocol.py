"""The worker's side of the protocol: configuration, framing on the channel, and logging."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

HEADER_SIZE = 4
# Deeper requests are refused by the daemon's encoder, so one this deep is not the daemon's.
MAX_REQUEST_DEPTH = 256


class ProtocolError(Exception):
    """A frame from the daemon that breaks the protocol: the worker cannot go on safely."""


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "")
    if not text:
        return default
    value = int(text)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class Config:
    channel_fd: int = 3
    max_frame: int = 16 << 20
    max_output: int = 1 << 20
    max_result: int = 8 << 20
    pool: bool = False
    log_format: str = "json"

    @staticmethod
    def from_env(env: Mapping[str, str]) -> "Config":
        return Config(
            channel_fd=_env_int(env, "CORRAL_CHANNEL_FD", 3),
            max_frame=_env_int(env, "CORRAL_MAX_FRAME", 16 << 20),
            max_output=_env_int(env, "CORRAL_MAX_OUTPUT", 1 << 20),
            max_result=_env_int(env, "CORRAL_MAX_RESULT", 8 << 20),
            pool=env.get("CORRAL_POOL", "") == "1",
            log_format="text" if env.get("CORRAL_LOG_FORMAT") == "text" else "json",
        )


def utc_stamp(when: float) -> str:
    """RFC 3339 UTC with milliseconds, the same form the daemon uses for every timestamp."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
    return stamp + f".{int(when * 1000) % 1000:03d}Z"


class Log:
    """JSON or text lines on stderr, written straight to fd 2 so that tenant code replacing
    sys.stderr cannot swallow or redirect them."""

    def __init__(self, log_format: str) -> None:
        self._format = log_format

    def write(self, level: str, msg: str, session: str = "") -> None:
        stamp = utc_stamp(time.time())
        if self._format == "json":
            record = {"time": stamp, "level": level, "component": "worker", "msg": msg}
            if session:
                record["session"] = session
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        else:
            where = f" session={session}" if session else ""
            line = f"{stamp} {level:5} worker{where}: {msg}"
        try:
            os.write(2, (line + "\n").encode("utf-8", errors="replace"))
        except OSError:
            pass  # tenant code closed fd 2: logging is lost, the worker goes on


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_frame(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ProtocolError(f"malformed frame: {error}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"frame holds a {type(message).__name__}, not an object")
    return message


class Channel:
    """Frames over the channel descriptor. The length prefix is checked against the maximum
    before the body is read, so a bad prefix costs no memory."""

    def __init__(self, fd: int, max_frame: int) -> None:
        self._fd = fd
        self._max_frame = max_frame

    def _read_exact(self, size: int) -> bytes:
        chunks: list[bytes] = []
        remaining = size
        while remaining > 0:
            chunk = os.read(self._fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def read_frame(self) -> dict[str, Any] | None:
        """The next request, or None at end of file between frames."""
        header = self._read_exact(HEADER_SIZE)
        if not header:
            return None
        if len(header) < HEADER_SIZE:
            raise ProtocolError("end of file inside a frame header")
        size = int.from_bytes(header, "big")
        if size == 0 or size > self._max_frame:
            raise ProtocolError(f"frame length {size} is outside 1..{self._max_frame}")
        body = self._read_exact(size)
        if len(body) < size:
            raise ProtocolError("end of file inside a frame body")
        return decode_frame(body)

    def write_frame(self, body: bytes) -> None:
        view = memoryview(len(body).to_bytes(HEADER_SIZE, "big") + body)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
