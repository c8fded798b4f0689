"""Signature programs as chat prompts, and replies back into typed outputs (DSPy's chat adapter).

A signature program becomes a system message that lists the input and output fields with their
types and descriptions, shows the structure of an exchange and states the instructions; the
inputs go in a user message, one marked section per field. The model is asked to answer in
marked sections, one per output field, ended by `[[ ## completed ## ]]`. Demos become prior
user/assistant turns. With chain of thought, a `reasoning` output comes before the others.

The reply is untrusted text: every section is parsed against its field's type, and a reply
that cannot be parsed raises AdapterParseError naming the field and what was wrong.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Callable

from corral_signature import Field, Signature

REASONING = Field("reasoning", "str", "Think step by step in order to produce the outputs.")
COMPLETED = "completed"
_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")
Message = dict[str, str]


class AdapterParseError(Exception):
    """A reply that does not hold every output field as a value of its type."""


def output_fields(signature: Signature, chain_of_thought: bool) -> tuple[Field, ...]:
    return ((REASONING,) if chain_of_thought else ()) + signature.outputs


def _describe(index: int, spec: Field) -> str:
    line = f"{index}. `{spec.name}` ({spec.type})"
    return f"{line}: {spec.description}" if spec.description else line


def type_hint(field_type: str) -> str:
    """How a value of `field_type` must be written in a reply section."""
    if field_type == "str":
        return ""
    if field_type.startswith("Literal["):
        choices = "; ".join(_literal_choices(field_type))
        return f"must exactly match (no extra characters) one of: {choices}"
    if field_type in ("int", "float", "bool"):
        return f"must be formatted as a valid Python {field_type}"
    return f"must be formatted as valid JSON of type {field_type}"


def _placeholder(spec: Field) -> str:
    hint = type_hint(spec.type)
    return f"{{{spec.name}}}" + (f"        # note: the value you produce {hint}" if hint else "")


def system_message(signature: Signature, instructions: str, chain_of_thought: bool) -> str:
    outputs = output_fields(signature, chain_of_thought)
    lines = ["Your input fields are:"]
    lines += [_describe(i + 1, f) for i, f in enumerate(signature.inputs)]
    lines += ["Your output fields are:"]
    lines += [_describe(i + 1, f) for i, f in enumerate(outputs)]
    lines += ["All interactions will be structured in the following way, with the appropriate "
              "values filled in.", ""]
    for spec in signature.inputs:
        lines += [f"[[ ## {spec.name} ## ]]", f"{{{spec.name}}}", ""]
    for spec in outputs:
        lines += [f"[[ ## {spec.name} ## ]]", _placeholder(spec), ""]
    lines += [f"[[ ## {COMPLETED} ## ]]", "In adhering to this structure, your objective is: ",
              "        " + (instructions or default_instructions(signature))]
    return "\n".join(lines)


def default_instructions(signature: Signature) -> str:
    inputs = ", ".join(f"`{f.name}`" for f in signature.inputs)
    outputs = ", ".join(f"`{f.name}`" for f in signature.outputs)
    return f"Given the fields {inputs}, produce the fields {outputs}."


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _sections(fields: tuple[Field, ...], values: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for spec in fields:
        if spec.name in values:
            lines += [f"[[ ## {spec.name} ## ]]", format_value(values[spec.name]), ""]
    return lines


def user_message(signature: Signature, inputs: dict[str, Any], chain_of_thought: bool) -> str:
    outputs = output_fields(signature, chain_of_thought)
    order = ", then ".join(_requested(f) for f in outputs)
    lines = _sections(signature.inputs, inputs)
    lines.append(f"Respond with the corresponding output fields, starting with {order}, and then "
                 f"ending with the marker for `[[ ## {COMPLETED} ## ]]`.")
    return "\n".join(lines)


def _requested(spec: Field) -> str:
    hint = type_hint(spec.type)
    return f"the field `[[ ## {spec.name} ## ]]`" + (f" ({hint})" if hint else "")


def assistant_message(fields: tuple[Field, ...], outputs: dict[str, Any]) -> str:
    return "\n".join(_sections(fields, outputs) + [f"[[ ## {COMPLETED} ## ]]"])


def render(signature: Signature, instructions: str, inputs: dict[str, Any],
           demos: list[dict[str, Any]], chain_of_thought: bool) -> list[Message]:
    """The whole conversation: system, one user/assistant pair per demo, then the inputs."""
    messages = [{"role": "system",
                 "content": system_message(signature, instructions, chain_of_thought)}]
    for demo in demos:
        messages.append({"role": "user",
                         "content": user_message(signature, demo, chain_of_thought)})
        messages.append({"role": "assistant",
                         "content": assistant_message(output_fields(signature, chain_of_thought),
                                                      demo)})
    messages.append({"role": "user", "content": user_message(signature, inputs, chain_of_thought)})
    return messages


def corrective_message(error: AdapterParseError, fields: tuple[Field, ...]) -> str:
    order = ", then ".join(_requested(f) for f in fields)
    return (f"Your reply could not be used: {error}. Respond again with every output field, "
            f"starting with {order}, and then ending with the marker for "
            f"`[[ ## {COMPLETED} ## ]]`.")


# --- parsing -------------------------------------------------------------------------------

def split_sections(reply: str) -> dict[str, str]:
    """Section name -> its text; text before the first header is ignored. A repeated
    section keeps its first occurrence, as DSPy does."""
    sections: dict[str, str] = {}
    matches = list(_HEADER.finditer(reply))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(reply)
        sections.setdefault(match.group(1), reply[match.end():end].strip())
    return sections


def parse_reply(reply: str, fields: tuple[Field, ...]) -> dict[str, Any]:
    sections = split_sections(reply)
    outputs: dict[str, Any] = {}
    for spec in fields:
        if spec.name not in sections:
            raise AdapterParseError(f"the section `[[ ## {spec.name} ## ]]` is missing")
        try:
            outputs[spec.name] = parse_value(sections[spec.name], spec.type)
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError) as error:
            raise AdapterParseError(f"field `{spec.name}` ({spec.type}): {error}") from None
    return outputs


def _split_arguments(inner: str) -> list[str]:
    """Top-level comma-separated parts of a type's brackets: 'str, list[int]' -> 2 parts."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(inner):
        depth += char == "["
        depth -= char == "]"
        if char == "," and depth == 0:
            parts.append(inner[start:index].strip())
            start = index + 1
    parts.append(inner[start:].strip())
    return parts


