"""A fully observed target matrix: the loss ``scale * ||X - M||_F^2`` (no held-out part).

The problem of QWEM's quartic loss (``scale = 1/4``) for :func:`~factorkit.fit.train_gd`; it has
the interface the trainer uses of :class:`~factorkit.problems.SensingProblem` (``losses``,
``train_residuals``, ``rel_error``, ``shape``, ``device``, ``dtype``). Every entry is observed,
so there is nothing to generalize to: ``L_gen`` is reported equal to ``L_train``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from factorkit._validation import check_finite_tensor, check_float


@dataclass(frozen=True)
class DenseTarget:
    """``L(X) = scale * ||X - M||_F^2`` for a dense target ``M``.

    Parameters
    ----------
    M : torch.Tensor, shape (m, m')
        Floating-point, finite.
    scale : float
        Loss weight (``1/4`` gives QWEM's ``(1/4) ||W W^T - M*||^2``).
    """

    M: torch.Tensor
    scale: float = 0.25

    def __post_init__(self) -> None:
        if not isinstance(self.M, torch.Tensor):
            raise TypeError(f"M must be a torch.Tensor, got {type(self.M).__name__}")
        if self.M.dim() != 2 or not self.M.is_floating_point():
            raise ValueError(
                f"M must be a 2-D floating-point tensor, got {self.M.dtype} of dim {self.M.dim()}"
            )
        check_finite_tensor("M", self.M)
        check_float("scale", self.scale, positive=True)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.M.shape)

    @property
    def n(self) -> int:
        return self.M.numel()

    @property
    def device(self) -> torch.device:
        return self.M.device

    @property
    def dtype(self) -> torch.dtype:
        return self.M.dtype

    def train_residuals(self, X: torch.Tensor) -> torch.Tensor:
        """``X - M`` flattened, shape ``(..., m m')``."""
        if X.shape[-2:] != self.M.shape:
            raise ValueError(f"X must have trailing shape {tuple(self.M.shape)}, got {tuple(X.shape)}")
        return (X - self.M).flatten(-2)

    def losses(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L, L)``: the loss twice (train and gen coincide when everything is observed)."""
        loss = self.scale * self.train_residuals(X).square().sum(-1)
        return loss, loss

    def rel_error(self, X: torch.Tensor) -> torch.Tensor:
        """``||X - M||_F / ||M||_F``."""
        return self.train_residuals(X).norm(dim=-1) / self.M.norm()
