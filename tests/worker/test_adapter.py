"""The chat adapter: prompts rendered from signatures, replies parsed into typed outputs."""

from __future__ import annotations

import os
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "images", "python-worker"))
from corral_adapter import (AdapterParseError, output_fields, parse_reply,  # noqa: E402
                            parse_value, render, split_sections)
from corral_signature import parse_signature  # noqa: E402

SIGNATURE = parse_signature({
    "inputs": [{"name": "question", "description": "what the user asks"},
               {"name": "context", "type": "list[str]"}],
    "outputs": [{"name": "answer", "description": "a short answer"},
                {"name": "confidence", "type": "float"},
                {"name": "label", "type": "Literal['yes', 'no']"}]})


class RenderTest(unittest.TestCase):
    def setUp(self) -> None:
        self.messages = render(SIGNATURE, "Answer from the context.",
                               {"question": "Is it?", "context": ["a", "b"]}, [], False)
        self.system = self.messages[0]["content"]
        self.user = self.messages[-1]["content"]

    def test_roles(self) -> None:
        self.assertEqual([m["role"] for m in self.messages], ["system", "user"])

    def test_system_lists_every_field_with_type_and_description(self) -> None:
        lines = self.system.splitlines()
        inputs = lines.index("Your input fields are:")
        outputs = lines.index("Your output fields are:")
        self.assertEqual(lines[inputs + 1:outputs],
                         ["1. `question` (str): what the user asks", "2. `context` (list[str])"])
        self.assertEqual(lines[outputs + 1:outputs + 4],
                         ["1. `answer` (str): a short answer", "2. `confidence` (float)",
                          "3. `label` (Literal['yes', 'no'])"])

    def test_system_shows_the_sections_and_the_instructions(self) -> None:
        for name in ("question", "context", "answer", "confidence", "label", "completed"):
            self.assertIn(f"[[ ## {name} ## ]]", self.system)
        self.assertIn("must be formatted as a valid Python float", self.system)
        self.assertIn("must exactly match (no extra characters) one of: 'yes'; 'no'", self.system)
        self.assertTrue(self.system.endswith("Answer from the context."))

    def test_default_instructions_name_the_fields(self) -> None:
        system = render(SIGNATURE, "", {"question": "q", "context": []}, [], False)[0]["content"]
        self.assertIn("Given the fields `question`, `context`, produce the fields `answer`, "
                      "`confidence`, `label`.", system)

    def test_user_carries_the_inputs_in_sections(self) -> None:
        sections = split_sections(self.user)
        self.assertEqual(sections["question"], "Is it?")
        self.assertTrue(sections["context"].startswith('["a", "b"]'))
        self.assertIn("starting with the field `[[ ## answer ## ]]`", self.user)
        self.assertIn("`[[ ## completed ## ]]`", self.user)

    def test_demos_are_prior_turns(self) -> None:
        demo = {"question": "Sky blue?", "context": ["sky"], "answer": "yes", "confidence": 0.9,
                "label": "yes"}
        messages = render(SIGNATURE, "", {"question": "q", "context": []}, [demo], False)
        self.assertEqual([m["role"] for m in messages], ["system", "user", "assistant", "user"])
        self.assertIn("[[ ## question ## ]]\nSky blue?", messages[1]["content"])
        self.assertEqual(parse_reply(messages[2]["content"], SIGNATURE.outputs),
                         {"answer": "yes", "confidence": 0.9, "label": "yes"})

    def test_chain_of_thought_adds_reasoning_first(self) -> None:
        fields = output_fields(SIGNATURE, True)
        self.assertEqual([f.name for f in fields], ["reasoning", "answer", "confidence", "label"])
        system = render(SIGNATURE, "", {"question": "q", "context": []}, [], True)[0]["content"]
        self.assertIn("1. `reasoning` (str)", system)
        self.assertLess(system.index("[[ ## reasoning ## ]]"), system.index("[[ ## answer ## ]]"))


class ParseTest(unittest.TestCase):
    CASES = [
        ("str", "  hello world \n", "hello world"),
        ("int", "42", 42),
        ("int", "42.0", 42),
        ("float", "3.5", 3.5),
        ("float", "2", 2.0),
        ("bool", "True", True),
        ("bool", "false", False),
        ("list", '[1, "a"]', [1, "a"]),
        ("list[str]", "['a', 'b']", ["a", "b"]),
        ("list[int]", "[1, 2]", [1, 2]),
        ("list[int]", '["1", "2"]', [1, 2]),
        ("dict", '{"k": 1}', {"k": 1}),
        ("dict[str, list[int]]", '```json\n{"a": [1]}\n```', {"a": [1]}),
        ("Literal['yes', 'no']", "no", "no"),
        ("Literal['yes', 'no']", "'yes'", "yes"),
        ("Literal[1, 2]", "2", 2),
        ("Literal[True, False]", "False", False),
        ("Optional[int]", "None", None),
        ("Optional[int]", "7", 7),
        ("Any", '{"x": 1}', {"x": 1}),
        ("Any", "free text", "free text"),
    ]
    BAD = [
        ("int", "many"), ("int", "4.5"), ("float", "nan"), ("float", "x"), ("bool", "maybe"),
        ("list", '{"a": 1}'), ("list[int]", '["x"]'), ("dict", "[1]"), ("dict", "not json"),
        ("Literal['yes', 'no']", "maybe"),
    ]

    def test_every_supported_type(self) -> None:
        for field_type, text, expected in self.CASES:
            with self.subTest(field_type=field_type, text=text):
                value = parse_value(text, field_type)
                self.assertEqual(value, expected)
                self.assertIs(type(value), type(expected))

    def test_values_that_do_not_fit_their_type(self) -> None:
        for field_type, text in self.BAD:
            with self.subTest(field_type=field_type, text=text):
                with self.assertRaises((ValueError, SyntaxError)):
                    parse_value(text, field_type)

    def test_a_reply_with_every_section(self) -> None:
        reply = ("Sure.\n[[ ## answer ## ]]\nIt is.\n\n[[ ## confidence ## ]]\n0.75\n\n"
                 "[[ ## label ## ]]\nyes\n\n[[ ## completed ## ]]\n")
        self.assertEqual(parse_reply(reply, SIGNATURE.outputs),
                         {"answer": "It is.", "confidence": 0.75, "label": "yes"})

    def test_a_missing_section_names_the_field(self) -> None:
        with self.assertRaisesRegex(AdapterParseError, "confidence"):
            parse_reply("[[ ## answer ## ]]\nx\n[[ ## label ## ]]\nno", SIGNATURE.outputs)

    def test_a_bad_value_names_the_field_and_type(self) -> None:
        reply = "[[ ## answer ## ]]\nx\n[[ ## confidence ## ]]\nhigh\n[[ ## label ## ]]\nno"
        with self.assertRaisesRegex(AdapterParseError, r"`confidence` \(float\)"):
            parse_reply(reply, SIGNATURE.outputs)


if __name__ == "__main__":
    unittest.main()
