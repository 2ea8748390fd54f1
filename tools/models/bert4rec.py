"""BERT4Rec (Sun et al. 2019): bidirectional self-attention trained by cloze (masked items are
predicted from both sides); at inference a mask token after the history asks for the next item."""

from __future__ import annotations

import numpy as np
import torch

from tools.models.base import ModelConfig, Recommender, sampled_loss
from tools.models.layers import Encoder, ItemEmbedding, Layout, left_pad


class BERT4Rec(Recommender):
    def __init__(self, config: ModelConfig, attribute_table: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = config
        self.mask_token = config.num_items + 1
        values = len(config.attribute_values)
        self.embedding = ItemEmbedding(config.num_items + 2, config.dim, attribute_table, values)
        self.encoder = Encoder(config.max_len, config.dim, config.blocks, config.heads, config.dropout, causal=False)

    def encode(self, tokens: torch.Tensor, layout: Layout, last_only: bool = False) -> torch.Tensor:
        return self.encoder(self.embedding(tokens), layout.to(tokens.device), last_only=last_only)

    def _item_vectors(self) -> torch.Tensor:
        return self.embedding.all()[: self.config.num_items + 1]

    def score(self, histories: list[np.ndarray]) -> torch.Tensor:
        tokens, layout = left_pad([np.append(h[-(self.config.max_len - 1) :], self.mask_token) for h in histories], self.config.max_len)
        scores = self.encode(tokens.to(self.device), layout, last_only=True)[:, -1] @ self._item_vectors().T
        scores[:, 0] = -torch.inf
        return scores

    def loss(self, sequences: list[np.ndarray]) -> torch.Tensor:
        capped = [s[-self.config.max_len :] for s in sequences]
        layout = Layout.packed([len(s) for s in capped], self.config.max_len)
        tokens = layout.place(capped).to(self.device)
        masked = (torch.rand(tokens.shape, device=self.device) < self.config.mask_prob) & (tokens > 0)
        # each sequence's last item is masked half the time so training also looks like inference
        rows, columns = zip(*((row, start + len(s) - 1) for (row, start), s in zip(layout.slots, capped, strict=True)), strict=True)
        masked[rows, columns] |= torch.rand(len(capped), device=self.device) < 0.5
        masked &= tokens > 0
        inputs = tokens.masked_fill(masked, self.mask_token)
        hidden = self.encode(inputs, layout)
        return sampled_loss(self.config.loss, hidden[masked], self._item_vectors(), tokens[masked], self.config.negatives)

    def item_vectors(self) -> np.ndarray:
        return self._item_vectors().detach().cpu().numpy()
