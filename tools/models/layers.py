"""Pieces shared by SASRec and BERT4Rec: item embeddings fused with attributes, a pre-LN
transformer stack, and left padding of histories."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ItemEmbedding(nn.Module):
    """Item vectors, optionally plus the mean of their attribute-value vectors.

    The same vectors embed the input sequence and score the output (weight tying), so an
    attribute-aware model also ranks by attribute similarity.
    """

    def __init__(self, num_tokens: int, dim: int, attribute_table: np.ndarray | None, num_values: int) -> None:
        super().__init__()
        self.items = nn.Embedding(num_tokens, dim, padding_idx=0)
        nn.init.normal_(self.items.weight, std=0.02)
        self.values: nn.Embedding | None = None
        if attribute_table is not None:
            table = torch.zeros((num_tokens, attribute_table.shape[1]), dtype=torch.long)
            table[: len(attribute_table)] = torch.from_numpy(attribute_table)
            self.register_buffer("table", table, persistent=False)
            self.values = nn.Embedding(num_values + 1, dim, padding_idx=0)
            nn.init.normal_(self.values.weight, std=0.02)

    def all(self) -> torch.Tensor:
        """[num_tokens, dim]: every token's fused vector."""
        weight = self.items.weight
        if self.values is None:
            return weight
        present = (self.table > 0).float()
        summed = (self.values(self.table) * present.unsqueeze(-1)).sum(1)
        return weight + summed / present.sum(1, keepdim=True).clamp(min=1.0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.all()[tokens] if self.values is not None else self.items(tokens)


class Encoder(nn.Module):
    """Positional embedding plus pre-LN transformer blocks over left-padded sequences."""

    def __init__(self, max_len: int, dim: int, blocks: int, heads: int, dropout: float, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.positions = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=dim * 4, dropout=dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.blocks = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.heads = heads

    def forward(self, embedded: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        batch, length, _ = embedded.shape
        positions = torch.arange(length, device=embedded.device)
        hidden = self.dropout(embedded + self.positions(positions))
        # A query may see non-padding keys (and, if causal, only earlier ones); it always sees
        # itself, so a padding row is never fully masked (which would give NaN).
        allowed = ~padding[:, None, :].expand(batch, length, length)
        if self.causal:
            allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=embedded.device).tril()
        allowed = allowed | torch.eye(length, dtype=torch.bool, device=embedded.device)
        mask = (~allowed).repeat_interleave(self.heads, dim=0)
        return self.norm(self.blocks(hidden, mask=mask))


def left_pad(histories: list[np.ndarray], max_len: int, pad: int = 0) -> torch.Tensor:
    """The last `max_len` items of each history, right-aligned so that position -1 is the most
    recent item for every row."""
    out = np.full((len(histories), max_len), pad, dtype=np.int64)
    for row, history in enumerate(histories):
        tail = history[-max_len:]
        if len(tail):
            out[row, -len(tail) :] = tail
    return torch.from_numpy(out)
