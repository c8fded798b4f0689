"""Tenant programs inside the worker: creation, execution and the bounded capture of output.

A python program is tenant source run once, at creation, as a fresh module namespace; its
entrypoint is then called with the inputs as keyword arguments, and its module-level state lives
as long as the program. A signature program declares fields, instructions and demos; it is run
by asking a language model through the daemon (corral_lm.py, corral_adapter.py).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import re
import sys
import time
import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from corral_protocol import utc_stamp
from corral_signature import Signature, SignatureError, parse_signature, value_matches

PROGRAM_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# The daemon refuses frames nested deeper than 256 levels; a reply wraps outputs in 2 more.
MAX_RESULT_DEPTH = 250
# A JSON string (skipped whole, so brackets inside it do not count) or one bracket.
_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class WorkerError(Exception):
    """A command that failed in a way the client should see: becomes the reply's `error`."""

    def __init__(self, error_type: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.details = details

    def to_json(self) -> dict[str, Any]:
        return {"type": self.error_type, "message": str(self), **self.details}


@dataclass
class Program:
    program_id: str
    kind: str
    created_at: float
    entrypoint: str = "forward"
    function: Callable[..., Any] | None = None
    namespace: dict[str, Any] = field(default_factory=dict)
    signature: Signature | None = None
    instructions: str = ""
    chain_of_thought: bool = False
    demos: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""
    executions: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "program_id": self.program_id,
            "kind": self.kind,
            "created_at": utc_stamp(self.created_at),
            "executions": self.executions,
        }


class BoundedText(io.TextIOBase):
    """A text stream that keeps the first `limit` characters written and counts the rest."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._parts: list[str] = []
        self._kept = 0
        self._limit = limit
        self.truncated = False

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self._limit - self._kept
        if len(text) > room:
            self.truncated = True
        kept = text[: max(room, 0)]
        if kept:
            self._parts.append(kept)
            self._kept += len(kept)
        return len(text)

    def getvalue(self) -> str:
        return "".join(self._parts)


@contextlib.contextmanager
def captured_output(limit: int) -> Iterator[tuple[BoundedText, BoundedText]]:
    """Points sys.stdout/sys.stderr at bounded buffers; restores them even if tenant code
    replaced them for good, so the next call and the worker's own logging are unaffected."""
    saved = (sys.stdout, sys.stderr)
    out, err = BoundedText(limit), BoundedText(limit)
    sys.stdout, sys.stderr = out, err
    try:
        yield out, err
    finally:
        sys.stdout, sys.stderr = saved


def format_exception(error: BaseException, filename: str, source: str) -> str:
    """The traceback the tenant sees: the worker's own frame dropped, and the program's lines
    taken from its own source. (linecache is keyed by file name, which two sessions' programs
    can share in a pool, so it must never be fed tenant source.)"""
    lines = source.splitlines()
    tb = error.__traceback__.tb_next if error.__traceback__ else None
    frames = []
    for frame in traceback.StackSummary.extract(traceback.walk_tb(tb), lookup_lines=False):
        line = None
        if frame.filename == filename and frame.lineno and 0 < frame.lineno <= len(lines):
            line = lines[frame.lineno - 1]
        frames.append(traceback.FrameSummary(frame.filename, frame.lineno, frame.name,
                                             lookup_line=line is None, line=line))
    head = ["Traceback (most recent call last):\n"] if frames else []
    stack = traceback.StackSummary.from_list(frames).format()
    return "".join(head + stack + traceback.format_exception_only(type(error), error))


def safe_str(error: BaseException) -> str:
    """str() of a tenant's exception, whose __str__ is tenant code and may itself fail."""
    try:
        return str(error)
    except BaseException:  # noqa: B036
        return f"<{type(error).__name__} whose str() failed>"


def program_filename(program_id: str) -> str:
    return f"<program {program_id}>"


def check_program_id(program_id: Any) -> str:
    # "." and ".." match the pattern but read as paths wherever an id meets a URL or a file.
    if (not isinstance(program_id, str) or not PROGRAM_ID.fullmatch(program_id)
            or program_id.strip(".") == ""):
        raise WorkerError("invalid_program_id",
                          "program_id must match ^[A-Za-z0-9_.-]{1,128}$ and not be only dots")
    return program_id


