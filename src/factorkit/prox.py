"""Proximal operators as plain functions, each beside the regularizer it belongs to.

``prox_{t h}(x) = argmin_z  h(z) + ||z - x||^2 / (2 t)``. Every operator works on tensors of any
shape (entrywise ones) or on the last dimensions noted, so a whole factor matrix, or a batch of
them, is one call. Each ``penalty_*`` returns the value ``h(x)`` summed over entries, so the
prox can be checked against its definition (tests/test_prox.py does, by grid search and scipy).

Conventions: quadratic terms are ``l2 * x^2`` (not ``l2 / 2 * x^2``); thresholds ``t`` are the
step size times the weight, and the functions take the weights and the step separately.
"""

from __future__ import annotations

import torch

from factorkit._validation import check_float

# ----- l1 -------------------------------------------------------------------------------------


def penalty_l1(x: torch.Tensor, l1: float = 1.0) -> torch.Tensor:
    return l1 * x.abs().sum()


def prox_l1(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Soft thresholding, the prox of ``threshold * ||x||_1``: ``sign(x) max(|x| - t, 0)``."""
    threshold = check_float("threshold", threshold, nonnegative=True)
    return torch.sign(x) * torch.clamp(x.abs() - threshold, min=0.0)


# ----- elastic net ----------------------------------------------------------------------------


def penalty_elastic_net(x: torch.Tensor, l1: float, l2: float) -> torch.Tensor:
    return l1 * x.abs().sum() + l2 * x.square().sum()


def prox_elastic_net(x: torch.Tensor, l1: float, l2: float, step: float) -> torch.Tensor:
    """Prox of ``step * (l1 |z| + l2 z^2)``: ``soft(x, step l1) / (1 + 2 step l2)``."""
    l1, l2 = check_float("l1", l1, nonnegative=True), check_float("l2", l2, nonnegative=True)
    step = check_float("step", step, positive=True)
    return prox_l1(x, step * l1) / (1 + 2 * step * l2)


# ----- constraints ----------------------------------------------------------------------------


def prox_nonnegative(x: torch.Tensor) -> torch.Tensor:
    """Projection onto ``z >= 0`` (the prox of its indicator)."""
    return torch.clamp(x, min=0.0)


def prox_box(x: torch.Tensor, lower: float = 0.0, upper: float = 1.0) -> torch.Tensor:
    """Projection onto ``[lower, upper]``."""
    if not lower <= upper:
        raise ValueError(f"lower must be <= upper, got lower={lower}, upper={upper}")
    return torch.clamp(x, min=lower, max=upper)


# ----- elastic-binary (Dalleiger & Vreeken, NeurIPS 2022) ------------------------------------

BOUNDS = {"none": (None, None), "nonnegative": (0.0, None), "box": (0.0, 1.0)}


def penalty_elastic_binary(x: torch.Tensor, l1: float, l2: float) -> torch.Tensor:
    """``sum min(l1 |x| + l2 x^2, l1 |x - 1| + l2 (x - 1)^2)``: zero exactly on {0, 1}."""
    to_zero = l1 * x.abs() + l2 * x.square()
    to_one = l1 * (x - 1).abs() + l2 * (x - 1).square()
    return torch.minimum(to_zero, to_one).sum()


def prox_elastic_binary(
    x: torch.Tensor, l1: float, l2: float, step: float, bounds: str = "none"
) -> torch.Tensor:
    """Exact prox of ``step * R`` with ``R`` the elastic-binary regularizer (optionally constrained).

    ``R = min(f0, f1)`` with ``f0(z) = l1|z| + l2 z^2`` and ``f1(z) = f0(z - 1)``, so the prox is
    the better of the two convex branches' proxes: ``soft(x, s l1) / (1 + 2 s l2)`` towards 0 and
    ``1 + soft(x - 1, s l1) / (1 + 2 s l2)`` towards 1 (each clamped to the feasible interval,
    exact in 1-D for a convex branch), compared by objective value. Without bounds, or with the
    box ``[0, 1]``, that comparison is the rule "towards 0 iff x <= 1/2" (the problem is
    symmetric about 1/2); with only ``z >= 0`` the comparison is kept.

    Parameters
    ----------
    bounds : {'none', 'nonnegative', 'box'}
        Feasible set: the reals, ``z >= 0``, or ``[0, 1]``.
    """
    l1, l2 = check_float("l1", l1, nonnegative=True), check_float("l2", l2, nonnegative=True)
    step = check_float("step", step, positive=True)
    if bounds not in BOUNDS:
        raise ValueError(f"bounds must be one of {', '.join(map(repr, BOUNDS))}; got {bounds!r}")
    lower, upper = BOUNDS[bounds]
    shrink = 1 + 2 * step * l2
    to_zero = prox_l1(x, step * l1) / shrink
    to_one = 1 + prox_l1(x - 1, step * l1) / shrink
    if lower is not None or upper is not None:
        to_zero = torch.clamp(to_zero, min=lower, max=upper)
        to_one = torch.clamp(to_one, min=lower, max=upper)
    if bounds != "nonnegative":  # symmetric about 1/2: the comparison reduces to this rule
        return torch.where(x <= 0.5, to_zero, to_one)

    def objective(z: torch.Tensor, centre: float) -> torch.Tensor:
        return 0.5 * (z - x).square() + step * (l1 * (z - centre).abs() + l2 * (z - centre).square())

    # each candidate is scored on its own branch; the min over branches is R's prox
    return torch.where(objective(to_zero, 0.0) <= objective(to_one, 1.0), to_zero, to_one)


# ----- group l2 -------------------------------------------------------------------------------


def penalty_group_l2(x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """``weight * sum_g ||x_g||_2`` with the groups along the last dimension (rows)."""
    return weight * x.norm(dim=-1).sum()


def prox_group_l2(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Block soft thresholding of each row: ``x_g max(0, 1 - t / ||x_g||)``."""
    threshold = check_float("threshold", threshold, nonnegative=True)
    norms = x.norm(dim=-1, keepdim=True)
    return x * torch.clamp(1 - threshold / norms.clamp_min(torch.finfo(x.dtype).tiny), min=0.0)


# ----- nuclear norm ---------------------------------------------------------------------------


def nuclear_norm(x: torch.Tensor) -> torch.Tensor:
    """``||X||_*``, the sum of singular values, over the last two dimensions."""
    return torch.linalg.svdvals(x).sum(-1)


def prox_nuclear(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Singular value thresholding, the prox of ``threshold * ||X||_*``.

    Cai, Candes & Shen, "A singular value thresholding algorithm for matrix completion"
    (SIAM J. Optim. 2010), Theorem 2.1: ``U diag(max(s - t, 0)) V^T`` for ``X = U diag(s) V^T``.
    Works on ``(..., m, m')`` batches.
    """
    threshold = check_float("threshold", threshold, nonnegative=True)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    return (u * torch.clamp(s - threshold, min=0.0).unsqueeze(-2)) @ vh
