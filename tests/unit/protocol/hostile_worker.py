"""A fake worker that breaks the protocol on purpose, to test the daemon's WorkerChannel.

Usage: hostile_worker.py MODE. It reads requests from fd $CORRAL_CHANNEL_FD and answers the
first one (or the second, for modes that need one good exchange first) with the bad frame that
MODE names. Good replies carry {"echo": <id>}, so a test can see which request a reply answers.
After misbehaving it keeps the channel open until the daemon closes it, so the daemon's verdict
comes from what was sent, not from an exit.
"""

import json
import os
import struct
import sys
import time

FD = int(os.environ.get("CORRAL_CHANNEL_FD", "3"))
MAX_FRAME = int(os.environ.get("CORRAL_MAX_FRAME", str(16 << 20)))


def read_exact(size):
    data = b""
    while len(data) < size:
        chunk = os.read(FD, size - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data


def read_request():
    (size,) = struct.unpack(">I", read_exact(4))
    return json.loads(read_exact(size))


def write_raw(data):
    while data:
        data = data[os.write(FD, data):]


def write_body(body):
    write_raw(struct.pack(">I", len(body)) + body)


def write_json(message):
    write_body(json.dumps(message).encode())


def good(request_id):
    return {"id": request_id, "result": {"echo": request_id}}


def first_bad(frame_bytes):
    """Mode action: answer the first request with raw bytes."""
    def act():
        read_request()
        write_raw(frame_bytes)
    return act


def first_json(make):
    """Mode action: answer the first request with make(request)."""
    def act():
        request = read_request()
        write_json(make(request))
    return act


def framed(body):
    return struct.pack(">I", len(body)) + body


def stale():
    first = read_request()
    write_json(good(first["id"]))
    read_request()
    write_json(good(first["id"]))


def duplicate():
    first = read_request()
    write_json(good(first["id"]))
    write_json(good(first["id"]))


def exit_mid_frame():
    read_request()
    write_raw(struct.pack(">I", 100) + b'{"id": 1')
    os._exit(0)


def never_read():
    """Reads nothing at all, so the daemon's writes fill the socket buffer and block."""
    time.sleep(600)


def lm_request_then_reply():
    request = read_request()
    write_json({"type": "lm_request", "request_id": "r1"})
    (size,) = struct.unpack(">I", read_exact(4))
    answer = json.loads(read_exact(size))
    write_json({"id": request["id"], "result": {"echo": request["id"], "handled": answer}})


MODES = {
    "prefix_ffffffff": first_bad(b"\xff\xff\xff\xff"),
    "prefix_80000000": first_bad(b"\x80\x00\x00\x00"),
    "prefix_max_plus_one": first_bad(struct.pack(">I", MAX_FRAME + 1)),
    "random_bytes": first_bad(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    "garbage_body": first_bad(framed(b"\x00\x13\x37 not json at all \xfe\xff")),
    "truncated_json": first_bad(framed(b'{"id": 1, "resu')),
    "non_object": first_bad(framed(b"[1, 2, 3]")),
    "invalid_utf8": first_bad(framed(b'{"id": 1, "result": {"x": "\xff"}}')),
    "deep_nesting": first_bad(framed(b'{"id": 1, "result": ' + b"[" * 5000 + b"]" * 5000 + b"}")),
    "never_sent": first_json(lambda r: good(r["id"] + 1000)),
    "no_id": first_json(lambda r: {"result": {"echo": r["id"]}}),
    "float_id": first_json(lambda r: {"id": float(r["id"]), "result": {}}),
    "string_id": first_json(lambda r: {"id": str(r["id"]), "result": {}}),
    "negative_id": first_json(lambda r: {"id": -1, "result": {}}),
    "no_result_or_error": first_json(lambda r: {"id": r["id"]}),
    "result_and_error": first_json(
        lambda r: {"id": r["id"], "result": {}, "error": {"type": "x", "message": "y"}}),
    "result_not_object": first_json(lambda r: {"id": r["id"], "result": 5}),
    "error_without_type": first_json(lambda r: {"id": r["id"], "error": {"message": "m"}}),
    "unsolicited": first_json(lambda r: {"type": "lm_request", "request_id": "r1"}),
    "unknown_fields": first_json(
        lambda r: {**good(r["id"]), "extra": [1, 2], "another": {"x": None}}),
    "stale": stale,
    "duplicate": duplicate,
    "exit_mid_frame": exit_mid_frame,
    "lm_request": lm_request_then_reply,
    "never_read": never_read,
}


def main():
    MODES[sys.argv[1]]()
    while os.read(FD, 65536):
        pass


if __name__ == "__main__":
    main()
