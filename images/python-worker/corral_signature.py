"""Signature programs' input/output declarations, parsed and validated at creation.

Two forms are accepted, as in DSPy:

* a string: ``"question -> answer"`` or ``"context: list[str], question -> answer: str"``;
* a structured object: ``{"inputs": [{"name", "type", "description"}], "outputs": [...]}``.

Errors name the character offset where parsing stopped, so a client can point at it.
Types: str, int, float, bool, list, dict, Any, list[T], dict[str, T], Optional[T] and
Literal['a', 'b', 1, True]. Field names are Python identifiers, unique across both sides.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import Any

MAX_SIGNATURE_CHARS = 10_000
SIMPLE_TYPES = frozenset({"str", "int", "float", "bool", "list", "dict", "Any"})
GENERIC_ARITY = {"list": 1, "dict": 2, "Optional": 1}

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<arrow>->)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<string>'[^'\\]*'|"[^"\\]*")
      | (?P<number>-?[0-9]+)
      | (?P<punct>[,:\[\]])""",
    re.VERBOSE,
)


class SignatureError(Exception):
    """A signature that cannot be used; `position` is the character offset of the problem."""

    def __init__(self, message: str, position: int, path: str = "") -> None:
        where = f"{path} " if path else ""
        super().__init__(f"{message} ({where}at position {position})")
        self.position = position
        self.path = path


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    position: int


@dataclass(frozen=True)
class Field:
    name: str
    type: str = "str"
    description: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "description": self.description}


@dataclass(frozen=True)
class Signature:
    inputs: tuple[Field, ...]
    outputs: tuple[Field, ...]


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise SignatureError(f"unexpected character {text[position]!r}", position)
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    """Recursive descent over the tokens of one signature or one type string."""

    def __init__(self, text: str) -> None:
        if len(text) > MAX_SIGNATURE_CHARS:
            raise SignatureError(f"longer than {MAX_SIGNATURE_CHARS} characters", 0)
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self) -> Token:
        return self.tokens[self.index]

    def take(self, kind: str, text: str | None = None, what: str = "") -> Token:
        token = self.peek()
        if token.kind != kind or (text is not None and token.text != text):
            found = repr(token.text) if token.text else "the end"
            raise SignatureError(f"expected {what or text or kind}, found {found}", token.position)
        self.index += 1
        return token

    def accept(self, kind: str, text: str) -> bool:
        token = self.peek()
        if token.kind == kind and token.text == text:
            self.index += 1
            return True
        return False

    def signature(self) -> Signature:
        inputs = self.fields()
        self.take("arrow", what="'->'")
        outputs = self.fields()
        self.take("end", what="the end of the signature")
        return Signature(tuple(inputs), tuple(outputs))

    def fields(self) -> list[Field]:
        result = [self.field()]
        while self.accept("punct", ","):
            result.append(self.field())
        return result

    def field(self) -> Field:
        name = self.take("name", what="a field name")
        check_name(name.text, name.position)
        field_type = self.type() if self.accept("punct", ":") else "str"
        return Field(name.text, field_type)

    def type(self) -> str:
        name = self.take("name", what="a type")
        if name.text == "Literal":
            return self.literal(name)
        if name.text in GENERIC_ARITY and self.peek().text == "[":
            return self.generic(name)
        if name.text not in SIMPLE_TYPES:
            raise SignatureError(f"unknown type {name.text!r}", name.position)
        return name.text

    def generic(self, name: Token) -> str:
        self.take("punct", "[")
        arguments = [self.type()]
        while self.accept("punct", ","):
            arguments.append(self.type())
        closing = self.take("punct", "]", what="']'")
        if len(arguments) != GENERIC_ARITY[name.text]:
            expected = GENERIC_ARITY[name.text]
            raise SignatureError(f"{name.text} takes {expected} type argument(s)", closing.position)
        if name.text == "dict" and arguments[0] != "str":
            raise SignatureError("dict keys must be str (JSON object keys)", name.position)
        return f"{name.text}[{', '.join(arguments)}]"

    def literal(self, name: Token) -> str:
        self.take("punct", "[", what="'[' after Literal")
        values = [self.literal_value()]
        while self.accept("punct", ","):
            values.append(self.literal_value())
        self.take("punct", "]", what="']'")
        return f"Literal[{', '.join(values)}]"

    def literal_value(self) -> str:
        token = self.peek()
        if token.kind in ("string", "number") or token.text in ("True", "False"):
            self.index += 1
            return token.text
        found = repr(token.text) if token.text else "the end"
        raise SignatureError(f"expected a literal value, found {found}", token.position)


