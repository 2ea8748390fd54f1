"""The OpenAI-compatible backend against a real server: llama-cpp-python's
(`python -m llama_cpp.server`, the `local` extra) on loopback with the embedded 0.5B GGUF.
A plain chat, a tool-calling-style reply, a JSON-schema-constrained reply and option scoring,
all through OpenAICompatLLM. Skipped when the model or the server's dependencies are absent."""

import importlib.util
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from agent.chat import Conversation, ConversationConfig
from agent.llm.base import ChatMessage
from agent.llm.openai_compat import OpenAICompatLLM
from agent.llm.parsing import parse_model
from agent.recommend import Agent
from agent.settings import AgentSettings
from agent.state import AgentConfig
from tools.toolbox import Toolbox

pytestmark = pytest.mark.llm
pytest_plugins = ["fixtures_tools"]

REPO_ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 90.0
SYSTEM = ChatMessage(role="system", content="You are a movie fan choosing what to watch next.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = AgentSettings().resolved_embedded_model_path()
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        pytest.skip(f"embedded model not fetched ({path}); run `toolrec models get`")
    if importlib.util.find_spec("starlette_context") is None:
        pytest.skip("llama-cpp-python's server extra is not installed")
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(path),
        "--model_alias",
        "qwen",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        # One thread: the suite shares a 2-core machine.
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
    ]
    # The log goes to a file: the server writes more than a pipe holds, and would block on it.
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited ({proc.returncode}): {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not up after {STARTUP_S:.0f}s")
            time.sleep(0.5)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def llm(server: str) -> OpenAICompatLLM:
    return OpenAICompatLLM("qwen", base_url=server, request_timeout=60.0, max_retries=0)


def test_plain_chat(llm: OpenAICompatLLM) -> None:
    reply = llm.chat([SYSTEM, ChatMessage(role="user", content="Say hello.")], max_tokens=12)
    assert reply.text.strip()
    assert reply.model == "openai:qwen" and reply.prompt_tokens > 10
    assert 0 < reply.completion_tokens <= 12


def test_tool_calling_reply(llm: OpenAICompatLLM) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "retrieve",
            "description": "Retrieve movies of one genre.",
            "parameters": {
                "type": "object",
                "properties": {"genre": {"type": "string"}},
                "required": ["genre"],
            },
        },
    }
    ask = ChatMessage(role="user", content="Call the retrieve tool for Comedy movies.")
    reply = llm.chat([SYSTEM, ask], tools=[tool], max_tokens=80)
    assert [call.name for call in reply.tool_calls] == ["retrieve"]
    assert reply.tool_calls[0].arguments["genre"].lower() == "comedy"


class Pick(BaseModel):
    genre: str
    score: int


def test_json_schema_constrained_reply(llm: OpenAICompatLLM) -> None:
    schema = {
        "type": "object",
        "properties": {
            "genre": {"type": "string", "enum": ["Sci-Fi", "Comedy", "Romance"]},
            "score": {"type": "integer"},
        },
        "required": ["genre", "score"],
    }
    ask = ChatMessage(role="user", content="Pick a genre for a Star Wars fan and rate it 1-5.")
    reply = llm.chat([SYSTEM, ask], max_tokens=40, json_schema=schema)
    pick = parse_model(reply.text, Pick)
    assert pick.genre in ("Sci-Fi", "Comedy", "Romance")
    assert json.loads(reply.text)  # the grammar leaves nothing around the JSON


def test_option_scoring_through_logprobs(llm: OpenAICompatLLM) -> None:
    options = ["More Sci-Fi, like Star Wars", "1990s Drama", "A Comedy from the 1980s"]
    ask = ChatMessage(role="user", content="You loved Star Wars and Alien. Which next?")
    scores = llm.score_options([SYSTEM, ask], options, orderings=2)
    assert scores.method == "logprobs"
    assert sum(scores.probabilities()) == pytest.approx(1.0)
    assert [o.order for o in scores.orderings] == [[0, 1, 2], [2, 1, 0]]
    # The model answers with an option number, not with something else.
    assert all(o.label_mass > 0.5 for o in scores.orderings)
    assert all(o.prompt_tokens > 30 for o in scores.orderings)


def test_a_wish_about_a_cast_asks_the_server_for_titles_and_keeps_only_catalogue_ones(llm: OpenAICompatLLM, toolbox: Toolbox) -> None:
    """The knowledge path end to end: an OpenAI-compatible backend is asked by default (auto);
    whatever it names, only catalogue titles that fit the wish reach the list, and the turn
    records what it named and what was kept."""
    agent = Agent(llm, toolbox, AgentConfig(k=5, max_rounds=0))
    result = Conversation(lambda: agent, toolbox, config=ConversationConfig(intent="rules")).turn("k", "films with Tom Hanks")
    knowledge = result.knowledge
    assert knowledge is not None and knowledge.asked == "Tom Hanks" and knowledge.error is None
    assert set(knowledge.kept) <= set(toolbox.dataset.item_index) and len(knowledge.kept) + len(knowledge.dropped) == len(knowledge.named)
    assert len(result.items) == 5 and "who is in a film" in result.reply
    listed = [i for i in result.items if i.id in knowledge.kept]
    assert all(i.reason == "named by the language model for your wish" for i in listed)
