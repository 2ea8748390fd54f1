"""What every backbone shares: its configuration and the scoring interface the tools use."""

from __future__ import annotations

import itertools
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import nn

from tools.data.sequences import SequenceDataset
from tools.models.softmax import full_softmax_ce

ModelKind = Literal["sasrec", "sasrec-attr", "bert4rec", "popularity", "transitions"]
LossKind = Literal["ce", "sce", "logq", "bce", "bpr"]


class ModelConfig(BaseModel):
    kind: ModelKind
    num_items: int
    max_len: int = Field(200, description="Most recent items a model reads")
    dim: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    position_std: float = Field(0.02, gt=0.0, description="Std of the initial position embeddings (torch's default was 1.0)")
    loss: LossKind = Field(
        "ce",
        description="Full softmax cross-entropy, a softmax over shared negatives (sce uniform, logq by popularity with "
        "log-Q correction), or sampled BCE/BPR",
    )
    negatives: int = Field(1, description="Sampled negatives: per positive for bce/bpr, shared by the batch for sce and logq")
    mask_prob: float = Field(0.2, description="BERT4Rec cloze masking rate")
    output_head: Literal["tied", "transform"] = Field(
        "tied", description="BERT4Rec's output: the tied item vectors alone, or the original's dense+GELU+LayerNorm and an item bias first"
    )
    attribute: str | None = Field(None, description="Attribute type fused into item vectors (sasrec-attr)")
    attribute_values: list[str] = Field(default_factory=list)


class PopularitySampler:
    """Negatives drawn with replacement in proportion to training popularity (plus one, so that
    no item is never drawn), one set shared by a batch, and the log of each id's expected count
    in a draw (the log-Q correction that makes a popularity-biased sample an unbiased softmax
    estimate: Bengio & Senecal 2008; Yi et al., RecSys 2019). Drawing is a binary search in the
    cumulative distribution, so a draw costs O(negatives log n), not O(n), at a million items."""

    def __init__(self, counts: np.ndarray) -> None:
        weights = counts.astype(np.float64) + 1.0
        weights[0] = 0.0  # padding
        q = weights / weights.sum()
        self.cdf = torch.from_numpy(np.cumsum(q))
        self.log_q = torch.from_numpy(np.log(np.maximum(q, np.finfo(np.float64).tiny))).float()

    def draw(self, count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids [count], log expected count of every item id [n]) for one batch."""
        uniform = torch.rand(count, dtype=torch.float64) * self.cdf[-1]
        ids = torch.searchsorted(self.cdf, uniform, right=True).clamp_(1, len(self.cdf) - 1)
        return ids.to(device), (self.log_q + float(np.log(count))).to(device)


class Recommender(nn.Module):
    """Scores the whole catalogue for a batch of histories in one forward pass."""

    config: ModelConfig
    # set by the training loop for the logq loss; never saved (it is the training data's popularity)
    sampler: PopularitySampler | None = None

    @property
    def device(self) -> torch.device:
        tensor = next(itertools.chain(self.parameters(), self.buffers()), None)
        return torch.device("cpu") if tensor is None else tensor.device

    def score(self, histories: list[np.ndarray]) -> torch.Tensor:
        """[batch, num_items + 1] raw scores; column 0 (padding) is -inf. History items are not
        masked here: what to exclude is the caller's decision."""
        raise NotImplementedError

    def loss(self, sequences: list[np.ndarray]) -> torch.Tensor:
        """Training loss on a batch of training sequences."""
        raise NotImplementedError

    def item_vectors(self) -> np.ndarray | None:
        """[num_items + 1, dim] output item embeddings for the vector index, if the model has them."""
        return None


class Embedded(Recommender):
    """A model whose score is a product: a user's vector against every item's output vector.
    That product is what an inner-product index can search without scoring the catalogue
    (`toolrec score --ann`)."""

    def user_vectors(self, histories: list[np.ndarray]) -> torch.Tensor:
        """[batch, d]: each history's query vector."""
        raise NotImplementedError

    def output_vectors(self) -> torch.Tensor:
        """[num_items + 1, d]: the vectors a user's vector scores (row 0 is padding)."""
        raise NotImplementedError

    def score(self, histories: list[np.ndarray]) -> torch.Tensor:
        scores = self.user_vectors(histories) @ self.output_vectors().T
        scores[:, 0] = -torch.inf
        return scores


