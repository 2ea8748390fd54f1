"""Full-ranking evaluation of a backbone: every item in the catalogue is a candidate, the
user's history is masked, the held-out item is ranked among all the rest."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eval.metrics import KS, summarise, target_ranks
from tools.data.sequences import SequenceDataset, Split
from tools.models.base import Recommender
from tools.models.scoring import by_length, score_histories


def backbone_ranks(
    model: Recommender, dataset: SequenceDataset, split: Split, users: Sequence[int] | None = None, chunk_size: int = 1024
) -> np.ndarray:
    """The target's rank for each user (all users, or the dataset rows `users`), in that order."""
    inputs, targets = dataset.split(split)
    rows = np.arange(len(targets)) if users is None else np.asarray(users, dtype=np.int64)
    # chunks of similar history lengths, so that each forward pass pads little
    order = by_length([inputs[i] for i in rows])
    ranks = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), chunk_size):
        chunk = order[start : start + chunk_size]
        scores = score_histories(model, [inputs[i] for i in rows[chunk]])
        ranks[chunk] = target_ranks(scores, targets[rows[chunk]])
    return ranks


def evaluate_backbone(model: Recommender, dataset: SequenceDataset, split: Split, ks: Sequence[int] = KS) -> dict[str, float]:
    return summarise(backbone_ranks(model, dataset, split), ks)
