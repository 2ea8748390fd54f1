"""A learned assembly: how much each signal of a pool item counts, fit on validation users
(`assembly = "learned"`). The hand-set fusion adds a fixed bonus to every probed
item; here a ranker learns from data how the signals combine.

    LearnedAssembly.load(run_dir).scores(pool, variant_scores, item_signals(toolbox, pool.ids(), history))

Fitting it is `agent.fitting.assembly`.

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
signals, the fusion by +0.0010, and by +0.0025 on all 6,040 test users (docs/evaluation.md).
What is saved is the booster as text inside the JSON. Fitting reads validation targets only;
the test item is never read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field, PrivateAttr

from agent.fitted import FittedFile
from agent.intents import RECENT
from agent.pool import Pool
from agent.prior import KINDS
from tools.retrieval import zscore
from tools.toolbox import TEXT_SPACE, Toolbox

if TYPE_CHECKING:
    import lightgbm

ASSEMBLY_FILE = "assembly.json"
ITEM_SIGNALS = ["popularity", "text_similarity", "year_offset", "year_distance"]
RECENT_YEARS = 10  # the history items whose mean year "newer or older" is measured against


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
        rows.append(
            [
                pool[item_id].probe_weight,
                *by_kind,
                float(any(f.role == "probe" and f.kind is None for f in finds)),
                float(any(f.role == "asked" for f in finds)),
                1.0 / min(seed_places) if seed_places else 0.0,
            ]
        )
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
