"""Full-ranking evaluation of a backbone: every item in the catalogue is a candidate, the
user's history is masked, the held-out item is ranked among all the rest."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eval.metrics import KS, summarise, target_ranks
from tools.data.sequences import SequenceDataset, Split
from tools.models.base import Recommender
from tools.models.scoring import score_histories, users_per_block


def backbone_ranks(model: Recommender, dataset: SequenceDataset, split: Split, users: Sequence[int] | None = None) -> np.ndarray:
    """The target's rank for each user (all users, or the dataset rows `users`), in that order."""
    inputs, targets = dataset.split(split)
    rows = np.arange(len(targets)) if users is None else np.asarray(users, dtype=np.int64)
    chunk_size = users_per_block(dataset.num_items)
    ranks = []
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start : start + chunk_size]
        # score_histories batches a chunk's histories by length, so each forward pads little
        ranks.append(target_ranks(score_histories(model, [inputs[i] for i in chunk]), targets[chunk]))
    return np.concatenate(ranks) if ranks else np.empty(0, dtype=np.int64)


def evaluate_backbone(
    model: Recommender, dataset: SequenceDataset, split: Split, ks: Sequence[int] = KS, users: Sequence[int] | None = None
) -> dict[str, float]:
    return summarise(backbone_ranks(model, dataset, split, users), ks)
