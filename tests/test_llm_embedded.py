"""The real embedded model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M), loaded once per module.
Needs the GGUF (`toolrec models get`); skipped when it is absent."""

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel

from agent.llm.base import LLM, ChatMessage, LLMTimeout, ToolCall
from agent.llm.embedded import load_embedded
from agent.llm.parsing import ask_structured
from agent.settings import AgentSettings

pytestmark = pytest.mark.llm

REPO_ROOT = Path(__file__).resolve().parents[1]

RETRIEVE_TOOL = {
    "type": "function",
    "function": {
        "name": "retrieve_by_genre",
        "description": "Retrieve movies of one genre that the user is likely to watch next.",
        "parameters": {
            "type": "object",
            "properties": {
                "genre": {"type": "string", "description": "one genre, e.g. Comedy"},
                "k": {"type": "integer", "description": "how many movies"},
            },
            "required": ["genre", "k"],
        },
    },
}


class RetrieveArgs(BaseModel):
    genre: str
    k: int


class GenreChoice(BaseModel):
    genre: Literal["Sci-Fi", "Comedy", "Romance"]


@pytest.fixture(scope="module")
def llm() -> Iterator[LLM]:
    path = AgentSettings().resolved_embedded_model_path()
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        pytest.skip(f"embedded model not fetched ({path}); run `toolrec models get`")
    yield load_embedded(path, n_threads=2, n_ctx=4096)


def test_structured_answer_is_valid_json(llm: LLM) -> None:
    messages = [
        ChatMessage(
            role="system",
            content="You answer with a single JSON object and nothing else.",
        ),
        ChatMessage(
            role="user",
            content=(
                "A user watched: Alien (Sci-Fi), Star Wars (Sci-Fi), The Matrix (Sci-Fi), "
                "Notting Hill (Romance).\n"
                'Which genre does the user prefer? Choose one of "Sci-Fi", "Comedy", "Romance".'
                '\nReply as JSON: {"genre": "<one of the choices>"}'
            ),
        ),
    ]
    result = ask_structured(llm, messages, GenreChoice, max_tokens=48, timeout=60)
    assert result.ok, result.attempts
    reply = result.attempts[-1].reply
    assert reply is not None and reply.prompt_tokens > 20 and reply.completion_tokens > 3
    assert reply.model.startswith(("llama_cpp:", "transformers:"))


def test_tool_call_is_parsed(llm: LLM) -> None:
    messages = [
        ChatMessage(role="system", content="You help a user find movies by calling tools."),
        ChatMessage(role="user", content="Find me 5 comedies."),
    ]
    reply = llm.chat(messages, tools=[RETRIEVE_TOOL], max_tokens=96, timeout=60)
    assert reply.tool_calls, reply.text
    call: ToolCall = reply.tool_calls[0]
    assert call.name == "retrieve_by_genre"
    args = RetrieveArgs.model_validate(call.arguments)
    assert "comed" in args.genre.lower()


def test_deadline_stops_decoding(llm: LLM) -> None:
    messages = [ChatMessage(role="user", content="Write a long story about a robot.")]
    start = time.monotonic()
    with pytest.raises(LLMTimeout, match="deadline") as info:
        llm.chat(messages, max_tokens=2000, timeout=0.5)
    elapsed = time.monotonic() - start
    generated = re.search(r"and (\d+) tokens", str(info.value))
    # 2000 tokens take ~50 s at ~40 tok/s; loose bounds, as the cores may be shared
    assert generated is not None and int(generated.group(1)) < 200
    assert elapsed < 20.0
    # and the model is still usable afterwards
    reply = llm.chat([ChatMessage(role="user", content="Say OK.")], max_tokens=8)
    assert reply.text
