"""What the long-running entry points share (chat, serve, mcp, the benchmarks and the
conversation simulation): building a toolbox and an agent factory from command-line options,
a stand-in LLM for running without one, and a lock for a model that many turns share.

An *agent factory* is a zero-argument callable returning an `Agent`; the conversation layer and
the server call it once per turn, so a test can hand each turn a fresh `ScriptedLLM` while a
real deployment shares one agent (and one model, behind a lock) across all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.llm.base import LLM, ChatMessage, LLMError, LLMReply
from agent.recommend import Agent
from agent.settings import AgentSettings
from agent.state import AgentConfig
from tools.toolbox import HistorySplit, Toolbox

AgentFactory = Callable[[], Agent]
NO_LLM = "none"


class NoLLM:
    """Stands in where no language model is wanted (`--llm none`): the agent then runs with
    zero plan rounds (backbone plus the caller's planned calls) and the conversation parses
    messages with its rules only. Any call is a configuration error."""

    name = NO_LLM

    def chat(self, messages: Sequence[ChatMessage], **_: Any) -> LLMReply:
        raise LLMError("no LLM is configured (--llm none): this call should not have been made")


class LockedLLM:
    """Serialises calls to an LLM that is not thread-safe (llama.cpp, the transformers runtime)
    when many requests share it."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.name = inner.name
        self._lock = threading.Lock()

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> LLMReply:
        with self._lock:
            return self.inner.chat(messages, **kwargs)


def uses_llm(llm: LLM) -> bool:
    return not isinstance(llm, NoLLM)


def open_toolbox(run: Path, variants: dict[str, Path] | None = None, split: HistorySplit = "full") -> Toolbox:
    return Toolbox.open(run, variants=variants or {}, split=split)


def build_llm(spec: str, settings: AgentSettings | None = None) -> LLM:
    """"none", "local" or "openai:MODEL"; a real model is wrapped in a lock so that concurrent
    turns take turns at it."""
    if spec == NO_LLM:
        return NoLLM()
    from agent.llm.factory import make_llm  # the embedded runtime loads only when asked for

    return LockedLLM(make_llm(spec, settings or AgentSettings()))


def agent_config(llm: LLM, k: int, rounds: int | None = None, **overrides: Any) -> AgentConfig:
    """The agent's configuration for live use: no plan rounds without an LLM; a stronger bonus
    for what the person's own requests found (planned calls), so that "more like the second
    one" shows in the list."""
    settings = AgentSettings()
    max_rounds = 0 if not uses_llm(llm) else rounds if rounds is not None else settings.max_rounds
    values: dict[str, Any] = {"k": k, "max_rounds": max_rounds, "probe_bonus": 1.0, "llm_timeout_s": settings.llm_timeout_s}
    return AgentConfig(**{**values, **overrides})


def shared_agent_factory(llm: LLM, toolbox: Toolbox, config: AgentConfig) -> AgentFactory:
    """One agent (one compiled graph, one model) for every turn."""
    agent = Agent(llm, toolbox, config)
    return lambda: agent
