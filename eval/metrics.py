"""Ranking metrics for one held-out item per user (leave-one-out), vectorised.

Everything derives from the 0-based rank of the target: HR@k (= Recall@k with one target),
NDCG@k = 1 / log2(rank + 2) and MRR@k = 1 / (rank + 1), each 0 when rank >= k. Ties are broken
by item id, as a stable sort of the scores would, so a score matrix and the top-k list cut
from it always give the same figures. tests/test_metrics.py checks them against ir-measures (trec_eval).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KS = (1, 5, 10, 20)
MISSING = np.iinfo(np.int64).max  # the target is not in the list at all


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rank of each row's target among its scores: items scoring higher, plus equal-scoring
    items with a smaller id. A target scored -inf (masked) counts as missing."""
    target_scores = scores[np.arange(len(targets)), targets][:, None]
    ids = np.arange(scores.shape[1])[None, :]
    ahead = (scores > target_scores) | ((scores == target_scores) & (ids < targets[:, None]))
    ranks = ahead.sum(axis=1).astype(np.int64)
    ranks[np.isneginf(target_scores[:, 0])] = MISSING
    return ranks


def list_ranks(lists: Sequence[Sequence[int]], targets: np.ndarray) -> np.ndarray:
    """Rank of each target in a recommended list (MISSING if absent, or if the list is None)."""
    ranks = np.full(len(targets), MISSING, dtype=np.int64)
    for row, (items, target) in enumerate(zip(lists, targets, strict=True)):
        if items is not None and target in items:
            ranks[row] = list(items).index(target)
    return ranks


def per_user(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, np.ndarray]:
    """Each metric for each user: the input to means, bootstrap intervals and paired tests."""
    hit = ranks[None, :] < np.asarray(ks)[:, None]
    safe = np.minimum(ranks, 1 << 40).astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for row, k in enumerate(ks):
        out[f"hr@{k}"] = hit[row].astype(np.float64)
        out[f"recall@{k}"] = out[f"hr@{k}"]
        out[f"ndcg@{k}"] = np.where(hit[row], 1.0 / np.log2(safe + 2.0), 0.0)
        out[f"mrr@{k}"] = np.where(hit[row], 1.0 / (safe + 1.0), 0.0)
    return out


def summarise(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    return {name: float(values.mean()) if len(values) else 0.0 for name, values in per_user(ranks, ks).items()}
