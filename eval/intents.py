"""Do the surrogate user's choices carry signal? `toolrec eval intents`.

For each sampled user the intent menu is drafted and run exactly as the agent does, and an
intent counts as a hit when its items hold the user's held-out item (computed after the fact).
Then, per way of choosing, the share of users whose chosen intent is a hit, with a bootstrap
95% interval: a uniformly random intent (the expected share), the menu's first, each fixed kind,
the best fixed kind (picked after the fact, so optimistic), the learned prior (RUN/intent_prior.json,
fit on validation users), the LLM's top intent and the LLM's expected share under its own
probabilities, and the oracle (any intent). The LLM is paired against each baseline (mean
difference, its interval, p-value). A surrogate user worth having beats all but the oracle.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from agent.api import PRIOR_FILE, AgentConfig, IntentPrior, MenuPlanner, RecommendRequest
from agent.fitting.files import draw_users
from agent.fitting.prior import menus
from agent.llm.base import LLM, uses_llm
from agent.prior import KINDS
from agent.runtime import DebiasOption, OrderingsOption, build_llm, open_toolbox
from agent.state import AgentState
from eval.report import bootstrap_ci, paired_test
from tools.cli import VariantOption, parse_variants
from tools.toolbox import Toolbox

N_BOOT = 2000


def choice_signal(
    toolbox: Toolbox, users: list[str], llm: LLM | None = None, seed: int = 0, orderings: int = 2, debias_positions: bool = False
) -> dict[str, Any]:
    """The hit shares of every way of choosing over the same users (see the module's doc); the
    LLM scores each menu over `orderings` orderings (less its position prior if `debias_positions`)."""
    primary = toolbox.primary_attribute or ""
    run = toolbox.run_dir
    prior = IntentPrior.load(run) if run is not None and (run / PRIOR_FILE).is_file() else None
    config = AgentConfig(max_rounds=1, orderings=orderings, debias_positions=debias_positions)
    planner = MenuPlanner(llm, toolbox, config) if llm is not None and uses_llm(llm) else None
    scores: dict[str, list[float]] = {name: [] for name in ("random", "first", *KINDS, "oracle")}
    if prior is not None:
        scores["prior"] = []
    llm_seconds: list[float] = []
    evaluated: list[int] = []
    reused: list[int] = []
    if planner is not None:
        scores["llm_top"], scores["llm_expected"] = [], []
    top_kinds: dict[str, int] = {}
    sizes = []
    for profile, entries, target in menus(toolbox, users):
        hits = [float(target in {item.id for item in e.items}) for e in entries]
        sizes.append(len(entries))
        scores["random"].append(statistics.mean(hits) if hits else 0.0)
        scores["first"].append(hits[0] if hits else 0.0)
        scores["oracle"].append(max(hits, default=0.0))
        for kind in KINDS:
            scores[kind].append(max((h for e, h in zip(entries, hits, strict=True) if e.intent.kind == kind), default=0.0))
        if prior is not None:
            scores["prior"].append(hits[int(np.argmax(prior.probabilities(profile, entries, primary)))] if entries else 0.0)
        if planner is not None:
            update = planner.choose(AgentState(request=RecommendRequest(user_id=profile.user_id), profile=profile, menu=entries))
            weights = update["weights"]
            for event in update["trace"]:
                if event.kind == "llm":
                    llm_seconds.append(event.seconds)
                    evaluated.append(event.tokens_evaluated)
                    reused.append(event.tokens_reused)
            best = int(np.argmax(weights)) if weights else 0
            scores["llm_top"].append(hits[best] if hits else 0.0)
            scores["llm_expected"].append(float(np.dot(weights, hits)) if hits else 0.0)
            if entries:
                top_kinds[entries[best].intent.kind] = top_kinds.get(entries[best].intent.kind, 0) + 1
    n = len(sizes)
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, n, size=(N_BOOT, n))
    arrays = {name: np.array(values) for name, values in scores.items()}
    best_kind = max(KINDS, key=lambda k: arrays[k].mean())
    arrays["best_fixed"] = arrays[best_kind]
    shares = {
        name: {"share": round(float(a.mean()), 4), "ci95": [round(v, 4) for v in bootstrap_ci(a, resamples)]} for name, a in arrays.items()
    }
    report: dict[str, Any] = {
        "users": n,
        "split": toolbox.split,
        "intents_per_user": round(statistics.mean(sizes), 2) if sizes else 0.0,
        "best_fixed_kind": best_kind,
        "shares": shares,
    }
    if planner is not None:
        report["llm"] = {
            "model": llm.name if llm is not None else None,
            "orderings": orderings,
            "debias_positions": debias_positions,
            "seconds_p50": round(statistics.median(llm_seconds), 3) if llm_seconds else 0.0,
            "prompt_tokens_evaluated_per_call": round(statistics.mean(evaluated), 1) if evaluated else 0.0,
            "prompt_tokens_reused_per_call": round(statistics.mean(reused), 1) if reused else 0.0,
            "top_intent_kinds": dict(sorted(top_kinds.items(), key=lambda kv: -kv[1])),
            "paired": {
                base: paired_test(arrays["llm_top"], arrays[base], rng, N_BOOT)
                for base in ("random", "first", "best_fixed", *(["prior"] if prior is not None else []))
            },
        }
    return report


def intents_command(
    run: Annotated[Path, typer.Option(help="Run folder (the backbone and its index)")],
    variant: VariantOption = None,
    users: Annotated[int, typer.Option(help="How many sampled users")] = 100,
    split: Annotated[
        str, typer.Option(help="test (held-out test item) | valid (validation item; users the prior was fit on are left out)")
    ] = "test",
    llm: Annotated[str, typer.Option(help="local | openai:MODEL | none (baselines only)")] = "none",
    orderings: OrderingsOption = 2,
    debias_positions: DebiasOption = False,
    seed: int = 2023,
) -> None:
    """Which menu intents hold each user's held-out item, and how often each way of choosing
    (random, first, fixed kinds, the learned prior, the LLM, the oracle) picks one (JSON)."""
    if split not in ("test", "valid"):
        raise typer.BadParameter("test | valid", param_hint="--split")
    toolbox = open_toolbox(run, parse_variants(variant), split=split)  # type: ignore[arg-type]
    sample, left_out = sample_users(toolbox, users, seed)
    report = choice_signal(toolbox, sample, build_llm(llm), seed=seed, orderings=orderings, debias_positions=debias_positions)
    print(json.dumps({"run": str(run), "left_out_prior_fit_users": left_out, **report}, indent=2))


def sample_users(toolbox: Toolbox, users: int, seed: int) -> tuple[list[str], int]:
    """`users` users drawn with `seed`, and how many were left out: on validation users the
    prior would be scored in sample, so the users it was fit on are not drawn."""
    run = toolbox.run_dir
    fitted = run is not None and toolbox.split == "valid" and (run / PRIOR_FILE).is_file()
    fit = set(IntentPrior.load(run).fit_users) if fitted else set()  # type: ignore[arg-type]
    ids = [str(u) for u in toolbox.dataset.user_ids if str(u) not in fit]
    return draw_users(ids, users, seed), len(fit)
