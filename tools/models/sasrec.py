"""SASRec (Kang & McAuley 2018): causal self-attention over the history, next-item targets at
every position. With `attribute` set it is the attribute-aware variant: item vectors are fused
with an attribute's value vectors (genre, release decade, ...)."""

from __future__ import annotations

import numpy as np
import torch

from tools.models.base import Embedded, ModelConfig, sampled_loss
from tools.models.layers import Encoder, ItemEmbedding, Layout, left_pad


class SASRec(Embedded):
    def __init__(self, config: ModelConfig, attribute_table: np.ndarray | None = None, initialise: bool = True) -> None:
        super().__init__()
        if config.output_head != "tied":
            raise ValueError("output_head applies to BERT4Rec only; SASRec scores with its tied item vectors")
        self.config = config
        values = len(config.attribute_values)
        self.embedding = ItemEmbedding(config.num_items + 1, config.dim, attribute_table, values, initialise)
        self.encoder = Encoder(
            config.max_len, config.dim, config.blocks, config.heads, config.dropout, causal=True, position_std=config.position_std
        )

    def encode(self, tokens: torch.Tensor, layout: Layout, last_only: bool = False) -> torch.Tensor:
        scale = self.config.dim**0.5
        return self.encoder(self.embedding(tokens) * scale, layout.to(tokens.device), last_only=last_only)

    def user_vectors(self, histories: list[np.ndarray]) -> torch.Tensor:
        tokens, layout = left_pad(histories, self.config.max_len)
        return self.encode(tokens.to(self.device), layout, last_only=True)[:, -1]

    def output_vectors(self) -> torch.Tensor:
        return self.embedding.all()

    def loss(self, sequences: list[np.ndarray]) -> torch.Tensor:
        capped = [s[-(self.config.max_len + 1) :] for s in sequences]
        layout = Layout.packed([len(s) - 1 for s in capped], self.config.max_len)
        inputs, targets = (layout.place(part).to(self.device) for part in ([s[:-1] for s in capped], [s[1:] for s in capped]))
        hidden = self.encode(inputs, layout)
        present = targets > 0
        return sampled_loss(self.config.loss, hidden[present], self.embedding.all(), targets[present], self.config.negatives, self.sampler)

    def item_vectors(self) -> np.ndarray:
        return self.embedding.all().detach().cpu().numpy()
