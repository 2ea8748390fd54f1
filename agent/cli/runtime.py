"""What the command-line entry points share (recommend, chat, serve, mcp, the benchmarks and the
conversation simulation): building a toolbox, an LLM and an agent from command-line options, in
one place each, with every setting the agent runs with explicit.

An *agent factory* (`agent.recommend.AgentFactory`) is a zero-argument callable returning an
`Agent`; the conversation layer and the server call it once per turn, so a test can hand each
turn a fresh `ScriptedLLM` while a real deployment shares one agent (and one model, behind a
lock) across all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from agent.llm.base import LLM, ChatMessage, LLMReply, NoLLM, uses_llm
from agent.llm.scoring import OptionScorer, OptionScores
from agent.recommend import Agent, AgentFactory
from agent.settings import AgentSettings
from agent.state import AgentConfig, Assembly, Planner
from tools.toolbox import HistorySplit, Toolbox

NO_LLM = NoLLM.name
# The fused assembly's bonus, in backbone standard deviations, for items that a probe or the
# person's own request found: strong enough that "more like the second one" shows in the list.
# Every command-line entry point uses it unless told otherwise (--probe-bonus); evaluation
# methods set their own in their config.
PROBE_BONUS = 1.0


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


class LockedScorer(LockedLLM):
    """A locked LLM that can also score options (agent.llm.scoring), under the same lock."""

    def __init__(self, inner: OptionScorer) -> None:
        super().__init__(inner)  # type: ignore[arg-type]
        self.scorer = inner

    def score_options(self, messages: Sequence[ChatMessage], options: Sequence[str], **kwargs: Any) -> OptionScores:
        with self._lock:
            return self.scorer.score_options(messages, options, **kwargs)


def open_toolbox(run: Path, variants: dict[str, Path] | list[Path] | None = None, split: HistorySplit = "full") -> Toolbox:
    return Toolbox.open(run, variants=variants or {}, split=split)


def build_llm(spec: str, settings: AgentSettings | None = None) -> LLM:
    """ "none", "local" or "openai:MODEL"; a real model is wrapped in a lock so that concurrent
    turns take turns at it."""
    if spec == NO_LLM:
        return NoLLM()
    from agent.llm.factory import make_llm  # the embedded runtime loads only when asked for

    model = make_llm(spec, settings or AgentSettings())
    # only a model that can score options looks like one: the menu planner then weighs its
    # intents uniformly, without a failed call per user
    return LockedScorer(model) if isinstance(model, OptionScorer) else LockedLLM(model)


OrderingsOption = Annotated[int, typer.Option(help="Menu: orderings of the options the LLM scores, averaged")]
DebiasOption = Annotated[bool, typer.Option(help="Menu: divide out the LLM's position prior (with --orderings 1)")]


def agent_config(
    llm: LLM,
    k: int,
    rounds: int | None = None,
    *,
    probe_bonus: float = PROBE_BONUS,
    assembly: Assembly = "fused",
    planner: Planner = "menu",
    settings: AgentSettings | None = None,
    **overrides: Any,
) -> AgentConfig:
    """The agent's configuration for a command-line entry point, every setting explicit: one
    round for a menu weighed by the prior or equally (no LLM call), no plan rounds without an
    LLM, else `rounds` (default: TOOLREC_MAX_ROUNDS); the LLM time limit from the settings; the
    probe bonus, the assembly and the planner as given."""
    settings = settings or AgentSettings()
    if planner == "menu" and overrides.get("menu_choice") in ("prior", "uniform"):
        max_rounds = 1
    elif not uses_llm(llm):
        max_rounds = 0
    else:
        max_rounds = rounds if rounds is not None else settings.max_rounds
    return AgentConfig(
        k=k, max_rounds=max_rounds, probe_bonus=probe_bonus, assembly=assembly, planner=planner,
        llm_timeout_s=settings.llm_timeout_s, **overrides,
    )  # fmt: skip


def shared_agent_factory(llm: LLM, toolbox: Toolbox, config: AgentConfig) -> AgentFactory:
    """One agent (one compiled graph, one model) for every turn."""
    agent = Agent(llm, toolbox, config)
    return lambda: agent
