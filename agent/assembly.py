"""A learned assembly: how much each signal of a pool item counts, fit on validation users
(`assembly = "learned"`; issue 10). The hand-set fusion adds a fixed bonus to every probed
item; here the weights come from data.

    report = fit_assembly(valid_toolbox, users)    # histories stop before the validation item
    report.assembly.save(run_dir)                   # RUN/assembly.json
    LearnedAssembly.load(run_dir).scores(pool, variant_scores, popularity)

Signals per pool item: each backbone variant's score (z-scored within the pool), the weight of
the most wanted intent or probe that found it, the weight per intent kind (which intent found
it and how much it was wanted), whether a free probe or the person's own request found it, its
best place in a seed ranking, and its popularity (log, z-scored within the pool). The learner
is scikit-learn's logistic regression, pointwise (is this the user's validation item?), on the
users whose validation item is in their pool; what is saved is its coefficients (JSON).
Fitting reads validation targets only; the test item is never read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field

from agent.fitted import FittedFile
from agent.pool import Pool
from agent.prior import KINDS
from tools.retrieval import zscore

if TYPE_CHECKING:
    from agent.llm.base import LLM
    from agent.state import AgentConfig
    from tools.toolbox import Toolbox

ASSEMBLY_FILE = "assembly.json"


def signal_names(variants: Sequence[str]) -> list[str]:
    return [
        *(f"z:{v}" for v in variants),
        "probe_weight",
        *(f"intent:{k}" for k in KINDS),
        "free_probe",
        "asked",
        "seed_place",
        "popularity",
    ]


def signals(pool: Pool, scores: Mapping[str, Mapping[str, float]], popularity: Mapping[str, float]) -> np.ndarray:
    """One row per pool item (pool order), one column per signal (see `signal_names`, with the
    variants in `scores`' order)."""
    rows = []
    for item_id in pool.ids():
        finds = pool[item_id].finds
        by_kind = [max((f.weight for f in finds if f.kind == kind), default=0.0) for kind in KINDS]
        seed_places = [f.position for f in finds if f.role == "seed"]
        rows.append([
            pool[item_id].probe_weight,
            *by_kind,
            float(any(f.role == "probe" and f.kind is None for f in finds)),
            float(any(f.role == "asked" for f in finds)),
            1.0 / min(seed_places) if seed_places else 0.0,
        ])  # fmt: skip
    ids = pool.ids()
    popular = zscore(np.array([math.log1p(popularity.get(i, 0.0)) for i in ids]), np.ones(len(ids), dtype=bool))
    return np.column_stack([pool.zscores(scores).T, np.array(rows).reshape(len(ids), -1), popular])


def popularity_by_id(toolbox: Toolbox) -> dict[str, float]:
    return {toolbox.dataset.item(d).id: float(toolbox.popularity[d]) for d in range(1, toolbox.num_items + 1)}


class LearnedAssembly(FittedFile):
    FILE = ASSEMBLY_FILE
    variants: list[str] = Field(description="The backbone variants whose scores it reads, in order")
    signals: list[str]
    coef: list[float]
    intercept: float
    users: int = Field(description="Validation users it was fit on (those whose validation item was in the pool)")
    split: str = "valid"

    def scores(self, pool: Pool, scores: Mapping[str, Mapping[str, float]], popularity: Mapping[str, float]) -> dict[str, float]:
        """Each pool item's score (the logit of being the next item)."""
        if self.signals != signal_names(self.variants):
            raise ValueError(f"{ASSEMBLY_FILE} was fit on other signals: refit it")
        x = signals(pool, {v: scores[v] for v in self.variants}, popularity)
        logits = x @ np.array(self.coef) + self.intercept
        return {i: float(logits[n]) for n, i in enumerate(pool.ids())}


class AssemblyReport(BaseModel):
    assembly: LearnedAssembly
    users: int
    target_in_pool: float = Field(description="Share of users whose validation item was in the pool")
    ndcg_at_10: dict[str, float] = Field(description="Validation NDCG@10 of the fused and the learned order (learned: in sample)")
    coefficients: dict[str, float]


def _ndcg10(order: Sequence[str], target: str) -> float:
    place = list(order[:10]).index(target) + 1 if target in order[:10] else 0
    return 1.0 / math.log2(place + 1) if place else 0.0


def fit_assembly(toolbox: Toolbox, users: Sequence[str], config: AgentConfig, llm: LLM | None = None, c: float = 1.0) -> AssemblyReport:
    """Fit on validation users: each runs through the agent as configured (menu weights from
    `llm`, else as `config.menu_choice` says), and the pool's signals are labelled by whether
    the item is the user's validation item."""
    from sklearn.linear_model import LogisticRegression  # fitting only; using an assembly needs numpy alone

    # the agent's own graph (whose nodes import this module, for assembly = "learned")
    from agent.llm.base import NoLLM
    from agent.recommend import Agent
    from agent.state import RecommendRequest

    if toolbox.split != "valid":
        raise ValueError(f"the assembly is fit on validation histories: open the toolbox with split='valid', not {toolbox.split!r}")
    agent = Agent(llm or NoLLM(), toolbox, config.model_copy(update={"assembly": "fused"}))
    variants = list(toolbox.variants)
    popularity = popularity_by_id(toolbox)
    blocks, labels, fused_ndcg, kept = [], [], [], []
    for user in users:
        state = agent.graph.invoke({"request": RecommendRequest(user_id=user)})
        target = toolbox.dataset.item(toolbox.dataset.target(user, "valid")).id
        pool = state["pool"]
        scores, _ = agent.nodes.variant_scores(state, variants)
        if scores is None or target not in pool:
            fused_ndcg.append(0.0)
            continue
        fused_ndcg.append(_ndcg10(state["final"], target))
        x = signals(pool, scores, popularity)
        blocks.append(x)
        labels.append(np.array([i == target for i in pool.ids()]))
        kept.append((pool, x, target))
    if not blocks:
        raise ValueError("no user's validation item was in the pool: nothing to fit")
    model = LogisticRegression(C=c, max_iter=2000).fit(np.vstack(blocks), np.concatenate(labels))
    names = signal_names(variants)
    assembly = LearnedAssembly(
        variants=variants, signals=names, coef=model.coef_[0].tolist(), intercept=float(model.intercept_[0]), users=len(kept)
    )
    learned = []
    for pool, x, target in kept:
        logits = x @ np.array(assembly.coef)
        ids = pool.ids()
        learned.append(_ndcg10([ids[n] for n in np.argsort(-logits, kind="stable")], target))
    n = len(users)
    return AssemblyReport(
        assembly=assembly,
        users=n,
        target_in_pool=round(len(kept) / n, 4),
        ndcg_at_10={"fused": round(sum(fused_ndcg) / n, 4), "learned_in_sample": round(sum(learned) / n, 4)},
        coefficients={name: round(w, 4) for name, w in zip(names, assembly.coef, strict=True)},
    )
