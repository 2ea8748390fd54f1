"""ask_structured's corrective retry, driven by the scripted model."""

from typing import Literal

import pytest
from pydantic import BaseModel

from agent.llm.base import ChatMessage, LLMError, LLMReply, LLMTimeout, ToolCall
from agent.llm.parsing import ask_structured
from agent.llm.scripted import ScriptedLLM, ScriptExhausted

RETRIEVE_TOOL = {
    "type": "function",
    "function": {
        "name": "retrieve",
        "description": "Retrieve items of a genre.",
        "parameters": {
            "type": "object",
            "properties": {"genre": {"type": "string"}, "k": {"type": "integer"}},
            "required": ["genre"],
        },
    },
}


class Step(BaseModel):
    action: Literal["retrieve", "finish"]
    genre: str | None = None


QUESTION = [
    ChatMessage(role="system", content="You plan recommendations. Reply with JSON."),
    ChatMessage(role="user", content="History: Alien, Aliens, Predator. Next step?"),
]


def test_first_attempt_valid() -> None:
    llm = ScriptedLLM(['```json\n{"action": "retrieve", "genre": "Sci-Fi"}\n```'])
    result = ask_structured(llm, QUESTION, Step, max_tokens=64)
    assert result.ok and result.first_valid
    assert result.value == Step(action="retrieve", genre="Sci-Fi")
    assert len(result.attempts) == 1 and result.attempts[0].error is None
    assert llm.calls[0].max_tokens == 64


def test_corrective_retry_appends_bad_reply_and_error() -> None:
    bad = '{"action": "search", "genre": "Sci-Fi"}'
    llm = ScriptedLLM([bad, '{"action": "retrieve", "genre": "Sci-Fi"}'])
    result = ask_structured(llm, QUESTION, Step)
    assert result.ok and not result.first_valid
    assert [a.error is None for a in result.attempts] == [False, True]
    assert "action" in (result.attempts[0].error or "")

    retry_messages = llm.calls[1].messages
    assert retry_messages[: len(QUESTION)] == QUESTION
    assert retry_messages[-2] == ChatMessage(role="assistant", content=bad)
    assert retry_messages[-1].role == "user"
    assert "'retrieve' or 'finish'" in retry_messages[-1].content  # the pydantic message
    # the trace keeps what each attempt was asked
    assert result.attempts[1].messages == retry_messages


def test_gives_up_after_one_retry() -> None:
    llm = ScriptedLLM(["I think Sci-Fi.", "Definitely Sci-Fi!"])
    result = ask_structured(llm, QUESTION, Step)
    assert not result.ok and result.value is None and not result.first_valid
    assert len(result.attempts) == 2 and all(a.error for a in result.attempts)
    assert llm.remaining == 0


def test_timeout_ends_the_exchange_as_a_failed_attempt() -> None:
    llm = ScriptedLLM(["not json", LLMTimeout("too slow")])
    result = ask_structured(llm, QUESTION, Step)
    assert not result.ok
    assert result.attempts[-1].reply is None
    assert (result.attempts[-1].error or "").startswith("timeout")


def test_other_llm_errors_propagate() -> None:
    llm = ScriptedLLM([LLMError("401 unauthorised")])
    with pytest.raises(LLMError, match="401"):
        ask_structured(llm, QUESTION, Step)


def test_tool_calls_validate_as_the_structured_value() -> None:
    text = '```json\n{"name": "retrieve", "arguments": {"genre": "Horror", "k": 5}}\n```'
    llm = ScriptedLLM([text])
    result = ask_structured(llm, QUESTION, ToolCall, tools=[RETRIEVE_TOOL])
    assert result.value == ToolCall(name="retrieve", arguments={"genre": "Horror", "k": 5})
    assert llm.calls[0].tools == [RETRIEVE_TOOL]


def test_native_tool_calls_are_tried_before_the_text() -> None:
    reply = LLMReply(
        text="",
        tool_calls=[ToolCall(name="retrieve", arguments={"genre": "War"})],
        prompt_tokens=10,
        completion_tokens=5,
        seconds=0.1,
        model="x",
    )
    result = ask_structured(ScriptedLLM([reply]), QUESTION, ToolCall, tools=[RETRIEVE_TOOL])
    assert result.value == ToolCall(name="retrieve", arguments={"genre": "War"})


def test_scripted_llm_records_and_runs_out_loudly() -> None:
    llm = ScriptedLLM(['{"name": "retrieve", "arguments": {}}'], name="script-1")
    reply = llm.chat(QUESTION, tools=[RETRIEVE_TOOL], seed=7)
    assert reply.model == "script-1" and reply.tool_calls[0].name == "retrieve"
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert llm.calls[0].seed == 7 and llm.calls[0].messages == QUESTION
    with pytest.raises(ScriptExhausted, match="only 1 replies scripted"):
        llm.chat(QUESTION)
    # not an LLMError: agent code handling model failures must not swallow a broken script
    assert not issubclass(ScriptExhausted, LLMError)


def test_scripted_llm_without_tools_parses_no_calls() -> None:
    reply = ScriptedLLM(['{"name": "retrieve", "arguments": {}}']).chat(QUESTION)
    assert reply.tool_calls == []
