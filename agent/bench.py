"""`toolrec bench agent`: what one recommendation costs with a given LLM, over sampled users."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from agent.llm.factory import make_llm
from agent.recommend import Agent
from agent.settings import AgentSettings
from agent.state import AgentConfig, Recommendation, RecommendRequest
from tools.toolbox import Toolbox


def summarise(recommendations: list[Recommendation]) -> dict[str, float]:
    firsts = [e.valid_first_try for r in recommendations for e in r.llm_events if e.node == "plan" and e.valid_first_try is not None]
    seconds = [r.seconds for r in recommendations]
    return {
        "recommendations": len(recommendations),
        "seconds_per_recommendation": round(statistics.mean(seconds), 3),
        "seconds_p50": round(statistics.median(seconds), 3),
        "seconds_max": round(max(seconds), 3),
        "llm_calls_per_recommendation": round(statistics.mean(len(r.llm_events) for r in recommendations), 3),
        "tokens_per_recommendation": round(statistics.mean(r.tokens for r in recommendations), 1),
        "valid_plan_share": round(sum(firsts) / len(firsts), 3) if firsts else 0.0,
        "backfilled_share": round(sum(r.backfilled > 0 for r in recommendations) / len(recommendations), 3),
        "backfilled_items_per_list": round(statistics.mean(r.backfilled for r in recommendations), 3),
        "tool_calls_per_recommendation": round(statistics.mean(sum(e.kind == "tool" and e.node == "act" for e in r.trace) for r in recommendations), 3),
    }


def bench_agent(
    run: Annotated[Path, typer.Option(help="Run folder")],
    users: Annotated[int, typer.Option(help="How many sampled users")] = 10,
    llm: Annotated[str, typer.Option(help="local | openai:MODEL")] = "local",
    rounds: Annotated[int | None, typer.Option(help="Plan steps (default: settings)")] = None,
    seed: int = 2023,
) -> None:
    """Seconds, LLM calls and tokens per recommendation, valid plan share, backfilled share (JSON)."""
    settings = AgentSettings()
    toolbox = Toolbox.open(run)
    agent = Agent(make_llm(llm, settings), toolbox, AgentConfig(max_rounds=rounds if rounds is not None else settings.max_rounds))
    sample = np.random.default_rng(seed).choice(toolbox.dataset.user_ids, size=min(users, len(toolbox.dataset.user_ids)), replace=False)
    started = time.perf_counter()
    results = [agent.recommend(RecommendRequest(user_id=str(user))) for user in sample]
    figures = {"run": str(run), "llm": llm, "max_rounds": agent.config.max_rounds, **summarise(results), "wall_seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(figures, indent=2))
