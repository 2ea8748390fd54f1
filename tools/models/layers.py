"""Pieces shared by SASRec and BERT4Rec: item embeddings fused with attributes, a pre-LN
transformer stack, and left padding of histories."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
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
        self._cached: tuple[tuple[int, int, int], torch.Tensor] | None = None
        if attribute_table is not None:
            table = torch.zeros((num_tokens, attribute_table.shape[1]), dtype=torch.long)
            table[: len(attribute_table)] = torch.from_numpy(attribute_table)
            self.register_buffer("table", table, persistent=False)
            self.values = nn.Embedding(num_values + 1, dim, padding_idx=0)
            nn.init.normal_(self.values.weight, std=0.02)

    def all(self) -> torch.Tensor:
        """[num_tokens, dim]: every token's fused vector. Without gradients the fused table is
        cached until a weight changes (in-place updates bump a tensor's version), so scoring a
        user costs the same with attributes as without."""
        weight = self.items.weight
        if self.values is None:
            return weight
        key = (weight._version, self.values.weight._version, weight.data_ptr())
        if not torch.is_grad_enabled() and self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        present = (self.table > 0).float()
        summed = (self.values(self.table) * present.unsqueeze(-1)).sum(1)
        fused = weight + summed / present.sum(1, keepdim=True).clamp(min=1.0)
        self._cached = (key, fused.detach()) if not torch.is_grad_enabled() else None
        return fused

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.all()[tokens] if self.values is not None else self.items(tokens)


class Block(nn.Module):
    """Pre-LN transformer block. Parameter names follow nn.TransformerEncoderLayer so that
    checkpoints stay interchangeable; the forward is written out so that the final block can
    compute the last position alone when only that one is scored (half the inference cost)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(dim, dim * 4), nn.Linear(dim * 4, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        drop = self.dropout if self.training else 0.0
        dim = x.shape[-1]
        weight, bias = self.self_attn.in_proj_weight, self.self_attn.in_proj_bias
        context = self.norm1(x)
        if last_only:
            x, allowed = x[:, -1:], allowed[:, -1:]
        query = F.linear(context[:, -x.shape[1] :], weight[:dim], bias[:dim])
        key, value = F.linear(context, weight[dim:], bias[dim:]).chunk(2, dim=-1)
        attended = F.scaled_dot_product_attention(
            self._heads(query), self._heads(key), self._heads(value), attn_mask=allowed[:, None], dropout_p=drop
        )
        x = x + F.dropout(self.self_attn.out_proj(attended.transpose(1, 2).flatten(2)), drop, self.training)
        hidden = F.dropout(F.gelu(self.linear1(self.norm2(x))), drop, self.training)
        return x + F.dropout(self.linear2(hidden), drop, self.training)


class Encoder(nn.Module):
    """Positional embedding plus pre-LN transformer blocks over left-padded sequences."""

    def __init__(self, max_len: int, dim: int, blocks: int, heads: int, dropout: float, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.positions = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.Module()
        self.blocks.layers = nn.ModuleList(Block(dim, heads, dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim)

    def forward(self, embedded: torch.Tensor, padding: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """[batch, length, dim] hidden states, or [batch, 1, dim] for the last position alone."""
        batch, length, _ = embedded.shape
        # right-aligned: the most recent item always has the last position, however short the
        # batch is padded, so a batch padded to its longest history scores as one padded to max_len
        max_len = self.positions.num_embeddings
        positions = torch.arange(max_len - length, max_len, device=embedded.device)
        hidden = self.dropout(embedded + self.positions(positions))
        # A query may see non-padding keys (and, if causal, only earlier ones); it always sees
        # itself, so a padding row is never fully masked (which would give NaN).
        allowed = ~padding[:, None, :].expand(batch, length, length)
        if self.causal:
            allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=embedded.device).tril()
        allowed = allowed | torch.eye(length, dtype=torch.bool, device=embedded.device)
        layers = self.blocks.layers
        for index, block in enumerate(layers):
            hidden = block(hidden, allowed, last_only=last_only and index == len(layers) - 1)
        return self.norm(hidden)


def left_pad(histories: list[np.ndarray], max_len: int, pad: int = 0) -> torch.Tensor:
    """The last `max_len` items of each history, right-aligned so that position -1 is the most
    recent item for every row. Padded only to the longest history in the batch: attention to
    padding is masked, so extra padding would cost time and change nothing."""
    width = min(max_len, max((len(h) for h in histories), default=1)) or 1
    out = np.full((len(histories), width), pad, dtype=np.int64)
    for row, history in enumerate(histories):
        tail = history[-width:]
        if len(tail):
            out[row, -len(tail) :] = tail
    return torch.from_numpy(out)
