"""The Python worker, run unsandboxed as a subprocess and spoken to over a real socketpair."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import unittest
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER_DIR = os.path.join(ROOT, "images", "python-worker")
WORKER = os.path.join(WORKER_DIR, "worker.py")
PYTHON = "/usr/bin/python3"
TIMEOUT_S = 120  # never a timing assertion: only a guard against a hung worker

sys.dont_write_bytecode = True  # keep the worker's directory as the repository has it
sys.path.insert(0, WORKER_DIR)
from corral_signature import SignatureError, parse_signature  # noqa: E402


class WorkerProcess:
    """A worker on fd 3 of a child; the test holds the other end of the socketpair."""

    def __init__(self, **env: str) -> None:
        self.sock, child = socket.socketpair()
        # The daemon passes fd 3; any number works, since the worker reads CORRAL_CHANNEL_FD.
        full_env = {"CORRAL_CHANNEL_FD": str(child.fileno()), "CORRAL_LOG_FORMAT": "json",
                    **env}
        self.process = subprocess.Popen(
            [PYTHON, "-I", WORKER], env=full_env, pass_fds=[child.fileno()],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        child.close()
        self.sock.settimeout(TIMEOUT_S)
        self.next_id = 0

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        self.send_raw(struct.pack(">I", len(body)) + body)

    def _recv_exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise EOFError("worker closed the channel")
            data += chunk
        return data

    def receive(self) -> dict[str, Any]:
        (size,) = struct.unpack(">I", self._recv_exact(4))
        return json.loads(self._recv_exact(size))

    def request(self, command: str, args: dict[str, Any] | None = None,
                **extra: Any) -> dict[str, Any]:
        self.next_id += 1
        self.send({"id": self.next_id, "command": command, "args": args or {}, **extra})
        reply = self.receive()
        assert reply["id"] == self.next_id, reply
        return reply

    def result(self, command: str, args: dict[str, Any] | None = None,
               **extra: Any) -> dict[str, Any]:
        reply = self.request(command, args, **extra)
        assert "result" in reply, reply
        return reply["result"]

    def error(self, command: str, args: dict[str, Any] | None = None,
              **extra: Any) -> dict[str, Any]:
        reply = self.request(command, args, **extra)
        assert "error" in reply, reply
        return reply["error"]

    def close(self) -> tuple[int, bytes, bytes]:
        self.sock.close()
        out, err = self.process.communicate(timeout=TIMEOUT_S)
        return self.process.returncode, out, err


class WorkerTestCase(unittest.TestCase):
    env: dict[str, str] = {}

    def setUp(self) -> None:
        self.worker = WorkerProcess(**self.env)

    def tearDown(self) -> None:
        self.worker.sock.close()
        if self.worker.process.poll() is None:
            try:
                self.worker.process.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.worker.process.kill()
                self.worker.process.wait()
        for stream in (self.worker.process.stdout, self.worker.process.stderr):
            if stream:
                stream.close()

    def create(self, program_id: str, source: str, **args: Any) -> dict[str, Any]:
        return self.worker.result("create_program", {"program_id": program_id,
                                                      "kind": "python", "source": source, **args})

    def execute(self, program_id: str, **inputs: Any) -> dict[str, Any]:
        return self.worker.request("execute_program", {"program_id": program_id,
                                                       "inputs": inputs})


class CommandTest(WorkerTestCase):
    def test_ping(self) -> None:
        result = self.worker.result("ping")
        self.assertEqual(result["pong"], True)
        self.assertEqual(result["pid"], self.worker.process.pid)
        self.assertRegex(result["python"], r"^3\.\d+\.\d+")

    def test_create_and_execute_keeps_module_state(self) -> None:
        created = self.create("counter", "n = 0\ndef forward(step):\n    global n\n"
                              "    n += step\n    return {'n': n}\n")
        self.assertEqual(created["program_id"], "counter")
        self.assertEqual(created["entrypoint"], "forward")
        self.assertEqual(self.execute("counter", step=2)["result"]["outputs"], {"n": 2})
        self.assertEqual(self.execute("counter", step=3)["result"]["outputs"], {"n": 5})

    def test_custom_entrypoint(self) -> None:
        self.create("p", "def run(x):\n    return x * 2\n", entrypoint="run")
        self.assertEqual(self.execute("p", x=21)["result"]["outputs"], 42)

    def test_program_compiled_without_the_workers_future_imports(self) -> None:
        self.create("p", "def forward(x: int) -> str:\n"
                    "    return repr(forward.__annotations__['x'])\n")
        self.assertEqual(self.execute("p", x=1)["result"]["outputs"], "<class 'int'>")

    def test_dataclasses_and_pickle_find_the_program_module(self) -> None:
        self.create("dc", "from __future__ import annotations\nimport pickle\n"
                    "from dataclasses import dataclass\n@dataclass\nclass Point:\n"
                    "    x: int\ndef forward():\n"
                    "    return pickle.loads(pickle.dumps(Point(3))).x\n")
        self.assertEqual(self.execute("dc")["result"]["outputs"], 3)
        self.worker.result("delete_program", {"program_id": "dc"})
        self.create("dc", "def forward():\n    import sys\n"
                    "    return sys.modules[__name__].__name__\n")
        self.assertEqual(self.execute("dc")["result"]["outputs"], "corral_program_dc")

    def test_execute_result_fields(self) -> None:
        self.create("p", "import sys\ndef forward():\n    print('out')\n"
                    "    print('err', file=sys.stderr)\n    return None\n")
        result = self.execute("p")["result"]
        self.assertEqual(result["outputs"], None)
        self.assertEqual(result["stdout"], "out\n")
        self.assertEqual(result["stderr"], "err\n")
        self.assertFalse(result["stdout_truncated"])
        self.assertFalse(result["stderr_truncated"])
        self.assertIsInstance(result["duration_ms"], float)
        self.assertGreaterEqual(result["duration_ms"], 0.0)

    def test_list_and_delete(self) -> None:
        self.create("a", "def forward():\n    return 1\n")
        self.create("b", "def forward():\n    return 2\n")
        self.execute("a")
        programs = self.worker.result("list_programs")["programs"]
        by_id = {p["program_id"]: p for p in programs}
        self.assertEqual(set(by_id), {"a", "b"})
        self.assertEqual(by_id["a"]["executions"], 1)
        self.assertEqual(by_id["a"]["kind"], "python")
        self.assertEqual(self.worker.result("delete_program", {"program_id": "a"}),
                         {"deleted": True})
        self.assertEqual(self.worker.error("delete_program", {"program_id": "a"})["type"],
                         "program_not_found")
        self.assertEqual([p["program_id"] for p in self.worker.result("list_programs")
                          ["programs"]], ["b"])

    def test_get_stats(self) -> None:
        self.create("a", "def forward():\n    return 1\n")
        self.execute("a")
        self.execute("missing")
        stats = self.worker.result("get_stats")
        self.assertEqual(stats["programs"], 1)
        self.assertEqual(stats["executions"], 1)
        self.assertEqual(stats["errors"], 1)
        for key in ("started_at", "uptime_s", "max_rss_kb", "python"):
            self.assertIn(key, stats)
        self.assertGreater(stats["max_rss_kb"], 0)

    def test_channel_eof_exits_zero_and_logs_json_to_stderr(self) -> None:
        self.worker.result("ping")
        code, out, err = self.worker.close()
        self.assertEqual(code, 0)
        self.assertEqual(out, b"")
        lines = [json.loads(line) for line in err.decode().splitlines()]
        self.assertTrue(lines)
        for line in lines:
            self.assertEqual(set(line) - {"session"}, {"time", "level", "component", "msg"})
            self.assertEqual(line["component"], "worker")


class ErrorTest(WorkerTestCase):
    def test_unknown_command(self) -> None:
        self.assertEqual(self.worker.error("launch_missiles")["type"], "unknown_command")

    def test_invalid_args_name_the_field(self) -> None:
        cases = [
            ("create_program", {"kind": "python", "source": "x"}, "program_id"),
            ("create_program", {"program_id": "p", "kind": "python"}, "source"),
            ("create_program", {"program_id": "p", "kind": "python", "source": 5}, "source"),
            ("create_program", {"program_id": "p", "kind": "rust", "source": ""}, "kind"),
            ("execute_program", {}, "program_id"),
            ("delete_program", {"program_id": 7}, "program_id"),
        ]
        for command, args, field in cases:
            with self.subTest(command=command, args=args):
                error = self.worker.error(command, args)
                self.assertEqual(error["type"], "invalid_args")
                self.assertEqual(error["field"], field)
                self.assertIn(field, error["message"])

    def test_args_not_an_object(self) -> None:
        self.worker.next_id += 1
        self.worker.send({"id": self.worker.next_id, "command": "ping", "args": [1]})
        self.assertEqual(self.worker.receive()["error"]["type"], "invalid_args")

    def test_invalid_program_ids(self) -> None:
        for bad in ["", "a/b", ".", "..", "a b", "a\n", "x" * 129, "é", "a\x00"]:
            with self.subTest(program_id=bad):
                error = self.worker.error("create_program", {"program_id": bad,
                                                             "source": "def forward(): pass"})
                self.assertEqual(error["type"], "invalid_program_id")

    def test_program_exists(self) -> None:
        self.create("p", "def forward():\n    return 1\n")
        error = self.worker.error("create_program", {"program_id": "p",
                                                     "source": "def forward(): return 2"})
        self.assertEqual(error["type"], "program_exists")
        self.assertEqual(self.execute("p")["result"]["outputs"], 1)

    def test_program_error_at_creation(self) -> None:
        for source, exception in [("def forward(:\n", "SyntaxError"),
                                  ("print('x')\nraise RuntimeError('at import')\n",
                                   "RuntimeError"),
                                  ("import sys\nsys.exit(3)\n", "SystemExit")]:
            with self.subTest(exception=exception):
                error = self.worker.error("create_program", {"program_id": "p",
                                                             "source": source})
                self.assertEqual(error["type"], "program_error")
                self.assertEqual(error["exception"], exception)
                self.assertIn(exception, error["traceback"])
                # The daemon prefixes the exception's name; the worker must not do it too.
                self.assertFalse(error["message"].startswith(exception), error["message"])
        self.assertEqual(self.worker.result("list_programs")["programs"], [])

    def test_invalid_program(self) -> None:
        for source in ["x = 1\n", "forward = 5\n"]:
            with self.subTest(source=source):
                error = self.worker.error("create_program", {"program_id": "p",
                                                             "source": source})
                self.assertEqual(error["type"], "invalid_program")

    def test_program_exception_keeps_session_usable(self) -> None:
        self.create("p", "def forward(fail):\n    print('before')\n"
                    "    if fail:\n        raise KeyError('k')\n    return 'fine'\n")
        error = self.execute("p", fail=True)["error"]
        self.assertEqual(error["type"], "program_error")
        self.assertEqual(error["exception"], "KeyError")
        self.assertEqual(error["stdout"], "before\n")
        self.assertIn("raise KeyError", error["traceback"])
        self.assertNotIn("corral_programs", error["traceback"])
        self.assertEqual(self.execute("p", fail=False)["result"]["outputs"], "fine")

    def test_sys_exit_in_program_is_a_program_error(self) -> None:
        self.create("p", "import sys\ndef forward():\n    sys.exit(4)\n")
        self.assertEqual(self.execute("p")["error"]["exception"], "SystemExit")
        self.assertTrue(self.worker.result("ping")["pong"])

    def test_program_not_found(self) -> None:
        self.assertEqual(self.execute("nope")["error"]["type"], "program_not_found")

    def test_invalid_inputs(self) -> None:
        self.create("p", "def forward(a, b=2):\n    return a + b\n")
        for inputs in [{}, {"a": 1, "c": 3}, {"b": 1}]:
            with self.subTest(inputs=inputs):
                reply = self.worker.request("execute_program",
                                            {"program_id": "p", "inputs": inputs})
                self.assertEqual(reply["error"]["type"], "invalid_inputs")
        reply = self.worker.request("execute_program", {"program_id": "p", "inputs": [1]})
        self.assertEqual(reply["error"]["type"], "invalid_inputs")
        self.assertEqual(self.worker.result("list_programs")["programs"][0]["executions"], 0)

    def test_integers_beyond_64_bits_are_refused(self) -> None:
        self.create("big", "def forward(n):\n    return {'v': [2 ** n]}\n")
        for n, fits in [(63, True), (64, False), (1400, False)]:
            with self.subTest(n=n):
                reply = self.execute("big", n=n)
                if fits:
                    self.assertEqual(reply["result"]["outputs"], {"v": [2 ** n]})
                else:
                    self.assertEqual(reply["error"]["type"], "result_not_serializable")
                    self.assertIn("beyond 64 bits", reply["error"]["message"])
        self.assertEqual(self.execute("big", n=3)["result"]["outputs"], {"v": [8]})

    def test_result_not_serializable(self) -> None:
        cases = {
            "object": "return object()",
            "nan": "return float('nan')",
            "cycle": "x = []\n    x.append(x)\n    return x",
            "too deep": "x = []\n    for _ in range(300):\n        x = [x]\n    return x",
        }
        for name, body in cases.items():
            with self.subTest(case=name):
                program_id = name.replace(" ", "_")
                self.create(program_id, f"def forward():\n    {body}\n")
                error = self.execute(program_id)["error"]
                self.assertEqual(error["type"], "result_not_serializable")

    def test_hostile_exception_and_result_objects(self) -> None:
        self.create("bad_str", "class E(Exception):\n    def __str__(self):\n"
                    "        raise SystemExit(1)\ndef forward():\n    raise E()\n")
        error = self.execute("bad_str")["error"]
        self.assertEqual(error["type"], "program_error")
        self.assertEqual(error["exception"], "E")
        self.create("bad_dict", "class D(dict):\n    def items(self):\n"
                    "        raise SystemExit(1)\n    def keys(self):\n"
                    "        raise SystemExit(1)\n    def __iter__(self):\n"
                    "        raise SystemExit(1)\ndef forward():\n    return D(a=1)\n")
        self.assertEqual(self.execute("bad_dict")["error"]["type"], "result_not_serializable")
        self.assertTrue(self.worker.result("ping")["pong"])

    def test_lone_surrogates_become_valid_utf8(self) -> None:
        self.create("p", "def forward():\n    print('\\udc80')\n    return '\\ud800x'\n")
        result = self.execute("p")["result"]  # the reply parsed: it was valid UTF-8 JSON
        self.assertEqual(result["outputs"], "?x")
        self.assertEqual(result["stdout"], "?\n")


class LimitTest(WorkerTestCase):
    env = {"CORRAL_MAX_OUTPUT": "100", "CORRAL_MAX_RESULT": "1000"}

    def test_output_truncated_at_the_limit(self) -> None:
        self.create("p", "import sys\ndef forward():\n    print('a' * 500)\n"
                    "    sys.stderr.write('b' * 50)\n    return 1\n")
        result = self.execute("p")["result"]
        self.assertEqual(result["stdout"], "a" * 100)
        self.assertTrue(result["stdout_truncated"])
        self.assertEqual(result["stderr"], "b" * 50)
        self.assertFalse(result["stderr_truncated"])

    def test_result_too_large(self) -> None:
        self.create("p", "def forward(n):\n    return 'x' * n\n")
        self.assertEqual(self.execute("p", n=990)["result"]["outputs"], "x" * 990)
        error = self.execute("p", n=5000)["error"]
        self.assertEqual(error["type"], "result_too_large")
        self.assertEqual(error["limit"], 1000)
        self.assertTrue(self.worker.result("ping")["pong"])

    def test_stdout_replaced_for_good_is_restored(self) -> None:
        self.create("p", "import io, sys\ndef forward():\n    sys.stdout = io.StringIO()\n"
                    "    sys.stderr = io.StringIO()\n    print('hidden')\n    return 1\n")
        self.create("q", "def forward():\n    print('seen')\n    return 2\n")
        self.assertEqual(self.execute("p")["result"]["stdout"], "")
        self.assertEqual(self.execute("q")["result"]["stdout"], "seen\n")

    def test_closed_stdout_and_stderr_fds_do_not_break_the_worker(self) -> None:
        self.create("p", "import os\ndef forward():\n    os.close(1)\n    os.close(2)\n"
                    "    print('still captured')\n    return 1\n")
        result = self.execute("p")["result"]
        self.assertEqual(result["stdout"], "still captured\n")
        self.assertTrue(self.worker.result("ping")["pong"])

    def test_program_closing_the_channel_ends_the_worker(self) -> None:
        self.create("p", "import os\ndef forward():\n"
                    "    os.close(int(os.environ['CORRAL_CHANNEL_FD']))\n")
        self.worker.next_id += 1
        self.worker.send({"id": self.worker.next_id, "command": "execute_program",
                          "args": {"program_id": "p"}})
        with self.assertRaises(EOFError):
            self.worker.receive()
        self.assertNotEqual(self.worker.process.wait(timeout=TIMEOUT_S), 0)


class HostileDaemonFrameTest(WorkerTestCase):
    env = {"CORRAL_MAX_FRAME": "4096"}

    def assert_refused(self, data: bytes) -> None:
        self.worker.send_raw(data)
        code, out, err = self.worker.close()
        self.assertEqual(code, 2)
        self.assertEqual(out, b"")
        self.assertIn(b"refusing", err)

    def test_oversized_prefixes_are_refused(self) -> None:
        for prefix in (0xFFFFFFFF, 0x80000000, 4097):
            with self.subTest(prefix=hex(prefix)):
                worker = WorkerProcess(CORRAL_MAX_FRAME="4096")
                worker.send_raw(struct.pack(">I", prefix))
                code, _, err = worker.close()
                self.assertEqual(code, 2)
                self.assertIn(b"outside", err)

    def test_malformed_bodies_are_refused(self) -> None:
        for body in (b"not json", b"[1]", b'{"id": 1, "comm', b'{"a": "\xff"}', b'{"a": NaN}',
                     b'{"id": "1", "command": "ping"}', b"[" * 2000 + b"]" * 2000):
            with self.subTest(body=body[:20]):
                worker = WorkerProcess(CORRAL_MAX_FRAME="8192")
                worker.send_raw(struct.pack(">I", len(body)) + body)
                code, _, err = worker.close()
                self.assertEqual(code, 2)
                self.assertIn(b"refusing", err)

    def test_truncated_frame_then_eof(self) -> None:
        self.assert_refused(struct.pack(">I", 100) + b'{"id": 1')


class PoolTest(WorkerTestCase):
    env = {"CORRAL_POOL": "1"}

    def test_missing_session_id(self) -> None:
        for extra in ({}, {"session_id": ""}, {"session_id": 5}):
            with self.subTest(extra=extra):
                error = self.worker.error("ping", **extra)
                self.assertEqual(error["type"], "missing_session_id")

    def test_sessions_are_namespaced(self) -> None:
        for session, answer in (("alice", "A"), ("bob", "B")):
            self.worker.result("create_program", {
                "program_id": "qa_bot", "kind": "python",
                "source": f"n = 0\ndef forward():\n    global n\n    n += 1\n"
                          f"    return ['{answer}', n]\n"}, session_id=session)
        for _ in range(3):
            self.worker.result("execute_program", {"program_id": "qa_bot"}, session_id="alice")
        bob = self.worker.result("execute_program", {"program_id": "qa_bot"}, session_id="bob")
        self.assertEqual(bob["outputs"], ["B", 1])
        alice = self.worker.result("execute_program", {"program_id": "qa_bot"},
                                   session_id="alice")
        self.assertEqual(alice["outputs"], ["A", 4])
        self.assertEqual(self.worker.error("execute_program", {"program_id": "qa_bot"},
                                           session_id="carol")["type"], "program_not_found")
        listed = self.worker.result("list_programs", session_id="bob")["programs"]
        self.assertEqual([(p["program_id"], p["executions"]) for p in listed], [("qa_bot", 1)])

    def test_dataclass_programs_work_and_are_not_left_in_sys_modules(self) -> None:
        source = ("from __future__ import annotations\nimport sys\n"
                  "from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\n"
                  "def forward():\n"
                  "    leaked = [n for n in sys.modules if n.startswith('corral_program_')]\n"
                  "    return [P(1).x, bool(leaked)]\n")
        self.worker.result("create_program", {"program_id": "p", "kind": "python",
                                              "source": source}, session_id="s1")
        self.assertEqual(self.worker.result("execute_program", {"program_id": "p"},
                                            session_id="s1")["outputs"], [1, False])

    def test_drop_session(self) -> None:
        self.worker.result("create_program", {"program_id": "p", "kind": "python",
                                              "source": "def forward(): return 1"},
                           session_id="s1")
        self.worker.result("create_program", {"program_id": "p", "kind": "python",
                                              "source": "def forward(): return 2"},
                           session_id="s2")
        dropped = self.worker.result("drop_session", {"session_id": "s1"}, session_id="s1")
        self.assertEqual(dropped, {"dropped": 1})
        self.assertEqual(self.worker.result("list_programs", session_id="s1")["programs"], [])
        self.assertEqual(self.worker.result("execute_program", {"program_id": "p"},
                                            session_id="s2")["outputs"], 2)


class SignatureProgramTest(WorkerTestCase):
    def test_create_string_signature(self) -> None:
        result = self.worker.result("create_program", {
            "program_id": "qa", "kind": "signature",
            "signature": "context: list[str], question -> answer: str",
            "instructions": "Answer briefly."})
        self.assertEqual([f["name"] for f in result["input_fields"]], ["context", "question"])
        self.assertEqual(result["input_fields"][0]["type"], "list[str]")
        self.assertEqual(result["output_fields"], [{"name": "answer", "type": "str",
                                                    "description": ""}])
        self.assertEqual(result["instructions"], "Answer briefly.")

    def test_create_structured_signature(self) -> None:
        result = self.worker.result("create_program", {
            "program_id": "cls", "kind": "signature",
            "signature": {"inputs": [{"name": "text", "description": "what to classify"}],
                          "outputs": [{"name": "label", "type": "Literal['pos', 'neg']"}]}})
        self.assertEqual(result["input_fields"][0]["description"], "what to classify")
        self.assertEqual(result["output_fields"][0]["type"], "Literal['pos', 'neg']")

    def test_invalid_signature_names_the_position(self) -> None:
        error = self.worker.error("create_program", {"program_id": "s", "kind": "signature",
                                                     "signature": "q: strin -> a"})
        self.assertEqual(error["type"], "invalid_signature")
        self.assertEqual(error["position"], 3)
        self.assertIn("position 3", error["message"])

    def lm_request(self) -> dict[str, Any]:
        """The next frame from the worker, which must be a model request."""
        frame = self.worker.receive()
        self.assertEqual(frame["type"], "lm_request", frame)
        self.assertIsInstance(frame["id"], str)
        return frame

    def answer(self, frame: dict[str, Any], content: str) -> None:
        self.worker.send({"type": "lm_response", "id": frame["id"],
                          "result": {"content": content,
                                     "usage": {"prompt_tokens": 1, "completion_tokens": 1}}})

    def start_execute(self, program_id: str, **inputs: Any) -> int:
        self.worker.next_id += 1
        self.worker.send({"id": self.worker.next_id, "command": "execute_program",
                          "args": {"program_id": program_id, "inputs": inputs}})
        return self.worker.next_id

    def test_execute_asks_the_daemon_and_types_the_reply(self) -> None:
        self.worker.result("create_program", {"program_id": "qa", "kind": "signature",
                                              "signature": "question -> answer, n: int"})
        request_id = self.start_execute("qa", question="why?")
        frame = self.lm_request()
        self.assertEqual([m["role"] for m in frame["messages"]], ["system", "user"])
        self.assertIn("[[ ## question ## ]]\nwhy?", frame["messages"][1]["content"])
        self.assertEqual(frame["settings"], {})
        self.answer(frame, "[[ ## answer ## ]]\nbecause\n\n[[ ## n ## ]]\n42\n\n"
                           "[[ ## completed ## ]]")
        reply = self.worker.receive()
        self.assertEqual(reply["id"], request_id)
        self.assertEqual(reply["result"]["outputs"], {"answer": "because", "n": 42})

    def test_a_malformed_reply_gets_one_corrective_retry_then_lm_parse_error(self) -> None:
        self.worker.result("create_program", {"program_id": "qa", "kind": "signature",
                                              "signature": "question -> n: int"})
        self.start_execute("qa", question="how many?")
        first = self.lm_request()
        self.answer(first, "[[ ## n ## ]]\nmany")
        second = self.lm_request()
        self.assertEqual(len(second["messages"]), 4)
        self.assertEqual(second["messages"][2], {"role": "assistant",
                                                 "content": "[[ ## n ## ]]\nmany"})
        self.assertIn("could not be used", second["messages"][3]["content"])
        self.answer(second, "still many")
        error = self.worker.receive()["error"]
        self.assertEqual(error["type"], "lm_parse_error")
        self.assertEqual(error["raw_reply"], "still many")

    def test_a_daemon_error_keeps_its_type_and_status(self) -> None:
        self.worker.result("create_program", {"program_id": "qa", "kind": "signature",
                                              "signature": "question -> answer"})
        self.start_execute("qa", question="why?")
        frame = self.lm_request()
        self.worker.send({"type": "lm_response", "id": frame["id"],
                          "error": {"type": "lm_rate_limited", "message": "slow down",
                                    "status": 429}})
        error = self.worker.receive()["error"]
        self.assertEqual((error["type"], error["status"]), ("lm_rate_limited", 429))
        self.assertEqual(self.execute("qa", wrong="x")["error"]["type"], "invalid_inputs")
        self.assertEqual(self.execute("qa", question=5)["error"]["type"], "invalid_inputs")

    def test_tenant_code_reaches_the_model_through_the_corral_module(self) -> None:
        self.worker.result("create_program", {
            "program_id": "p", "kind": "python",
            "source": "import corral\ndef forward(q):\n"
                      "    return corral.lm([{'role': 'user', 'content': q}], temperature=0.5)\n"})
        request_id = self.start_execute("p", q="hello")
        frame = self.lm_request()
        self.assertEqual(frame["messages"], [{"role": "user", "content": "hello"}])
        self.assertEqual(frame["settings"], {"temperature": 0.5})
        self.answer(frame, "hi there")
        reply = self.worker.receive()
        self.assertEqual((reply["id"], reply["result"]["outputs"]), (request_id, "hi there"))

    def test_a_frame_that_is_not_the_awaited_reply_ends_the_worker(self) -> None:
        self.worker.result("create_program", {
            "program_id": "p", "kind": "python",
            "source": "import corral\ndef forward():\n"
                      "    try:\n        return corral.lm('x')\n"
                      "    except BaseException:\n        return 'swallowed'\n"})
        self.start_execute("p")
        frame = self.lm_request()
        self.worker.send({"type": "lm_response", "id": frame["id"] + "-other",
                          "result": {"content": "x"}})
        code, _, stderr = self.worker.close()
        self.assertEqual(code, 2, stderr)
        self.assertIn(b"lm_response", stderr)

    def test_demos_and_chain_of_thought_are_checked_at_creation(self) -> None:
        created = self.worker.result("create_program", {
            "program_id": "cot", "kind": "signature", "signature": "question -> answer",
            "chain_of_thought": True,
            "demos": [{"question": "1+1?", "reasoning": "add", "answer": "2"}]})
        self.assertEqual((created["chain_of_thought"], created["demos"]), (True, 1))
        error = self.worker.error("create_program", {
            "program_id": "bad", "kind": "signature", "signature": "question -> answer",
            "demos": [{"questio": "typo"}]})
        self.assertEqual((error["type"], error["field"]), ("invalid_args", "demos"))
        self.assertIn("questio", error["message"])


class SignatureParserTest(unittest.TestCase):
    GOOD = [
        ("question -> answer", ["question"], ["answer"]),
        ("context: list[str], question -> answer: str", ["context", "question"], ["answer"]),
        ("a:int,b:float->c:bool", ["a", "b"], ["c"]),
        ("x: dict[str, list[int]] -> y: Optional[str]", ["x"], ["y"]),
        ("x -> label: Literal['a', \"b\", 3, True]", ["x"], ["label"]),
        ("  spaced  ->  out  ", ["spaced"], ["out"]),
        ("x: Any -> y: list, z: dict", ["x"], ["y", "z"]),
    ]
    BAD = [
        ("", 0, "expected a field name"),
        ("question", 8, "expected '->'"),
        ("-> answer", 0, "expected a field name"),
        ("question ->", 11, "expected a field name"),
        ("q -> a -> b", 7, "expected the end"),
        ("q: strin -> a", 3, "unknown type"),
        ("q: list[str -> a", 12, "expected ']'"),
        ("q: dict[int, str] -> a", 3, "dict keys must be str"),
        ("q: list[str, int] -> a", 16, "takes 1"),
        ("q, q -> a", 3, "duplicate field name 'q'"),
        ("q -> q", 5, "duplicate field name 'q'"),
        ("class -> a", 0, "not a Python identifier"),
        ("q$ -> a", 1, "unexpected character"),
        ("q: Literal[] -> a", 11, "expected a literal value"),
        ("q, -> a", 3, "expected a field name"),
        ("q: -> a", 3, "expected a type"),
    ]

    def test_good_signatures(self) -> None:
        for text, inputs, outputs in self.GOOD:
            with self.subTest(text=text):
                signature = parse_signature(text)
                self.assertEqual([f.name for f in signature.inputs], inputs)
                self.assertEqual([f.name for f in signature.outputs], outputs)

    def test_bad_signatures_name_their_position(self) -> None:
        for text, position, message in self.BAD:
            with self.subTest(text=text):
                with self.assertRaises(SignatureError) as caught:
                    parse_signature(text)
                self.assertEqual(caught.exception.position, position, str(caught.exception))
                self.assertIn(message, str(caught.exception))
                self.assertIn(f"position {position}", str(caught.exception))

    def test_bad_structured_signatures_name_their_path(self) -> None:
        cases = [
            ({"inputs": [], "outputs": [{"name": "a"}]}, "inputs"),
            ({"inputs": [{"name": "q"}]}, "outputs"),
            ({"inputs": [{"name": "q", "type": "lst"}], "outputs": [{"name": "a"}]},
             "inputs[0].type"),
            ({"inputs": [{"name": "1q"}], "outputs": [{"name": "a"}]}, "inputs[0].name"),
            ({"inputs": [{"name": "q", "colour": 1}], "outputs": [{"name": "a"}]}, "inputs[0]"),
            ({"inputs": [{"name": "q"}], "outputs": [{"name": "a", "description": 3}]},
             "outputs[0].description"),
        ]
        for spec, path in cases:
            with self.subTest(spec=spec):
                with self.assertRaises(SignatureError) as caught:
                    parse_signature(spec)
                self.assertEqual(caught.exception.path, path)

    def test_type_position_inside_structured_field(self) -> None:
        with self.assertRaises(SignatureError) as caught:
            parse_signature({"inputs": [{"name": "q", "type": "list[strr]"}],
                             "outputs": [{"name": "a"}]})
        self.assertEqual(caught.exception.position, 5)


if __name__ == "__main__":
    unittest.main()
