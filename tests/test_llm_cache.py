"""The on-disk reply cache: hits make no call, survive a restart, and keys cover sampling."""

from pathlib import Path

import pytest

from agent.llm.base import ChatMessage, LLMTimeout
from agent.llm.cache import CachedLLM
from agent.llm.scripted import ScriptedLLM, ScriptExhausted

MESSAGES = [ChatMessage(role="user", content="Recommend one sci-fi film as JSON.")]


def test_hit_makes_no_call_and_survives_restart(tmp_path: Path) -> None:
    inner = ScriptedLLM(['{"title": "Alien"}'], name="m")
    first = CachedLLM(inner, tmp_path).chat(MESSAGES, max_tokens=32)
    assert not first.cached and len(inner.calls) == 1

    # a new wrapper around a model with nothing left to say: only the disk can answer
    restarted = CachedLLM(ScriptedLLM([], name="m"), tmp_path)
    again = restarted.chat(MESSAGES, max_tokens=32)
    assert again.cached and again.text == first.text
    assert again.model_dump(exclude={"cached"}) == first.model_dump(exclude={"cached"})
    assert (restarted.hits, restarted.misses) == (1, 0)
    # no temp files left behind by the atomic write
    assert [p.suffix for p in tmp_path.rglob("*") if p.is_file()] == [".json"]


@pytest.mark.parametrize(
    "change",
    [
        {"max_tokens": 64},
        {"temperature": 0.7},
        {"seed": 1},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    ],
)
def test_sampling_params_and_tools_are_part_of_the_key(tmp_path: Path, change: dict) -> None:
    inner = ScriptedLLM(["a", "b"], name="m")
    cached = CachedLLM(inner, tmp_path)
    cached.chat(MESSAGES, max_tokens=32)
    cached.chat(MESSAGES, **{"max_tokens": 32, **change})
    assert len(inner.calls) == 2


def test_model_name_and_messages_are_part_of_the_key(tmp_path: Path) -> None:
    CachedLLM(ScriptedLLM(["a"], name="m1"), tmp_path).chat(MESSAGES)
    other_model = ScriptedLLM(["b"], name="m2")
    assert CachedLLM(other_model, tmp_path).chat(MESSAGES).text == "b"
    other_messages = [*MESSAGES, ChatMessage(role="assistant", content="?")]
    assert not CachedLLM(ScriptedLLM(["c"], name="m1"), tmp_path).chat(other_messages).cached


def test_timeout_does_not_change_the_key(tmp_path: Path) -> None:
    cached = CachedLLM(ScriptedLLM(["a"], name="m"), tmp_path)
    cached.chat(MESSAGES, timeout=5)
    assert cached.chat(MESSAGES, timeout=50).cached


def test_errors_are_not_cached(tmp_path: Path) -> None:
    inner = ScriptedLLM([LLMTimeout("slow"), "fine"], name="m")
    cached = CachedLLM(inner, tmp_path)
    with pytest.raises(LLMTimeout):
        cached.chat(MESSAGES)
    assert cached.chat(MESSAGES).text == "fine"
    with pytest.raises(ScriptExhausted):
        inner.chat(MESSAGES)
