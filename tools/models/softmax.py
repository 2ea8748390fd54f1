"""Full-softmax cross-entropy over the whole catalogue, computed in row chunks.

The plain `cross_entropy(hidden @ vectors.T, targets)` materialises a [T, n] float32 logit
matrix (ML-1M: about 7,000 positions x 3,706 items per batch) and walks it five times (matmul,
log-softmax, its backward, the zero-filled NLL gradient, the matmuls back); on a CPU that
memory traffic is most of a training step. Here each chunk of rows is scored, reduced to its
log-sum-exp and dropped; the backward pass scores the chunk again and turns it into gradients
at once. Matmuls run in `dtype` (bfloat16 where the CPU has AMX/AVX-512-BF16: several times
faster), the softmax itself in float32.
"""

from __future__ import annotations

import torch

CHUNK = 256  # rows: a [256, n] float32 block stays in a core's cache for the softmax kernels


class _ChunkedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:  # type: ignore[override]
        h, v = hidden.to(dtype), vectors.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for start in range(0, len(h), CHUNK):
            log_probs = torch.log_softmax((h[start : start + CHUNK] @ v.T).float(), dim=-1)
            total -= log_probs.gather(1, targets[start : start + CHUNK, None]).sum()
        ctx.save_for_backward(h, v, targets)
        ctx.out_dtypes = (hidden.dtype, vectors.dtype)
        return total / len(h)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:  # type: ignore[override]
        h, v, targets = ctx.saved_tensors
        scale = grad.float() / len(h)
        grad_h = torch.empty(h.shape, dtype=torch.float32, device=h.device)
        grad_v = torch.zeros(v.shape, dtype=torch.float32, device=h.device)
        for start in range(0, len(h), CHUNK):
            chunk = h[start : start + CHUNK]
            # d(mean CE)/d(logits) = (softmax - one_hot(target)) / T
            probs = torch.softmax((chunk @ v.T).float(), dim=-1)
            probs.scatter_add_(1, targets[start : start + CHUNK, None], torch.full((len(chunk), 1), -1.0, device=h.device))
            probs = (probs * scale).to(h.dtype)
            grad_h[start : start + CHUNK] = probs @ v
            grad_v += probs.T @ chunk
        hidden_dtype, vectors_dtype = ctx.out_dtypes
        return grad_h.to(hidden_dtype), grad_v.to(vectors_dtype), None, None


def full_softmax_ce(hidden: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Mean cross-entropy of hidden states [T, d] against every row of `vectors` [n, d], the
    class of row t being `targets[t]` (0-based)."""
    if len(hidden) == 0:
        return hidden.sum() * 0.0 + vectors.sum() * 0.0
    return _ChunkedCE.apply(hidden, vectors, targets, dtype)