class Counted(Recommender):
    """A model counted from the training sequences in one pass, not trained by gradient."""

    def fit(self, dataset: SequenceDataset) -> None:
        raise NotImplementedError


def sampled_loss(
    kind: str, hidden: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor, negatives: int, sampler: PopularitySampler | None = None
) -> torch.Tensor:
    """Loss of hidden states [T, d] against target ids [T] over item vectors [num_items + 1, d].

    "ce" is the full softmax over every item (the strong setting); "sce" the softmax over each
    target and one set of distinct uniform negatives shared by the batch (a fraction of the
    catalogue scored: the CPU lever of docs/benchmarks.md); "logq" the softmax over negatives
    drawn by popularity with the log-Q correction (what scales to a million items); "bce" and
    "bpr" sample uniform negatives per positive, as the original SASRec and ToolRec's backbone did.
    """
    if kind == "ce":
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
        return full_softmax_ce(hidden, vectors[1:], targets - 1, dtype)
    if kind == "sce":
        return shared_negatives_ce(hidden, vectors, targets, negatives)
    if kind == "logq":
        if sampler is None:
            raise ValueError("the logq loss needs the training data's popularity (model.sampler)")
        return log_q_ce(hidden, vectors, targets, negatives, sampler)
    sampled = torch.randint(1, vectors.shape[0], (targets.shape[0], negatives), device=hidden.device)
    positive = (hidden * vectors[targets]).sum(-1, keepdim=True)
    negative = torch.einsum("td,tnd->tn", hidden, vectors[sampled])
    if kind == "bce":
        return -(nn.functional.logsigmoid(positive).mean() + nn.functional.logsigmoid(-negative).mean())
    return -nn.functional.logsigmoid(positive - negative).mean()


def shared_negatives_ce(hidden: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor, negatives: int) -> torch.Tensor:
    """Softmax cross-entropy of each target against `negatives` distinct items drawn uniformly
    once for the batch (ids >= 1). A uniform proposal needs no log-q correction (it adds the
    same constant to every logit); a negative that is the row's own target is masked out."""
    count = min(negatives, vectors.shape[0] - 1)
    sampled = torch.randperm(vectors.shape[0] - 1, device=hidden.device)[:count] + 1
    positive = (hidden * vectors[targets]).sum(-1, keepdim=True)
    negative = (hidden @ vectors[sampled].T).masked_fill(sampled[None, :] == targets[:, None], -torch.inf)
    logits = torch.cat([positive, negative], dim=1).float()
    return nn.functional.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=hidden.device))


def log_q_ce(
    hidden: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor, negatives: int, sampler: PopularitySampler
) -> torch.Tensor:
    """Sampled softmax cross-entropy with log-Q correction: each target against one popularity
    sample shared by the batch, each sampled logit less the log of its expected count in the
    sample, so that the sample's exponentials estimate the rest of the softmax's normaliser
    without bias; the target's own logit is left as it is (correcting it too, as in-batch
    negatives do, pulled the loss 30% below the full softmax's where targets are not drawn as the
    sample is: tests/test_training.py). A sampled id equal to the row's target is masked (an
    accidental hit). With `negatives` at least the catalogue, every item is scored once and this
    is the full softmax exactly."""
    if negatives >= vectors.shape[0] - 1:
        return shared_negatives_ce(hidden, vectors, targets, negatives)
    sampled, log_expected = sampler.draw(negatives, hidden.device)
    positive = (hidden * vectors[targets]).sum(-1, keepdim=True)
    negative = (hidden @ vectors[sampled].T - log_expected[sampled][None, :]).masked_fill(sampled[None, :] == targets[:, None], -torch.inf)
    logits = torch.cat([positive, negative], dim=1).float()
    return nn.functional.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=hidden.device))
