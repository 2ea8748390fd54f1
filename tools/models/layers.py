"""Pieces shared by SASRec and BERT4Rec: item embeddings fused with attributes, a pre-LN
transformer stack, a cheap dropout, and the two layouts of a batch (left padding for scoring,
packing for training)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ItemEmbedding(nn.Module):
    """Item vectors, optionally plus the mean of their attribute-value vectors.

    The same vectors embed the input sequence and score the output (weight tying), so an
    attribute-aware model also ranks by attribute similarity.
    """

    table: torch.Tensor  # buffer [num_tokens, k]: each token's attribute-value ids (0: none); with attributes only

    def __init__(self, num_tokens: int, dim: int, attribute_table: np.ndarray | None, num_values: int, initialise: bool = True) -> None:
        """`initialise=False` leaves the item table unset, for weights about to be loaded: at a
        million items its random draw took more than a second."""
        super().__init__()
        self.items = nn.Embedding(num_tokens, dim, padding_idx=0, _weight=torch.empty(num_tokens, dim))
        if initialise:
            self.items.reset_parameters()  # nn.Embedding's own draw, kept so that seeded runs reproduce
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
        attended = _attention(self._heads(query), self._heads(key), self._heads(value), allowed[:, None], drop)
        x = x + dropout(self.self_attn.out_proj(attended.transpose(1, 2).flatten(2)), drop)
        hidden = dropout(F.gelu(self.linear1(self.norm2(x))), drop)
        return x + dropout(self.linear2(hidden), drop)


def _attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allowed: torch.Tensor, drop: float) -> torch.Tensor:
    """Scaled dot-product attention; with dropout on the weights written out, because the
    fused kernel draws its dropout mask with `bernoulli_`, the slowest op of a CPU step."""
    if drop == 0.0:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=allowed)
    scores = (query @ key.transpose(-2, -1)) * query.shape[-1] ** -0.5
    weights = torch.softmax(scores.masked_fill(~allowed, -torch.inf), dim=-1)
    return dropout(weights, drop) @ value


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout whose mask comes from 16-bit slices of 64-bit random words: on a CPU
    `bernoulli_` (F.dropout) costs about 8x as much, a quarter of a training step. `p` is
    applied to within 1/65536."""
    if p == 0.0:
        return x
    words = torch.empty(math.ceil(x.numel() / 4), dtype=torch.int64, device=x.device).random_(-(2**63), None)
    keep = words.view(torch.int16)[: x.numel()].view(x.shape) >= round(p * 65536) - 32768
    return torch.where(keep, x * (1.0 / (1.0 - p)), 0.0)


class Encoder(nn.Module):
    """Positional embedding plus pre-LN transformer blocks over a batch laid out by `Layout`."""

    def __init__(self, max_len: int, dim: int, blocks: int, heads: int, dropout: float, causal: bool, position_std: float) -> None:
        super().__init__()
        self.causal, self.drop = causal, dropout
        self.positions = nn.Embedding(max_len, dim)
        # torch's N(0, 1) made positions drown the items' N(0, 0.02) vectors, so the first epochs
        # learnt little beyond popularity; BERT's 0.02 lets items be heard from the first step
        nn.init.normal_(self.positions.weight, std=position_std)
        self.blocks = nn.Module()
        self.blocks.layers = nn.ModuleList(Block(dim, heads, dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim)

    def forward(self, embedded: torch.Tensor, layout: Layout, last_only: bool = False) -> torch.Tensor:
        """[rows, width, dim] hidden states, or [rows, 1, dim] for the last column alone."""
        width = embedded.shape[1]
        hidden = dropout(embedded + self.positions(layout.positions), self.drop if self.training else 0.0)
        # A query sees the keys of its own sequence (and, if causal, only earlier ones); it
        # always sees itself, so a padding row is never fully masked (which would give NaN).
        segments = layout.segments
        allowed = (segments[:, :, None] == segments[:, None, :]) & (segments[:, None, :] > 0)
        if self.causal:
            allowed = allowed & torch.ones(width, width, dtype=torch.bool, device=embedded.device).tril()
        allowed = allowed | torch.eye(width, dtype=torch.bool, device=embedded.device)
        # `blocks` is a bare holder that keeps checkpoint names `blocks.layers.N`
        layers = cast(nn.ModuleList, self.blocks.layers)
        for index, block in enumerate(layers):
            hidden = block(hidden, allowed, last_only=last_only and index == len(layers) - 1)
        return self.norm(hidden)


@dataclass
class Layout:
    """Where each sequence of a batch sits: `segments` [rows, width] numbers the sequences from 1
    (0 is padding); `positions` gives each item's position embedding, right-aligned per
    sequence, so the most recent item always has the last position however the batch is cut."""

    segments: torch.Tensor
    positions: torch.Tensor
    slots: list[tuple[int, int]]  # (row, first column) of each sequence

    @classmethod
    def padded(cls, lengths: list[int], max_len: int) -> Layout:
        """One sequence per row, right-aligned, padded to the longest (at most `max_len`):
        attention to padding is masked, so extra padding would cost time and change nothing."""
        width = min(max_len, max(lengths, default=1)) or 1
        return cls._build([(row, width - min(n, width)) for row, n in enumerate(lengths)], lengths, len(lengths), width, max_len)

    @classmethod
    def packed(cls, lengths: list[int], max_len: int) -> Layout:
        """Sequences (each at most `max_len`) packed first-fit, longest first, into as few rows
        as fit: attention stays within a sequence, so every sequence is computed exactly as if
        padded alone, without the padding (training batches of ML-1M are about half padding)."""
        width = min(max_len, max(lengths, default=1)) or 1
        free: list[int] = []
        slots = [(0, 0)] * len(lengths)
        for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
            row = next((r for r, space in enumerate(free) if space >= lengths[index]), len(free))
            if row == len(free):
                free.append(width)
            slots[index] = (row, width - free[row])
            free[row] -= lengths[index]
        return cls._build(slots, lengths, len(free), width, max_len)

    @classmethod
    def _build(cls, slots: list[tuple[int, int]], lengths: list[int], rows: int, width: int, max_len: int) -> Layout:
        segments = np.zeros((rows, width), dtype=np.int64)
        positions = np.zeros((rows, width), dtype=np.int64)
        for number, ((row, start), n) in enumerate(zip(slots, lengths, strict=True), start=1):
            n = min(n, width)
            segments[row, start : start + n] = number
            positions[row, start : start + n] = np.arange(max_len - n, max_len)
        return cls(torch.from_numpy(segments), torch.from_numpy(positions), slots)

    def place(self, sequences: list[np.ndarray], pad: int = 0) -> torch.Tensor:
        """[rows, width] tokens: each sequence's last `width` items in its slot."""
        rows, width = self.segments.shape
        out = np.full((rows, width), pad, dtype=np.int64)
        for (row, start), sequence in zip(self.slots, sequences, strict=True):
            tail = sequence[-width:]
            out[row, start : start + len(tail)] = tail
        return torch.from_numpy(out)

    def to(self, device: torch.device) -> Layout:
        return Layout(self.segments.to(device), self.positions.to(device), self.slots)


def left_pad(histories: list[np.ndarray], max_len: int) -> tuple[torch.Tensor, Layout]:
    """The last `max_len` items of each history, one per row, right-aligned so that the last
    column is the most recent item for every row, with their layout."""
    layout = Layout.padded([len(h) for h in histories], max_len)
    return layout.place(histories), layout
