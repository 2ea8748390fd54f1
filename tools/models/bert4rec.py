"""BERT4Rec (Sun et al. 2019): bidirectional self-attention trained by cloze (masked items are
predicted from both sides); at inference a mask token after the history asks for the next item.
With `output_head = "transform"` the hidden state passes the original's dense layer, GELU and
LayerNorm before it meets the tied item vectors, and each item has a bias."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tools.models.base import Embedded, ModelConfig, sampled_loss
from tools.models.layers import Encoder, ItemEmbedding, Layout, left_pad


class BERT4Rec(Embedded):
    def __init__(self, config: ModelConfig, attribute_table: np.ndarray | None = None, initialise: bool = True) -> None:
        super().__init__()
        self.config = config
        self.mask_token = config.num_items + 1
        values = len(config.attribute_values)
        self.embedding = ItemEmbedding(config.num_items + 2, config.dim, attribute_table, values, initialise)
        self.encoder = Encoder(
            config.max_len, config.dim, config.blocks, config.heads, config.dropout, causal=False, position_std=config.position_std
        )
        self.head: nn.Module = nn.Identity()
        self.bias: nn.Parameter | None = None
        if config.output_head == "transform":
            self.head = nn.Sequential(nn.Linear(config.dim, config.dim), nn.GELU(), nn.LayerNorm(config.dim))
            self.bias = nn.Parameter(torch.zeros(config.num_items + 1))

    def encode(self, tokens: torch.Tensor, layout: Layout, last_only: bool = False) -> torch.Tensor:
        return self.head(self.encoder(self.embedding(tokens), layout.to(tokens.device), last_only=last_only))

    def _item_vectors(self) -> torch.Tensor:
        return self.embedding.all()[: self.config.num_items + 1]

    def _output(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states and item vectors such that their product is the score, the item bias
        folded in as one more dimension (a constant 1 against the bias) so that every loss
        and the scoring stay a plain product."""
        vectors = self._item_vectors()
        if self.bias is None:
            return hidden, vectors
        ones = torch.ones((*hidden.shape[:-1], 1), dtype=hidden.dtype, device=hidden.device)
        return torch.cat([hidden, ones], -1), torch.cat([vectors, self.bias[:, None]], -1)

    def user_vectors(self, histories: list[np.ndarray]) -> torch.Tensor:
        tokens, layout = left_pad([np.append(h[-(self.config.max_len - 1) :], self.mask_token) for h in histories], self.config.max_len)
        return self._output(self.encode(tokens.to(self.device), layout, last_only=True)[:, -1])[0]

    def output_vectors(self) -> torch.Tensor:
        return self._output(self._item_vectors()[:1])[1]

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
        hidden, vectors = self._output(self.encode(inputs, layout)[masked])
        return sampled_loss(self.config.loss, hidden, vectors, tokens[masked], self.config.negatives, self.sampler)

    def item_vectors(self) -> np.ndarray:
        return self._item_vectors().detach().cpu().numpy()
