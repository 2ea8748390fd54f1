"""Most-popular baseline: training-split interaction counts, the same for every user."""

from __future__ import annotations

import numpy as np
import torch

from tools.data.sequences import SequenceDataset
from tools.models.base import Counted, ModelConfig


class Popularity(Counted):
    counts: torch.Tensor  # buffer [num_items + 1]

    def __init__(self, config: ModelConfig, counts: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = config
        initial = torch.zeros(config.num_items + 1) if counts is None else torch.from_numpy(counts).float()
        self.register_buffer("counts", initial)

    def fit(self, dataset: SequenceDataset) -> None:
        self.counts.copy_(torch.from_numpy(dataset.popularity()).float().to(self.counts.device))

    def score(self, histories: list[np.ndarray]) -> torch.Tensor:
        scores = self.counts.expand(len(histories), -1).clone()
        scores[:, 0] = -torch.inf
        return scores
