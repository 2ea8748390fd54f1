"""The OpenAI-compatible backend against a fake server on loopback: real SDK, real HTTP."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent.llm.base import ChatMessage, LLMError, LLMTimeout, ToolCall
from agent.llm.openai_compat import OpenAICompatLLM

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "retrieve",
            "description": "Retrieve items.",
            "parameters": {"type": "object", "properties": {"genre": {"type": "string"}}},
        },
    }
]
MESSAGES = [
    ChatMessage(role="system", content="You recommend films."),
    ChatMessage(role="user", content="Something like Alien."),
]


def completion(content: str | None, tool_calls: list[dict[str, Any]] | None = None, usage: bool = True) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28}
    return body


def error(status: int) -> tuple[int, dict[str, Any], float]:
    return status, {"error": {"message": f"status {status}", "type": "test"}}, 0.0


def ok(body: dict[str, Any], delay: float = 0.0) -> tuple[int, dict[str, Any], float]:
    return 200, body, delay


@dataclass
class FakeServer:
    """Answers POST /v1/chat/completions with the queued (status, body, delay) responses."""

    responses: list[tuple[int, dict[str, Any], float]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            fake.requests.append(json.loads(self.rfile.read(length)))
            status, body, delay = fake.responses.pop(0)
            time.sleep(delay)
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test); nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield fake
    httpd.shutdown()
    httpd.server_close()


def make(server: FakeServer, sleeps: list[float] | None = None, **kw: Any) -> OpenAICompatLLM:
    return OpenAICompatLLM(
        "fake-model",
        base_url=server.base_url,
        api_key="test-key",
        backoff_s=0.01,
        sleep=(sleeps.append if sleeps is not None else lambda _: None),
        **kw,
    )


def test_plain_text_reply(server: FakeServer) -> None:
    server.responses.append(ok(completion('{"genre": "Sci-Fi"}')))
    reply = make(server).chat(MESSAGES, max_tokens=50, temperature=0.0, seed=3)
    assert reply.text == '{"genre": "Sci-Fi"}' and reply.tool_calls == []
    assert (reply.prompt_tokens, reply.completion_tokens) == (21, 7)
    assert reply.model == "openai:fake-model" and reply.seconds > 0
    sent = server.requests[0]
    assert sent["model"] == "fake-model" and sent["max_tokens"] == 50 and sent["seed"] == 3
    assert sent["messages"][0] == {"role": "system", "content": "You recommend films."}
    assert "tools" not in sent


def test_native_tool_calls(server: FakeServer) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "retrieve", "arguments": '{"genre": "Sci-Fi"}'},
    }
    server.responses.append(ok(completion(None, [call])))
    reply = make(server).chat(MESSAGES, tools=TOOLS)
    assert reply.tool_calls == [ToolCall(name="retrieve", arguments={"genre": "Sci-Fi"})]
    assert reply.text == ""
    assert server.requests[0]["tools"] == TOOLS


def test_unparseable_native_arguments_stay_visible(server: FakeServer) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "retrieve", "arguments": "{oops"}}
    server.responses.append(ok(completion(None, [call])))
    reply = make(server).chat(MESSAGES, tools=TOOLS)
    assert reply.tool_calls == [] and "{oops" in reply.text


def test_tool_call_written_as_text_is_parsed(server: FakeServer) -> None:
    # servers without a tool-call parser hand back the model's text as is
    text = '```json\n{"name": "retrieve", "arguments": {"genre": "Horror"}}\n```'
    server.responses.append(ok(completion(text, usage=False)))
    reply = make(server).chat(MESSAGES, tools=TOOLS)
    assert reply.tool_calls == [ToolCall(name="retrieve", arguments={"genre": "Horror"})]
    assert (reply.prompt_tokens, reply.completion_tokens) == (0, 0)


def test_tool_messages_become_labelled_user_turns(server: FakeServer) -> None:
    server.responses.append(ok(completion("done")))
    make(server).chat([*MESSAGES, ChatMessage(role="tool", content="[1] Aliens (1986)")])
    assert server.requests[0]["messages"][-1] == {
        "role": "user",
        "content": "Tool result:\n[1] Aliens (1986)",
    }


@pytest.mark.parametrize("status", [500, 503, 429])
def test_retries_transient_errors_with_backoff(server: FakeServer, status: int) -> None:
    server.responses += [error(status), error(status), ok(completion("fine"))]
    sleeps: list[float] = []
    reply = make(server, sleeps, max_retries=3).chat(MESSAGES)
    assert reply.text == "fine" and len(server.requests) == 3
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]  # exponential


def test_gives_up_after_max_retries(server: FakeServer) -> None:
    server.responses += [error(500)] * 3
    with pytest.raises(LLMError, match="failed after 3 attempts"):
        make(server, max_retries=2).chat(MESSAGES)
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_not_retried(server: FakeServer, status: int) -> None:
    server.responses.append(error(status))
    with pytest.raises(LLMError) as info:
        make(server).chat(MESSAGES)
    assert not isinstance(info.value, LLMTimeout)
    assert len(server.requests) == 1


def test_timeout_raises_llm_timeout(server: FakeServer) -> None:
    server.responses.append(ok(completion("late"), delay=3.0))
    start = time.monotonic()
    with pytest.raises(LLMTimeout):
        make(server).chat(MESSAGES, timeout=0.5)
    assert time.monotonic() - start < 2.0


def test_request_timeout_without_deadline_is_retried(server: FakeServer) -> None:
    server.responses += [ok(completion("late"), delay=2.0), ok(completion("on time"))]
    reply = make(server, request_timeout=0.5).chat(MESSAGES)
    assert reply.text == "on time" and len(server.requests) == 2


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    llm = OpenAICompatLLM(
        "m",
        base_url=f"http://127.0.0.1:{port}/v1",
        backoff_s=0.01,
        max_retries=2,
        sleep=sleeps.append,
    )
    with pytest.raises(LLMError, match="failed after 3 attempts"):
        llm.chat(MESSAGES)
    assert len(sleeps) == 2