def _literal_choices(field_type: str) -> list[str]:
    return _split_arguments(field_type[len("Literal["):-1])


def _structured(text: str) -> Any:
    """JSON, or a Python literal (models often write 'single quotes' or True)."""
    try:
        return json.loads(text)
    except ValueError:
        return ast.literal_eval(text)


def parse_value(text: str, field_type: str) -> Any:
    """One section's text as a value of `field_type`; raises ValueError when it is not."""
    parsers: dict[str, Callable[[str], Any]] = {
        "str": str.strip, "int": _parse_int, "float": _parse_float, "bool": _parse_bool,
    }
    if field_type in parsers:
        return parsers[field_type](text)
    if field_type.startswith("Literal["):
        return _parse_literal(text, field_type)
    if field_type.startswith("Optional["):
        if text.strip() in ("None", "null", ""):
            return None
        return parse_value(text, field_type[len("Optional["):-1])
    if field_type == "Any":
        try:
            return _structured(text)
        except (ValueError, SyntaxError):
            return text
    return check_value(_structured(_strip_fence(text)), field_type)


def _strip_fence(text: str) -> str:
    """A ```json ... ``` fence around structured output, which many models add."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        stripped = stripped[3:-3]
        stripped = stripped[4:] if stripped.startswith("json") else stripped
    return stripped.strip()


def _parse_int(text: str) -> int:
    value = text.strip().rstrip(".")
    try:
        return int(value)
    except ValueError:
        number = float(value)
        if not number.is_integer():
            raise ValueError(f"{text[:80]!r} is not an integer") from None
        return int(number)


def _parse_float(text: str) -> float:
    value = float(text.strip())
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:80]!r} is not a finite number")
    return value


def _parse_bool(text: str) -> bool:
    value = text.strip().strip(".").lower()
    if value in ("true", "yes"):
        return True
    if value in ("false", "no"):
        return False
    raise ValueError(f"{text[:80]!r} is not true or false")


def _parse_literal(text: str, field_type: str) -> Any:
    value = text.strip()
    for choice in _literal_choices(field_type):
        literal = ast.literal_eval(choice)
        if value == choice or value == str(literal) or value.strip("'\"") == str(literal):
            return literal
    raise ValueError(f"{value[:80]!r} is not one of {field_type[len('Literal'):]}")


def check_value(value: Any, field_type: str) -> Any:
    """`value` checked against a list/dict type, element by element."""
    outer, _, rest = field_type.partition("[")
    arguments = _split_arguments(rest[:-1]) if rest else []
    if outer == "list":
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        return [_element(item, arguments) for item in value]
    if outer == "dict":
        if not isinstance(value, dict):
            raise ValueError(f"expected a dict, got {type(value).__name__}")
        value_types = arguments[1:] if arguments else []
        return {str(k): _element(v, value_types) for k, v in value.items()}
    raise ValueError(f"unsupported type {field_type}")


def _element(item: Any, arguments: list[str]) -> Any:
    if not arguments:
        return item
    if isinstance(item, str) and arguments[0] != "str":
        return parse_value(item, arguments[0])
    if arguments[0] == "str":
        return item if isinstance(item, str) else format_value(item)
    if arguments[0] in ("int", "float", "bool"):
        return parse_value(json.dumps(item), arguments[0])
    if arguments[0].startswith(("list", "dict")):
        return check_value(item, arguments[0])
    return parse_value(format_value(item), arguments[0])