def create_python(program_id: str, source: Any, entrypoint: Any, limit: int,
                  keep_module: bool) -> Program:
    """Runs `source` as a fresh module. The module is in sys.modules while its top level runs,
    because dataclasses, typing and pickle look a class's module up there; it stays there only
    when `keep_module` (a process-mode worker, which holds a single session's programs)."""
    if not isinstance(source, str):
        raise WorkerError("invalid_args", "`source` must be a string for a python program")
    if not isinstance(entrypoint, str) or not entrypoint.isidentifier():
        raise WorkerError("invalid_args", "`entrypoint` must be a Python identifier")
    module = types.ModuleType(module_name(program_id))
    sys.modules[module.__name__] = module
    try:
        _run_module(module, program_id, source, limit)
    except BaseException:
        forget_module(program_id)
        raise
    if not keep_module:
        forget_module(program_id)
    function = module.__dict__.get(entrypoint)
    if not callable(function):
        forget_module(program_id)
        raise WorkerError("invalid_program",
                          f"program does not define a callable `{entrypoint}`")
    return Program(program_id, "python", time.time(), entrypoint=entrypoint,
                   function=function, namespace=module.__dict__, source=source)


def module_name(program_id: str) -> str:
    return f"corral_program_{program_id}"


def forget_module(program_id: str) -> None:
    sys.modules.pop(module_name(program_id), None)


def _run_module(module: types.ModuleType, program_id: str, source: str, limit: int) -> None:
    with captured_output(limit) as (out, err):
        try:
            # dont_inherit: the worker's own `from __future__` imports must not change how
            # tenant code is compiled (annotations would silently become strings).
            code = compile(source, program_filename(program_id), "exec", dont_inherit=True)
            exec(code, module.__dict__)
        except BaseException as error:  # tenant code: SystemExit and all
            # The message alone, as at execution: the daemon puts `exception` in front of it.
            raise WorkerError("program_error", safe_str(error), exception=type(error).__name__,
                              traceback=format_exception(error, program_filename(program_id),
                                                         source),
                              stdout=out.getvalue(), stderr=err.getvalue()) from None


MAX_DEMOS = 64


def create_signature(program_id: str, spec: Any, instructions: Any, chain_of_thought: Any = False,
                     demos: Any = None) -> Program:
    if not isinstance(chain_of_thought, bool):
        raise WorkerError("invalid_args", "`chain_of_thought` must be true or false",
                          field="chain_of_thought")
    if instructions is None:
        instructions = spec.get("instructions", "") if isinstance(spec, dict) else ""
    if not isinstance(instructions, str):
        raise WorkerError("invalid_args", "`instructions` must be a string")
    try:
        signature = parse_signature(spec)
    except SignatureError as error:
        details = {"position": error.position, **({"path": error.path} if error.path else {})}
        raise WorkerError("invalid_signature", str(error), **details) from None
    return Program(program_id, "signature", time.time(), signature=signature,
                   instructions=instructions, chain_of_thought=chain_of_thought,
                   demos=check_demos(signature, demos, chain_of_thought))


def check_demos(signature: Signature, demos: Any, chain_of_thought: bool) -> list[dict[str, Any]]:
    """Few-shot examples: objects whose keys are the signature's fields (a demo may leave some
    out, as in DSPy; `reasoning` too when the program thinks step by step)."""
    if demos is None:
        return []
    if not isinstance(demos, list) or len(demos) > MAX_DEMOS:
        raise WorkerError("invalid_args", f"`demos` must be a list of at most {MAX_DEMOS} objects",
                          field="demos")
    names = {f.name for f in signature.inputs + signature.outputs}
    if chain_of_thought:
        names.add("reasoning")
    for index, demo in enumerate(demos):
        if not isinstance(demo, dict) or not demo:
            raise WorkerError("invalid_args", f"demos[{index}] must be a non-empty object",
                              field="demos")
        unknown = sorted(set(demo) - names)
        if unknown:
            raise WorkerError("invalid_args", f"demos[{index}] has `{unknown[0][:64]}`, which is "
                              "not a field of the signature", field="demos")
    return demos


