"""Lenient reply parsing on the kinds of replies small chat models actually write."""

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from agent.llm.base import ToolCall
from agent.llm.parsing import (
    ReplyParseError,
    find_json,
    loads_lenient,
    parse_model,
    parse_tool_call,
    parse_tool_calls,
)


class Plan(BaseModel):
    genre: str
    years: list[int] = Field(default_factory=list)
    k: int = Field(default=10, ge=1, le=50)


class Choice(BaseModel):
    action: Literal["retrieve", "rank", "finish"]
    reason: str = ""


MESSY_PLANS = [
    # fenced, with a language tag and chatter around it
    'Sure! Based on the history, here is my plan:\n```json\n{"genre": "Sci-Fi", "k": 20}\n```\nLet me know if you need anything else.',
    # fence without a language tag
    '```\n{"genre": "Sci-Fi", "k": 20}\n```',
    # bare JSON
    '{"genre": "Sci-Fi", "k": 20}',
    # JSON then chatter containing braces-free text
    '{"genre": "Sci-Fi", "k": 20} This user clearly loves space operas.',
    # chatter with an apostrophe before the JSON
    'I\'d go with this: {"genre": "Sci-Fi", "k": 20}',
    # trailing commas
    '{"genre": "Sci-Fi", "k": 20,}',
    # Python-style dict with single quotes
    "{'genre': 'Sci-Fi', 'k': 20}",
    # an unclosed fence (reply cut off after the JSON)
    '```json\n{"genre": "Sci-Fi", "k": 20}\n',
    # multi-line, indented
    'Answer:\n{\n    "genre": "Sci-Fi",\n    "k": 20\n}\n',
    # a list mentioned in the chatter before the object
    'From [1] and [2] I infer: {"genre": "Sci-Fi", "k": 20}',
]


@pytest.mark.parametrize("text", MESSY_PLANS)
def test_parse_model_messy_replies(text: str) -> None:
    assert parse_model(text, Plan) == Plan(genre="Sci-Fi", k=20)


def test_strings_with_brackets_and_apostrophes_survive() -> None:
    text = 'Here: {"genre": "Children\'s {animated}", "years": [1995, 1999]} done'
    assert parse_model(text, Plan) == Plan(genre="Children's {animated}", years=[1995, 1999])


def test_json_literals_inside_python_style_dict() -> None:
    # single quotes force the literal_eval route; true/null must still become True/None
    assert loads_lenient("{'a': true, 'b': null, 'c': 'true love'}") == {
        "a": True,
        "b": None,
        "c": "true love",
    }


@pytest.mark.parametrize("snippet", ["{1, 2}", "{'a': b'x'}", "[" * 5000 + "]" * 5000])
def test_python_only_values_are_refused(snippet: str) -> None:
    with pytest.raises(ValueError):
        loads_lenient(snippet)


def test_python_tuples_and_keys_become_json() -> None:
    assert loads_lenient("{1: (2, 3)}") == {"1": [2, 3]}
    assert parse_tool_call("{'name': 'f', 'arguments': {1: 'x'}}") == ToolCall(name="f", arguments={"1": "x"})


def test_no_json_raises() -> None:
    with pytest.raises(ReplyParseError, match="no JSON"):
        parse_model("I think the user likes comedies.", Plan)
    with pytest.raises(ReplyParseError):
        find_json("nothing here")


def test_validation_error_carries_pydantic_message() -> None:
    with pytest.raises(ReplyParseError) as info:
        parse_model('```json\n{"action": "search"}\n```', Choice)
    assert "action" in info.value.detail
    assert "retrieve" in info.value.detail  # the allowed literals are named
    assert info.value.text.startswith("```json")


def test_error_prefers_the_object_over_an_earlier_list() -> None:
    with pytest.raises(ReplyParseError) as info:
        parse_model('see [1]: {"genre": "Drama", "k": 0}', Plan)
    assert info.value.detail.startswith("k:")


def test_first_validating_value_wins() -> None:
    text = '{"note": "thinking"}\n{"action": "finish", "reason": "enough candidates"}'
    assert parse_model(text, Choice).action == "finish"


def test_extra_values_are_tried_first() -> None:
    native = [{"action": "rank"}]
    assert parse_model('{"action": "finish"}', Choice, extra=native).action == "rank"


TOOL_CALL_REPLIES = [
    # Qwen's own format
    '<tool_call>\n{"name": "retrieve", "arguments": {"genre": "Comedy", "k": 10}}\n</tool_call>',
    # what Qwen2.5-Coder-0.5B actually tends to write: a fenced JSON object
    '```json\n{"name": "retrieve", "arguments": {"genre": "Comedy", "k": 10}}\n```',
    # bare, with chatter
    'I will call the tool now. {"name": "retrieve", "arguments": {"genre": "Comedy", "k": 10}}',
    # OpenAI wire shape, arguments as a JSON string
    '{"type": "function", "function": {"name": "retrieve", "arguments": "{\\"genre\\": \\"Comedy\\", \\"k\\": 10}"}}',
    # "parameters" instead of "arguments"
    '{"name": "retrieve", "parameters": {"genre": "Comedy", "k": 10}}',
    # unclosed tag
    '<tool_call>{"name": "retrieve", "arguments": {"genre": "Comedy", "k": 10}}',
]


@pytest.mark.parametrize("text", TOOL_CALL_REPLIES)
def test_parse_tool_call_variants(text: str) -> None:
    assert parse_tool_call(text) == ToolCall(name="retrieve", arguments={"genre": "Comedy", "k": 10})


def test_several_tool_calls_and_duplicates() -> None:
    text = '<tool_call>{"name": "a", "arguments": {}}</tool_call>\n<tool_call>{"name": "b", "arguments": {"x": 1}}</tool_call>'
    assert [c.name for c in parse_tool_calls(text)] == ["a", "b"]
    listed = '[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1}}]'
    assert [c.name for c in parse_tool_calls(listed)] == ["a", "b"]


@pytest.mark.parametrize(
    "text",
    [
        "The user likes comedies, so retrieve comedies.",
        '{"genre": "Comedy"}',  # JSON, but not a call
        '{"name": "retrieve", "arguments": "not json at all"}',
        '{"name": "", "arguments": {}}',
    ],
)
def test_not_a_tool_call(text: str) -> None:
    assert parse_tool_call(text) is None


def test_a_bare_name_counts_only_for_an_offered_tool() -> None:
    movie = '{"name": "Alien", "year": 1979}'
    assert parse_tool_call(movie) is None
    assert parse_tool_call(movie, offered={"retrieve"}) is None
    assert parse_tool_call('{"name": "finish"}', offered={"finish"}) == ToolCall(name="finish")
    # a call to a tool that was not offered is still returned, for the caller to report
    assert parse_tool_call('{"name": "delete_all", "arguments": {}}', offered={"finish"})
