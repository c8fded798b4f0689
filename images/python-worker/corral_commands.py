"""The worker's commands and its one piece of mutable state: the program table.

Programs are keyed by session, then by program id ({session_id: {program_id: Program}}); the
session is "" for a process-mode worker, which serves one session. In a pool every request must
name its session, so one session's request can never reach another's programs.

Commands (args -> result):
  ping {} -> {pong, pid, python}
  create_program {program_id, kind, source, entrypoint | signature, instructions,
                  chain_of_thought, demos}
      -> {program_id, kind, created_at, entrypoint | input_fields, output_fields, instructions,
          chain_of_thought, demos}
  execute_program {program_id, inputs}
      -> {outputs, stdout, stderr, stdout_truncated, stderr_truncated, duration_ms}
  list_programs {} -> {programs: [{program_id, kind, created_at, executions}]}
  delete_program {program_id} -> {deleted: true}
  get_stats {} -> {programs, executions, errors, started_at, uptime_s, max_rss_kb, python}
  drop_session {session_id} -> {dropped: n}
Error types: unknown_command, invalid_args (with `field`), missing_session_id,
invalid_program_id, program_exists, program_error (exception, traceback, stdout, stderr),
invalid_program, invalid_signature (position, path), program_not_found, invalid_inputs,
result_not_serializable, result_too_large (size, limit), internal_error; from a model call
(signature programs, corral.lm): lm_parse_error (raw_reply), lm_invalid_request, and the
daemon's lm_not_configured, lm_rate_limited, lm_timeout, lm_unavailable, lm_bad_response
(status).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from corral_programs import (Program, WorkerError, bind_inputs, check_program_id, forget_module,
                             safe_str,
                             check_signature_inputs,
                             create_python, create_signature, encode_result, run_python)
from corral_lm import LmPort, run_signature
from corral_protocol import Config, Log, ProtocolError, utc_stamp

_MISSING = object()
Reply = dict[str, Any] | bytes  # a result object, or a result already encoded as JSON bytes


@dataclass
class Session:
    programs: dict[str, Program] = field(default_factory=dict)
    executions: int = 0
    errors: int = 0


def arg(args: dict[str, Any], name: str, kind: type | tuple[type, ...],
        default: Any = _MISSING) -> Any:
    """One argument, checked: a missing or ill-typed argument is `invalid_args` naming it."""
    if name not in args:
        if default is _MISSING:
            raise WorkerError("invalid_args", f"missing argument `{name}`", field=name)
        return default
    value = args[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise WorkerError("invalid_args", f"argument `{name}` has the wrong type", field=name)
    return value


def encode(message: dict[str, Any]) -> bytes:
    text = json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    # Lone surrogates from tenant text cannot be UTF-8; replace them, never send invalid text.
    return text.encode("utf-8", errors="replace")


class Worker:
    def __init__(self, config: Config, log: Log, lm: LmPort | None = None) -> None:
        self._config = config
        self._log = log
        self._lm = lm
        self._sessions: dict[str, Session] = {}
        self._started_at = time.time()
        self._commands: dict[str, Callable[[str, dict[str, Any]], Reply]] = {
            "ping": self.ping,
            "create_program": self.create_program,
            "execute_program": self.execute_program,
            "list_programs": self.list_programs,
            "delete_program": self.delete_program,
            "get_stats": self.get_stats,
            "drop_session": self.drop_session,
        }

    # --- dispatch -------------------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> bytes:
        """Runs one request; returns the reply frame's body. Raises ProtocolError when the
        request cannot even be answered (no usable id)."""
        request_id = request.get("id")
        if not isinstance(request_id, int) or isinstance(request_id, bool) or request_id < 0:
            raise ProtocolError(f"request id {request_id!r} is not a non-negative integer")
        session_id = ""
        try:
            session_id = self._session_id(request)
            command, args = self._command(request)
            if self._lm is not None:
                self._lm.session_id = session_id
            result = command(session_id, args)
        except ProtocolError:
            raise  # the daemon broke the protocol during a model call: stop, never guess
        except WorkerError as error:
            return self._error_reply(request_id, session_id, error)
        except BaseException as error:  # noqa: B036 - a worker bug, or tenant objects that raise
            # SystemExit from __str__ or items(): report it and keep serving either way.
            message = safe_str(error)
            self._log.write("error", f"internal error: {message}", session_id)
            return self._error_reply(request_id, session_id,
                                     WorkerError("internal_error", message))
        finally:
            if self._lm is not None:
                self._lm.raise_if_broken()  # tenant code may have swallowed the error
        return self._result_reply(request_id, session_id, result)

    def _session_id(self, request: dict[str, Any]) -> str:
        if not self._config.pool:
            return ""
        session_id = request.get("session_id")
        if not isinstance(session_id, str) or not session_id:
            raise WorkerError("missing_session_id", "a pool worker needs `session_id` on "
                              "every request")
        return session_id

    def _command(self, request: dict[str, Any]) -> tuple[Callable[..., Reply], dict[str, Any]]:
        name = request.get("command")
        if not isinstance(name, str):
            raise WorkerError("invalid_args", "`command` must be a string", field="command")
        command = self._commands.get(name)
        if command is None:
            raise WorkerError("unknown_command", f"unknown command `{name[:100]}`")
        args = request.get("args", {})
        if not isinstance(args, dict):
            raise WorkerError("invalid_args", "`args` must be an object", field="args")
        return command, args

    def _error_reply(self, request_id: int, session_id: str, error: WorkerError) -> bytes:
        session = self._sessions.get(session_id)
        if session is not None:
            session.errors += 1
        body = encode({"id": request_id, "error": error.to_json()})
        if len(body) > self._config.max_frame:
            # The details (captured output, traceback) made it too big: keep the essentials.
            body = encode({"id": request_id, "error": {"type": error.error_type,
                                                       "message": str(error)[:4096]}})
        return body

    def _result_reply(self, request_id: int, session_id: str, result: Reply) -> bytes:
        if isinstance(result, bytes):
            body = b'{"id":%d,"result":' % request_id + result + b"}"
        else:
            body = encode({"id": request_id, "result": result})
        if len(body) > self._config.max_frame:
            error = WorkerError("result_too_large", f"reply of {len(body)} bytes exceeds the "
                                f"maximum frame of {self._config.max_frame}")
            return self._error_reply(request_id, session_id, error)
        return body

    def _session(self, session_id: str) -> Session:
        return self._sessions.setdefault(session_id, Session())

    def _program(self, session_id: str, args: dict[str, Any]) -> Program:
        program_id = arg(args, "program_id", str)
        session = self._sessions.get(session_id)
        program = session.programs.get(program_id) if session else None
        if program is None:
            raise WorkerError("program_not_found", f"no program `{program_id[:128]}`")
        return program

    # --- commands ------------------------------------------------------------------------

    def ping(self, session_id: str, args: dict[str, Any]) -> Reply:
        return {"pong": True, "pid": os.getpid(), "python": platform.python_version()}

    def create_program(self, session_id: str, args: dict[str, Any]) -> Reply:
        program_id = check_program_id(arg(args, "program_id", str))
        session = self._session(session_id)
        if program_id in session.programs:
            raise WorkerError("program_exists", f"program `{program_id}` already exists")
        kind = arg(args, "kind", str, "python")
        if kind == "python":
            program = create_python(program_id, arg(args, "source", str),
                                    arg(args, "entrypoint", str, "forward"),
                                    self._config.max_output, keep_module=not self._config.pool)
        elif kind == "signature":
            program = create_signature(program_id, arg(args, "signature", (str, dict)),
                                       arg(args, "instructions", str, None),
                                       arg(args, "chain_of_thought", bool, False),
                                       arg(args, "demos", list, None))
        else:
            raise WorkerError("invalid_args", "`kind` must be \"python\" or \"signature\"",
                              field="kind")
        session.programs[program_id] = program
        self._log.write("info", f"created {kind} program {program_id}", session_id)
        return self._describe(program)

    def _describe(self, program: Program) -> dict[str, Any]:
        described = {"program_id": program.program_id, "kind": program.kind,
                     "created_at": utc_stamp(program.created_at)}
        if program.signature is not None:
            described["input_fields"] = [f.to_json() for f in program.signature.inputs]
            described["output_fields"] = [f.to_json() for f in program.signature.outputs]
            described["instructions"] = program.instructions
            described["chain_of_thought"] = program.chain_of_thought
            described["demos"] = len(program.demos)
        else:
            described["entrypoint"] = program.entrypoint
        return described

    def execute_program(self, session_id: str, args: dict[str, Any]) -> Reply:
        program = self._program(session_id, args)
        inputs = args.get("inputs", {})
        if not isinstance(inputs, dict):
            raise WorkerError("invalid_inputs", "`inputs` must be an object")
        if program.signature is not None:
            return self._execute_signature(session_id, program, inputs)
        assert program.function is not None
        bind_inputs(program.function, inputs)
        program.executions += 1
        self._session(session_id).executions += 1
        value, captured = run_python(program, inputs, self._config.max_output)
        outputs = encode_result(value, self._config.max_result)
        return b'{"outputs":' + outputs + b"," + encode(captured)[1:]

    def _execute_signature(self, session_id: str, program: Program,
                           inputs: dict[str, Any]) -> Reply:
        check_signature_inputs(program.signature, inputs)
        program.executions += 1
        self._session(session_id).executions += 1
        started = time.perf_counter()
        outputs = run_signature(program, inputs)
        duration_ms = (time.perf_counter() - started) * 1000.0
        encoded = encode_result(outputs, self._config.max_result)
        captured = {"stdout": "", "stderr": "", "stdout_truncated": False,
                    "stderr_truncated": False, "duration_ms": duration_ms}
        return b'{"outputs":' + encoded + b"," + encode(captured)[1:]

    def list_programs(self, session_id: str, args: dict[str, Any]) -> Reply:
        session = self._sessions.get(session_id, Session())
        return {"programs": [p.summary() for p in session.programs.values()]}

    def delete_program(self, session_id: str, args: dict[str, Any]) -> Reply:
        program = self._program(session_id, args)
        del self._sessions[session_id].programs[program.program_id]
        if not self._config.pool:
            forget_module(program.program_id)
        return {"deleted": True}

    def get_stats(self, session_id: str, args: dict[str, Any]) -> Reply:
        session = self._sessions.get(session_id, Session())
        return {
            "programs": len(session.programs),
            "executions": session.executions,
            "errors": session.errors,
            "started_at": utc_stamp(self._started_at),
            "uptime_s": time.time() - self._started_at,
            "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "python": platform.python_version(),
        }

    def drop_session(self, session_id: str, args: dict[str, Any]) -> Reply:
        target = arg(args, "session_id", str, session_id)
        session = self._sessions.pop(target, None)
        dropped = len(session.programs) if session else 0
        self._log.write("info", f"dropped session with {dropped} programs", target)
        return {"dropped": dropped}