def bind_inputs(function: Callable[..., Any], inputs: dict[str, Any]) -> None:
    try:
        parameters = inspect.signature(function)
    except (TypeError, ValueError):
        return  # a callable without a signature (some builtins): let the call decide
    try:
        parameters.bind(**inputs)
    except TypeError as error:
        raise WorkerError("invalid_inputs", str(error)) from None


def run_python(program: Program, inputs: dict[str, Any], limit: int) -> tuple[Any, dict]:
    """Calls the entrypoint (inputs already bound); returns its value and captured output."""
    assert program.function is not None
    with captured_output(limit) as (out, err):
        started = time.perf_counter()
        try:
            value = program.function(**inputs)
            failure = None
        except BaseException as error:  # tenant code: SystemExit and all
            value, failure = None, error
        duration_ms = (time.perf_counter() - started) * 1000.0
    captured = {
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
        "stdout_truncated": out.truncated,
        "stderr_truncated": err.truncated,
        "duration_ms": round(duration_ms, 3),  # microseconds: finer is only timer noise
    }
    if isinstance(failure, WorkerError) and failure.error_type.startswith("lm_"):
        raise failure  # a model call that failed keeps its type (lm_rate_limited, ...)
    if failure is not None:
        raise WorkerError("program_error", safe_str(failure), exception=type(failure).__name__,
                          traceback=format_exception(failure, program_filename(program.program_id),
                                                     program.source),
                          stdout=captured["stdout"],
                          stderr=captured["stderr"])
    return value, captured


def check_signature_inputs(signature: Signature, inputs: dict[str, Any]) -> None:
    names = {f.name for f in signature.inputs}
    missing = sorted(names - set(inputs))
    unknown = sorted(set(inputs) - names)
    if missing or unknown:
        raise WorkerError("invalid_inputs", f"missing inputs {missing}, unknown inputs {unknown}")
    for spec in signature.inputs:
        if not value_matches(inputs[spec.name], spec.type):
            raise WorkerError("invalid_inputs", f"input {spec.name!r} is not of type {spec.type}")


def json_depth_within(text: str, limit: int) -> bool:
    """True when no array or object in JSON `text` nests deeper than `limit`."""
    if text.count("[") + text.count("{") <= limit:
        return True  # cheap common case: not enough brackets to nest that deep
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                return False
        elif token in ("]", "}"):
            depth -= 1
    return True


def encode_result(value: Any, max_result: int) -> bytes:
    """Serializes a program's return value once, checking it against the limits."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except BaseException as error:  # noqa: B036 - tenant objects may raise anything, even
        # SystemExit, from the methods json calls while encoding them
        raise WorkerError("result_not_serializable",
                          f"result is not JSON-serializable: {safe_str(error)}") from None
    # Lone surrogates cannot be UTF-8: replace them rather than send text the daemon refuses.
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) > max_result:
        raise WorkerError("result_too_large",
                          f"result of {len(encoded)} bytes exceeds the limit of {max_result}",
                          size=len(encoded), limit=max_result)
    if not json_depth_within(text, MAX_RESULT_DEPTH):
        raise WorkerError("result_not_serializable",
                          f"result nests deeper than {MAX_RESULT_DEPTH} levels")
    if _LONG_DIGITS.search(text) is not None:  # cheap test first: most results have none
        check_integers(value)
    return encoded


# JSON readers, the daemon's among them, keep integers exactly only within 64 bits: 2**64 came
# back as a float, and 10**400 failed the whole reply (and the session with it).
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1
_LONG_DIGITS = re.compile(r"\d{19,}")


def check_integers(value: Any) -> None:
    """Refuses an integer in `value` that 64 bits cannot hold (depth already bounded)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not _INT_MIN <= item <= _INT_MAX:
            digits = len(str(abs(item))) if item.bit_length() < 10000 else "over 3000"
            raise WorkerError("result_not_serializable",
                              f"result holds an integer of {digits} digits, beyond 64 bits: "
                              "return it as a string")
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
