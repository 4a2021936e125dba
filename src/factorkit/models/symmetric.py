"""Symmetric factorization ``W W^T`` (one factor used twice), for :func:`~factorkit.fit.train_gd`.

The model of QWEM's quartic loss (:mod:`factorkit.methods.embeddings`): embeddings ``W`` of shape
``(n, dim)`` and the end-to-end matrix ``W W^T``. It has the interface of
:class:`~factorkit.models.DeepFactorization` that the GD trainer uses (``check_fits``,
``init_weights``, ``end_to_end``), with one weight tensor per population.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from factorkit._validation import check_int
from factorkit.models.deep import GaussianInit


@dataclass(frozen=True)
class SymmetricFactorization(GaussianInit):
    """``W W^T`` with ``W`` of shape ``(n, dim)``.

    Parameters
    ----------
    n : int
        Size of the (square) end-to-end matrix.
    dim : int
        Number of columns of ``W``.
    """

    n: int
    dim: int

    def __post_init__(self) -> None:
        check_int("n", self.n)
        check_int("dim", self.dim)

    is_linear = True

    def layer_shapes(self) -> list[tuple[int, int]]:
        return [(self.n, self.dim)]

    def n_parameters(self) -> int:
        return self.n * self.dim

    def check_fits(self, shape: tuple[int, int]) -> None:
        """Raise unless the problem's matrix is ``n x n``."""
        if (shape[0], shape[1]) != (self.n, self.n):
            raise ValueError(f"model shape ({self.n}, {self.n}) does not match problem shape {tuple(shape)}")

    def check_weights(self, weights: Sequence[torch.Tensor]) -> int:
        """Validate ``[W]`` with ``W`` of shape ``(P, n, dim)``; return ``P``."""
        if len(weights) != 1:
            raise ValueError(f"weights must hold 1 tensor, got {len(weights)}")
        W = weights[0]
        if W.dim() != 3 or tuple(W.shape[1:]) != (self.n, self.dim):
            raise ValueError(f"weights[0] must have shape (P, {self.n}, {self.dim}), got {tuple(W.shape)}")
        return W.shape[0]

    def end_to_end(self, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """``W W^T`` for each member, shape ``(P, n, n)``."""
        self.check_weights(weights)
        W = weights[0]
        return W @ W.transpose(-1, -2)
