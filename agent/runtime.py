"""Building a toolbox, an LLM and an agent from settings, in one place each, with every setting
the agent runs with explicit: what the command line (recommend, chat, serve, mcp, the
benchmarks), the evaluation and the conversation simulation share.

    llm = build_llm("local")          # "none" | "local" | "local:1.5b" | "openai:MODEL", behind a lock
    make_llm("openai:gpt-4o-mini")    # the bare client, wrapped in the reply cache if set

An *agent factory* (`agent.recommend.AgentFactory`) is a zero-argument callable returning an
`Agent`; the conversation layer and the server call it once per turn, so a test can hand each
turn a fresh `ScriptedLLM` while a real deployment shares one agent (and one model, behind a
lock) across all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.llm.base import LLM, ChatMessage, LLMReply, NoLLM, uses_llm
from agent.llm.cache import CachedLLM
from agent.llm.embedded import load_embedded
from agent.llm.fetch import EmbeddedModelName
from agent.llm.scoring import OptionScorer, OptionScores
from agent.recommend import Agent, AgentFactory
from agent.settings import AgentSettings
from agent.state import AgentConfig, Assembly, Planner
from tools.cli import parse_variants
from tools.settings import PathSettings
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


class UnknownLLMSpec(ValueError):
    pass


def _embedded_name(spec: str) -> EmbeddedModelName | None:
    name = spec.partition(":")[2]
    if not name:
        return None
    for known in get_args(EmbeddedModelName):
        if name == known:
            return known
    known_names = ", ".join(get_args(EmbeddedModelName))
    raise UnknownLLMSpec(f"unknown embedded model {name!r} in {spec!r}; known: {known_names}")


def make_llm(spec: str, settings: AgentSettings | None = None, paths: PathSettings | None = None) -> LLM:
    """The LLM for `spec`: "local" is the embedded model settings.embedded_model,
    "local:0.5b" / "local:1.5b" a named one (settings.embedded_runtime picks the runtime);
    "openai:MODEL" an OpenAI-compatible endpoint ("openai" alone uses
    settings.openai_model). Wrapped in the reply cache when settings.llm_cache_dir is set."""
    settings = settings or AgentSettings()
    llm: LLM
    if spec == "local" or spec.startswith("local:"):
        llm = load_embedded(
            settings.resolved_embedded_model_path(paths, _embedded_name(spec)),
            runtime=settings.embedded_runtime,
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            default_timeout=settings.llm_timeout_s,
        )
    elif spec == "openai" or spec.startswith("openai:"):
        from agent.llm.openai_compat import OpenAICompatLLM  # the openai client: a second to import

        model = spec.partition(":")[2] or settings.openai_model
        llm = OpenAICompatLLM(
            model,
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            request_timeout=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )
    else:
        raise UnknownLLMSpec(f"unknown LLM spec {spec!r}; use 'local', 'local:1.5b' or 'openai:MODEL'")
    if settings.llm_cache_dir is not None:
        return CachedLLM(llm, settings.llm_cache_dir)
    return llm


def open_toolbox(
    run: Path, variants: dict[str, Path] | list[Path] | None = None, split: HistorySplit = "full", one_shot: bool = False
) -> Toolbox:
    return Toolbox.open(run, variants=variants or {}, split=split, one_shot=one_shot)


def build_llm(spec: str, settings: AgentSettings | None = None) -> LLM:
    """ "none", "local" or "openai:MODEL"; a real model is wrapped in a lock so that concurrent
    turns take turns at it."""
    if spec == NO_LLM:
        return NoLLM()
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
        k=k,
        max_rounds=max_rounds,
        probe_bonus=probe_bonus,
        assembly=assembly,
        planner=planner,
        llm_timeout_s=settings.llm_timeout_s,
        **overrides,
    )


def shared_agent_factory(llm: LLM, toolbox: Toolbox, config: AgentConfig) -> AgentFactory:
    """One agent (one compiled graph, one model) for every turn."""
    agent = Agent(llm, toolbox, config)
    return lambda: agent


class AgentSpec(BaseSettings):
    """What a command-line entry point builds its agent from. Settings, so that they travel in
    the environment (TOOLREC_AGENT_RUN, TOOLREC_AGENT_LLM, ...) to server worker processes,
    which build the same agent there."""

    model_config = SettingsConfigDict(env_prefix="TOOLREC_AGENT_")

    run: Path
    llm: str = "local"
    k: int = 10
    rounds: int | None = None
    variants: list[str] = []
    probe_bonus: float = PROBE_BONUS

    def build(self, split: HistorySplit = "full", one_shot: bool = False, **overrides: Any) -> tuple[Toolbox, Agent]:
        """The toolbox (`one_shot`: for a command that answers once, `Toolbox`) and the agent
        (`overrides`: further AgentConfig settings)."""
        toolbox = open_toolbox(self.run, parse_variants(self.variants), split=split, one_shot=one_shot)
        model = build_llm(self.llm)
        return toolbox, Agent(model, toolbox, agent_config(model, k=self.k, rounds=self.rounds, probe_bonus=self.probe_bonus, **overrides))

    def shared(self) -> tuple[Toolbox, AgentFactory]:
        """The toolbox and one shared agent for every turn of a long-running entry point."""
        toolbox, agent = self.build()
        return toolbox, shared_agent_factory(agent.llm, toolbox, agent.config)
