"""The worker's way to a language model: `lm_request` frames up the protocol channel.

The sandbox has no network and must never hold the deployment's API keys, so the worker does
not call a model itself. While it executes a request, it writes an `lm_request` frame
{type, id, messages, settings[, session_id]} with an id of its own ("lm-1", "lm-2", ...: strings,
so they can never be mistaken for the daemon's integer request ids) and blocks reading the
channel until the daemon answers with the `lm_response` of that id: {type, id, result: {content,
usage}} or {type, id, error: {type, message, status}}. The daemon holds the keys, applies the
session's settings and quotas, and counts usage.

The daemon sends nothing else while a request of this worker runs, so any other frame breaks
the protocol. The break is sticky: tenant code may catch the exception, but the worker checks
`broken` after every request and exits rather than read a desynchronised channel.

One module-level port (`install`, `port`) serves signature programs and the tenant-facing
`corral` module alike; it is the worker's only global state besides the program table.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from corral_adapter import (AdapterParseError, corrective_message, output_fields, parse_reply,
                            render)
from corral_programs import Program, WorkerError
from corral_protocol import Channel, ProtocolError

ROLES = frozenset({"system", "user", "assistant"})
SETTINGS = frozenset({"temperature", "max_tokens"})
MAX_MESSAGES = 256
MAX_RAW_REPLY = 64 * 1024  # characters of an unparseable reply kept in the error


class LmPort:
    def __init__(self, channel: Channel, max_frame: int) -> None:
        self._channel = channel
        self._max_frame = max_frame
        self._next_id = 0
        self.session_id = ""  # the session whose request runs now (pool mode)
        self.broken: ProtocolError | None = None
        # Tenant threads may call corral.lm at once; each request and its reply hold the
        # channel together, so replies can never be read by the wrong caller.
        self._lock = threading.Lock()

    def complete(self, messages: Any, settings: dict[str, Any]) -> dict[str, Any]:
        """One model call; returns {content, usage, cached}. Raises WorkerError with the
        daemon's error type (lm_rate_limited, lm_timeout, ...) or ProtocolError."""
        checked = check_messages(messages), check_settings(settings)
        with self._lock:
            if self.broken is not None:
                raise self.broken
            frame = self._request(*checked)
            self._channel.write_frame(frame)
            reply = self._channel.read_frame()
            try:
                return self._answer(reply)
            except ProtocolError as error:
                self.broken = error
                raise

    def _request(self, messages: list[dict[str, str]], settings: dict[str, Any]) -> bytes:
        self._next_id += 1
        frame: dict[str, Any] = {"type": "lm_request", "id": f"lm-{self._next_id}",
                                 "messages": messages, "settings": settings}
        if self.session_id:
            frame["session_id"] = self.session_id
        body = json.dumps(frame, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode("utf-8", errors="replace")
        if len(body) > self._max_frame:
            raise WorkerError("lm_invalid_request", f"model request of {len(body)} bytes exceeds "
                              f"the maximum frame of {self._max_frame}")
        return body

    def _answer(self, reply: dict[str, Any] | None) -> dict[str, Any]:
        expected = f"lm-{self._next_id}"
        if reply is None:
            raise ProtocolError("the channel closed while waiting for an lm_response")
        if reply.get("type") != "lm_response" or reply.get("id") != expected:
            raise ProtocolError(f"expected the lm_response to {expected}, got a frame of type "
                                f"{str(reply.get('type'))[:40]!r} id {str(reply.get('id'))[:40]!r}")
        error = reply.get("error")
        if isinstance(error, dict):
            details = {k: v for k, v in error.items()
                       if k in ("status", "endpoint", "limit", "value")}
            raise WorkerError(str(error.get("type", "lm_unavailable")),
                              str(error.get("message", "")), **details)
        result = reply.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("content"), str):
            raise ProtocolError(f"the lm_response to {expected} has no string `content`")
        return result

    def raise_if_broken(self) -> None:
        if self.broken is not None:
            raise self.broken


def check_messages(messages: Any) -> list[dict[str, str]]:
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
        raise WorkerError("lm_invalid_request", f"messages must be a list of 1..{MAX_MESSAGES} "
                          "{role, content} objects")
    checked = []
    for index, message in enumerate(messages):
        if (not isinstance(message, dict) or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)):
            raise WorkerError("lm_invalid_request", f"messages[{index}] must be an object with "
                              "`role` (system, user, assistant) and string `content`")
        checked.append({"role": message["role"], "content": message["content"]})
    return checked


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(settings) - SETTINGS)
    if unknown:
        raise WorkerError("lm_invalid_request", f"unknown model setting `{unknown[0]}` "
                          f"(known: {', '.join(sorted(SETTINGS))})")
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise WorkerError("lm_invalid_request", f"model setting `{name}` must be a number")
    return dict(settings)


_port: LmPort | None = None


def install(port: LmPort) -> None:
    global _port
    _port = port


def port() -> LmPort:
    if _port is None:
        raise WorkerError("lm_not_configured", "this worker has no channel to a language model")
    return _port


def run_signature(program: Program, inputs: dict[str, Any]) -> dict[str, Any]:
    """Asks the model; a reply that cannot be parsed gets one corrective retry, then a typed
    `lm_parse_error` carrying the raw reply."""
    assert program.signature is not None
    fields = output_fields(program.signature, program.chain_of_thought)
    messages = render(program.signature, program.instructions, inputs, program.demos,
                      program.chain_of_thought)
    first = port().complete(messages, {})["content"]
    try:
        return parse_reply(first, fields)
    except AdapterParseError as error:
        retry = messages + [{"role": "assistant", "content": first},
                            {"role": "user", "content": corrective_message(error, fields)}]
    second = port().complete(retry, {})["content"]
    try:
        return parse_reply(second, fields)
    except AdapterParseError as error:
        raise WorkerError("lm_parse_error", f"the model's reply could not be parsed, also after "
                          f"a corrective retry: {error}", raw_reply=second[:MAX_RAW_REPLY],
                          first_reply=first[:MAX_RAW_REPLY]) from None
