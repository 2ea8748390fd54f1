"""Full-catalogue scoring in batches, with items a user already saw masked out."""

from __future__ import annotations

import numpy as np
import torch

from tools.models.base import Recommender

# floats of scores held at once for a block of users: 128 MB, whatever the catalogue
BLOCK_SCORES = 2**25


def users_per_block(num_items: int) -> int:
    """Users whose full-catalogue scores fit in BLOCK_SCORES (16 to 1,024)."""
    return int(np.clip(BLOCK_SCORES // (num_items + 1), 16, 1024))


def by_length(histories: list[np.ndarray]) -> np.ndarray:
    """Indices that order histories by length: batches of similar lengths need little padding."""
    return np.argsort([len(h) for h in histories], kind="stable")


@torch.inference_mode()
def score_histories(model: Recommender, histories: list[np.ndarray], batch_size: int = 256, exclude_history: bool = True) -> np.ndarray:
    """[len(histories), num_items + 1] float32 scores in the order given; padding and (by
    default) history items are -inf so they can never be recommended."""
    model.eval()
    out = np.empty((len(histories), model.config.num_items + 1), dtype=np.float32)
    order = by_length(histories)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        out[rows] = model.score([histories[i] for i in rows]).float().cpu().numpy()
    if exclude_history:
        for row, history in enumerate(histories):
            out[row, history] = -np.inf
    return out
