"""Full-catalogue scoring in batches, with items a user already saw masked out."""

from __future__ import annotations

import numpy as np
import torch

from tools.models.base import Recommender


@torch.inference_mode()
def score_histories(model: Recommender, histories: list[np.ndarray], batch_size: int = 1024, exclude_history: bool = True) -> np.ndarray:
    """[len(histories), num_items + 1] float32 scores; padding and (by default) history items
    are -inf so they can never be recommended."""
    model.eval()
    blocks = []
    for start in range(0, len(histories), batch_size):
        batch = histories[start : start + batch_size]
        scores = model.score(batch).float().cpu().numpy()
        if exclude_history:
            for row, history in enumerate(batch):
                scores[row, history] = -np.inf
        blocks.append(scores)
    return np.concatenate(blocks) if blocks else np.empty((0, model.config.num_items + 1), dtype=np.float32)
