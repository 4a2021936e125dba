"""Proximal operators as plain functions: ``prox_{t h}(x) = argmin_z h(z) + ||z - x||^2 / (2t)``.

Each works on tensors with any leading batch dimensions and is used by the proximal methods
(nuclear-norm reference, Boolean and non-negative factorizations).
"""

from __future__ import annotations

import torch

from factorkit._validation import check_float


def prox_l1(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Soft thresholding, the prox of ``threshold * ||x||_1``: ``sign(x) max(|x| - t, 0)``."""
    threshold = check_float("threshold", threshold, nonnegative=True)
    return torch.sign(x) * torch.clamp(x.abs() - threshold, min=0.0)


def prox_nuclear(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Singular value thresholding, the prox of ``threshold * ||X||_*``.

    Cai, Candes & Shen, "A singular value thresholding algorithm for matrix completion"
    (SIAM J. Optim. 2010), Theorem 2.1: ``U diag(max(s - t, 0)) V^T`` for ``X = U diag(s) V^T``.
    Works on ``(..., m, m')`` batches.
    """
    threshold = check_float("threshold", threshold, nonnegative=True)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    return (u * torch.clamp(s - threshold, min=0.0).unsqueeze(-2)) @ vh


def nuclear_norm(x: torch.Tensor) -> torch.Tensor:
    """``||X||_*``, the sum of singular values, over the last two dimensions."""
    return torch.linalg.svdvals(x).sum(-1)