def check_name(name: str, position: int, path: str = "") -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise SignatureError(f"field name {name!r} is not a Python identifier", position, path)


def check_unique(signature: Signature) -> None:
    seen: set[str] = set()
    for field in signature.inputs + signature.outputs:
        if field.name in seen:
            raise SignatureError(f"duplicate field name {field.name!r}", 0, "signature")
        seen.add(field.name)


def parse_signature_text(text: str) -> Signature:
    signature = _Parser(text).signature()
    _check_unique_text(text, signature)
    return signature


def _check_unique_text(text: str, signature: Signature) -> None:
    """Like check_unique, but points at the second occurrence in the text."""
    seen: set[str] = set()
    names = [t for t in tokenize(text) if t.kind == "name"]
    for field in signature.inputs + signature.outputs:
        if field.name in seen:
            occurrences = [t.position for t in names if t.text == field.name]
            position = occurrences[1] if len(occurrences) > 1 else 0
            raise SignatureError(f"duplicate field name {field.name!r}", position)
        seen.add(field.name)


def parse_type(text: str, path: str) -> str:
    parser = _Parser(text)
    try:
        result = parser.type()
        parser.take("end", what="the end of the type")
    except SignatureError as error:
        raise SignatureError(str(error).rsplit(" (", 1)[0], error.position, path) from None
    return result


def parse_structured(spec: dict[str, Any]) -> Signature:
    unknown = set(spec) - {"inputs", "outputs", "instructions"}
    if unknown:
        raise SignatureError(f"unknown key {sorted(unknown)[0]!r}", 0, "signature")
    inputs = _structured_side(spec.get("inputs"), "inputs")
    outputs = _structured_side(spec.get("outputs"), "outputs")
    signature = Signature(inputs, outputs)
    check_unique(signature)
    return signature


def _structured_side(items: Any, side: str) -> tuple[Field, ...]:
    if not isinstance(items, list) or not items:
        raise SignatureError(f"{side} must be a non-empty list of fields", 0, side)
    return tuple(_structured_field(item, f"{side}[{i}]") for i, item in enumerate(items))


def _structured_field(item: Any, path: str) -> Field:
    if not isinstance(item, dict):
        raise SignatureError("a field must be an object", 0, path)
    unknown = set(item) - {"name", "type", "description"}
    if unknown:
        raise SignatureError(f"unknown key {sorted(unknown)[0]!r}", 0, path)
    name, field_type = item.get("name"), item.get("type", "str")
    description = item.get("description", "")
    if not isinstance(name, str):
        raise SignatureError("`name` must be a string", 0, path)
    check_name(name, 0, f"{path}.name")
    if not isinstance(field_type, str):
        raise SignatureError("`type` must be a string", 0, f"{path}.type")
    if not isinstance(description, str):
        raise SignatureError("`description` must be a string", 0, f"{path}.description")
    return Field(name, parse_type(field_type, f"{path}.type"), description)


def parse_signature(spec: Any) -> Signature:
    """Parses either form; raises SignatureError."""
    if isinstance(spec, str):
        return parse_signature_text(spec)
    if isinstance(spec, dict):
        return parse_structured(spec)
    raise SignatureError("signature must be a string or an object", 0)


_SIMPLE_CHECKS: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "float": (int, float),
    "bool": bool,
    "list": list,
    "dict": dict,
}


def value_matches(value: Any, field_type: str) -> bool:
    """A shallow check of an input value against its declared type (outer type only)."""
    outer = field_type.split("[", 1)[0]
    if outer in ("Any", "Literal", "Optional"):
        return True
    expected = _SIMPLE_CHECKS.get(outer)
    if expected is None:
        return True
    if outer in ("int", "float") and isinstance(value, bool):
        return False
    return isinstance(value, expected)
