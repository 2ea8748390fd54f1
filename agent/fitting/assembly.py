"""Fitting the learned assembly (`agent.assembly.LearnedAssembly`) on validation users.

    report = fit_assembly(valid_toolbox, users, config)   # histories stop before the validation item
    report.assembly.save(run_dir)                          # RUN/assembly.json

Each user runs through the agent as configured; the pool's signals are labelled by whether the
item is the user's validation item, and LightGBM's lambdarank learns from them. Fitting reads
validation targets only; the test item is never read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightgbm
import numpy as np
from pydantic import BaseModel, Field

from agent.assembly import LearnedAssembly, item_signals, signal_names, signals
from agent.llm.base import LLM, NoLLM
from agent.recommend import Agent
from agent.request import RecommendRequest
from agent.state import AgentConfig
from tools.toolbox import Toolbox

# Chosen on validation users (five folds over 6,040 ML-1M users): deeper trees or a faster rate
# overfit the one relevant item per user.
PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "n_estimators": 600,
    "learning_rate": 0.03,
    "num_leaves": 3,
    "min_child_samples": 100,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "deterministic": True,
    "force_row_wise": True,
    "random_state": 0,
    "verbose": -1,
}
HOLDOUT = 0.2  # share of the fit users held out for the report's out-of-sample figures


class AssemblyReport(BaseModel):
    assembly: LearnedAssembly
    users: int
    target_in_pool: float = Field(description="Share of users whose validation item was in the pool")
    held_out_users: int = Field(description="Users kept out of the first fit, on which ndcg_at_10 is measured")
    ndcg_at_10: dict[str, float] = Field(
        description="Held-out validation NDCG@10 of the default variant's order of the pool, the plain fusion of every variant, "
        "and the learned order (fit without these users)"
    )
    learned_minus_fused: list[float] = Field(description="The paired mean difference and its bootstrap 95% interval")


def _ndcg10(scores: np.ndarray, label: np.ndarray) -> float:
    """NDCG@10 of the one relevant item when the pool is ordered by `scores` (ties count against it)."""
    place = int((scores > scores[np.flatnonzero(label)[0]]).sum()) + 1
    return 1.0 / math.log2(place + 1) if place <= 10 else 0.0


def _ranker(blocks: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> lightgbm.LGBMRanker:
    return lightgbm.LGBMRanker(**PARAMS).fit(np.vstack(blocks), np.concatenate(labels).astype(int), group=[len(b) for b in blocks])


def fit_assembly(toolbox: Toolbox, users: Sequence[str], config: AgentConfig, llm: LLM | None = None, seed: int = 0) -> AssemblyReport:
    """Fit on validation users: each runs through the agent as configured (menu weights from
    `llm`, else as `config.menu_choice` says), and the pool's signals are labelled by whether
    the item is the user's validation item. A ranker fit without `HOLDOUT` of the users is scored
    on them (the report's figures); the saved one is refit on every user."""
    if toolbox.split != "valid":
        raise ValueError(f"the assembly is fit on validation histories: open the toolbox with split='valid', not {toolbox.split!r}")
    agent = Agent(llm or NoLLM(), toolbox, config.model_copy(update={"assembly": "fused"}))
    variants = list(toolbox.variants)
    blocks, labels, owners = [], [], []  # owners: each block's place in `users`
    for number, user in enumerate(users):
        state = agent.run(RecommendRequest(user_id=user))
        target = toolbox.dataset.item(toolbox.dataset.target(user, "valid")).id
        pool = state["pool"]
        scores, _ = agent.planner.variant_scores(state, variants)
        if scores is None or target not in pool:
            continue
        ids = pool.ids()
        blocks.append(signals(pool, scores, item_signals(toolbox, ids, toolbox.user_history(user))))
        labels.append(np.array([i == target for i in ids]))
        owners.append(number)
    if not blocks:
        raise ValueError("no user's validation item was in the pool: nothing to fit")
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(len(users))[: max(1, round(HOLDOUT * len(users)))].tolist())
    # users whose item was not in the pool score 0 under every order: they count in the means
    kept_held = [n for n, owner in enumerate(owners) if owner in held]
    fit = [n for n, owner in enumerate(owners) if owner not in held]
    first = _ranker([blocks[n] for n in fit], [labels[n] for n in fit])
    zs = len(variants)
    figures: dict[str, list[float]] = {"backbone": [], "fused": [], "learned": []}
    for n in kept_held:
        x, y = blocks[n], labels[n]
        figures["backbone"].append(_ndcg10(x[:, 0], y))
        figures["fused"].append(_ndcg10(x[:, zs], y))
        figures["learned"].append(_ndcg10(np.asarray(first.predict(x)), y))
    n_held = len(held)
    gain = np.zeros(n_held)
    gain[: len(kept_held)] = np.array(figures["learned"]) - np.array(figures["fused"])
    boot = gain[rng.integers(0, n_held, size=(2000, n_held))].mean(axis=1)
    ndcg = {name: round(sum(values) / n_held, 4) for name, values in figures.items()}

    final = _ranker(blocks, labels)
    names = signal_names(variants)
    gains = final.booster_.feature_importance("gain")
    assembly = LearnedAssembly(
        variants=variants,
        signals=names,
        model=final.booster_.model_to_string(),
        importance={name: round(float(g / max(gains.sum(), 1e-12)), 4) for name, g in zip(names, gains, strict=True)},
        users=len(blocks),
        validation={f"held_out_{k}": v for k, v in ndcg.items()},
    )
    return AssemblyReport(
        assembly=assembly,
        users=len(users),
        target_in_pool=round(len(blocks) / len(users), 4),
        held_out_users=n_held,
        ndcg_at_10=ndcg,
        learned_minus_fused=[round(float(gain.mean()), 4), *(round(float(v), 4) for v in np.percentile(boot, [2.5, 97.5]))],
    )
