"""A learned assembly: how much each signal of a pool item counts, fit on validation users
(`assembly = "learned"`; issue 10). The hand-set fusion adds a fixed bonus to every probed
item; here a ranker learns from data how the signals combine.

    report = fit_assembly(valid_toolbox, users, config)   # histories stop before the validation item
    report.assembly.save(run_dir)                          # RUN/assembly.json
    LearnedAssembly.load(run_dir).scores(pool, variant_scores, item_signals(toolbox, pool.ids(), history))

Signals per pool item: each backbone variant's score (z-scored within the pool) and their sum,
the weight of the most wanted intent or probe that found it, the weight per intent kind (which
intent found it and how much it was wanted), whether a free probe or the person's own request
found it, its best place in a seed ranking, its popularity, the similarity of its text to the
recent history in the text index, and how much newer or older it is than what the person
watched lately.

The learner is LightGBM's lambdarank (one query per user, the validation item the one relevant
item), small trees with a slow learning rate: on 6,040 ML-1M validation users (five folds) it
beat the plain fusion of four variants by +0.0037 NDCG@10 and the logistic regression it
replaced by +0.0027; with the fifth variant (transitions) and the fusion's score among its
signals, the fusion by +0.0010, and by +0.0025 on all 6,040 test users (README, issue 10).
What is saved is the booster as text inside the JSON. Fitting reads validation targets only;
the test item is never read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr

from agent.fitted import FittedFile
from agent.intents import RECENT
from agent.pool import Pool
from agent.prior import KINDS
from tools.retrieval import zscore
from tools.toolbox import TEXT_SPACE

if TYPE_CHECKING:
    import lightgbm

    from agent.llm.base import LLM
    from agent.state import AgentConfig
    from tools.toolbox import Toolbox

ASSEMBLY_FILE = "assembly.json"
ITEM_SIGNALS = ["popularity", "text_similarity", "year_offset", "year_distance"]
RECENT_YEARS = 10  # the history items whose mean year "newer or older" is measured against
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


def signal_names(variants: Sequence[str]) -> list[str]:
    return [
        *(f"z:{v}" for v in variants),
        "fused",
        "probe_weight",
        *(f"intent:{k}" for k in KINDS),
        "free_probe",
        "asked",
        "seed_place",
        *ITEM_SIGNALS,
    ]


def item_signals(toolbox: Toolbox, ids: Sequence[str], history: np.ndarray | None) -> np.ndarray:
    """One row per item, one column per `ITEM_SIGNALS`: log popularity and text similarity to the
    last few history items (both z-scored among `ids`), and the item's year minus the mean year of
    the recent history and its absolute value, in decades (0 where a year is unknown)."""
    history = np.asarray(history if history is not None else [], dtype=np.int64)
    dense = np.array([toolbox.dataset.item_index[i] for i in ids], dtype=np.int64)
    everyone = np.ones(len(dense), dtype=bool)
    popularity = zscore(np.log1p(toolbox.popularity[dense].astype(float)), everyone)
    similarity = np.zeros(len(dense))
    recent = history[-RECENT:]
    if len(recent) and len(dense):
        text = toolbox.space(TEXT_SPACE)
        similarity = zscore(text.vectors(dense) @ text.vectors(recent).mean(axis=0), everyone)
    years = toolbox.years[dense].astype(float)
    seen = toolbox.years[history[-RECENT_YEARS:]]
    seen = seen[seen > 0]
    offset = np.where(years > 0, (years - seen.mean()) / 10.0, 0.0) if len(seen) else np.zeros(len(dense))
    return np.column_stack([popularity, similarity, offset, np.abs(offset)]).reshape(len(dense), len(ITEM_SIGNALS))


def signals(pool: Pool, scores: Mapping[str, Mapping[str, float]], items: np.ndarray) -> np.ndarray:
    """One row per pool item (pool order), one column per signal (see `signal_names`, with the
    variants in `scores`' order); `items` are the item signals of the pool's ids. "fused" is the
    fixed fusion's score (the variants' z-scores summed): small trees refine it more easily than
    they rebuild a sum of five scores (with five variants, validation NDCG@10 0.2077 with it,
    0.2053 without, fusion alone 0.2067)."""
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
    n = len(pool)
    z = pool.zscores(scores).T.reshape(n, -1)
    return np.column_stack([z, z.sum(axis=1), np.array(rows).reshape(n, -1), items])


class LearnedAssembly(FittedFile):
    FILE = ASSEMBLY_FILE
    learner: str = "LightGBM lambdarank"
    variants: list[str] = Field(description="The backbone variants whose scores it reads, in order")
    signals: list[str]
    model: str = Field(description="The LightGBM booster as text (Booster.model_to_string)", repr=False)
    importance: dict[str, float] = Field(description="Each signal's share of the trees' total gain")
    users: int = Field(description="Validation users it was fit on (those whose validation item was in the pool)")
    validation: dict[str, float] = Field(default_factory=dict, description="Held-out validation NDCG@10 (see AssemblyReport)")
    split: str = "valid"
    _booster: lightgbm.Booster | None = PrivateAttr(None)

    def scores(self, pool: Pool, scores: Mapping[str, Mapping[str, float]], items: np.ndarray) -> dict[str, float]:
        """Each pool item's score (higher: more likely the next item)."""
        if self.signals != signal_names(self.variants):
            raise ValueError(f"{ASSEMBLY_FILE} was fit on other signals: refit it (`toolrec intents fit-assembly`)")
        if self._booster is None:
            import lightgbm

            self._booster = lightgbm.Booster(model_str=self.model)
        x = signals(pool, {v: scores[v] for v in self.variants}, items)
        predicted = self._booster.predict(x)
        return {i: float(predicted[n]) for n, i in enumerate(pool.ids())}


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
    import lightgbm  # fitting and scoring only

    return lightgbm.LGBMRanker(**PARAMS).fit(np.vstack(blocks), np.concatenate(labels).astype(int), group=[len(b) for b in blocks])


def fit_assembly(toolbox: Toolbox, users: Sequence[str], config: AgentConfig, llm: LLM | None = None, seed: int = 0) -> AssemblyReport:
    """Fit on validation users: each runs through the agent as configured (menu weights from
    `llm`, else as `config.menu_choice` says), and the pool's signals are labelled by whether
    the item is the user's validation item. A ranker fit without `HOLDOUT` of the users is scored
    on them (the report's figures); the saved one is refit on every user."""
    # the agent's own graph (whose nodes import this module, for assembly = "learned")
    from agent.llm.base import NoLLM
    from agent.recommend import Agent
    from agent.state import RecommendRequest

    if toolbox.split != "valid":
        raise ValueError(f"the assembly is fit on validation histories: open the toolbox with split='valid', not {toolbox.split!r}")
    agent = Agent(llm or NoLLM(), toolbox, config.model_copy(update={"assembly": "fused"}))
    variants = list(toolbox.variants)
    blocks, labels, owners = [], [], []  # owners: each block's place in `users`
    for number, user in enumerate(users):
        state = agent.graph.invoke({"request": RecommendRequest(user_id=user)})
        target = toolbox.dataset.item(toolbox.dataset.target(user, "valid")).id
        pool = state["pool"]
        scores, _ = agent.nodes.variant_scores(state, variants)
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
        figures["learned"].append(_ndcg10(first.predict(x), y))
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
