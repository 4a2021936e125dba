"""The convex reference: the minimum-nuclear-norm matrix consistent with the measurements.

``min ||W||_*  s.t.  <A_i, W> = y_i`` (Recht, Fazel & Parrilo, SIAM Review 2010). Gunasekar et
al. (NeurIPS 2017) conjecture, and show for commuting measurements, that gradient flow on a
depth-2 factorization from infinitesimal initialisation converges to this solution, so its
generalization loss is a reference line for GD in the studies.

Solved by Douglas-Rachford splitting between singular value thresholding (the prox of the
nuclear norm) and the exact projection onto the affine set ``{W : A(W) = y}``
(Combettes & Pesquet, "Proximal splitting methods in signal processing", 2011, Alg. 10.15).

:func:`robust_nuclear_norm` is the convex reference for measurements with gross outliers,
``min ||W||_* + lam ||A(W) - y||_1`` (nuclear norm plus an l1 data fit), solved by the same
Douglas-Rachford splitting on the graph ``{(W, z) : z = A(W)}`` ("graph projection splitting",
Parikh & Boyd, "Proximal Algorithms", 2014, sec. 4.4): the prox of the separable objective is SVT
and soft thresholding, the projection onto the graph one solve with ``I + A A^T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from factorkit._validation import check_float, check_int
from factorkit.problems.sensing import SensingProblem
from factorkit.prox import nuclear_norm, prox_l1, prox_nuclear


@dataclass
class NuclearNormResult:
    """The minimizer ``W`` with its losses, nuclear norm and iteration count."""

    W: torch.Tensor
    nuclear_norm: float
    train_loss: float
    gen_loss: float
    rel_error: float
    iterations: int
    converged: bool


def min_nuclear_norm(
    problem: SensingProblem,
    *,
    step: float | None = None,
    tol: float = 1e-10,
    max_iter: int = 20_000,
) -> NuclearNormResult:
    """Minimum-nuclear-norm ``W`` with ``<A_i, W> = y_i`` for all ``i``, computed in float64.

    Parameters
    ----------
    problem : SensingProblem
    step : float, optional
        Douglas-Rachford parameter (threshold of each SVT); default ``||W*||_F / 10``-ish scale
        taken from the data, ``||y|| / sqrt(n) / 10``.
    tol : float
        Stop when the SVT iterate and its affine projection differ by less than ``tol`` in
        Frobenius norm and the iterate moved by less than ``tol``.
    max_iter : int
        Iteration cap; ``converged`` reports whether ``tol`` was met.
    """
    tol = check_float("tol", tol, positive=True)
    max_iter = check_int("max_iter", max_iter)
    m, m2 = problem.shape
    A = problem.A.reshape(problem.n, m * m2).to(torch.float64).cpu()
    y = problem.y.to(torch.float64).cpu()
    if step is None:
        step = max(float(y.norm()) / max(problem.n, 1) ** 0.5 / 10, 1e-8)
    step = check_float("step", step, positive=True)
    pinv = torch.linalg.pinv(A)

    def project(w: torch.Tensor) -> torch.Tensor:
        flat = w.reshape(-1)
        return (flat - pinv @ (A @ flat - y)).reshape(m, m2)

    z = project(torch.zeros(m, m2, dtype=torch.float64))
    converged = False
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        x = prox_nuclear(z, step)
        v = project(2 * x - z)
        z = z + v - x
        if float((v - x).norm()) < tol:
            converged = True
            break
    W = project(prox_nuclear(z, step))
    W_dev = W.to(problem.device, problem.dtype)
    train, gen = problem.losses(W_dev)
    return NuclearNormResult(
        W=W_dev,
        nuclear_norm=float(nuclear_norm(W)),
        train_loss=float(train),
        gen_loss=float(gen),
        rel_error=float(problem.rel_error(W_dev)),
        iterations=iterations,
        converged=converged,
    )


@dataclass
class RobustNuclearResult:
    """The minimizer ``W`` of ``||W||_* + lam ||A(W) - y||_1`` with its objective and errors."""

    W: torch.Tensor
    objective: float
    lam: float
    gen_loss: float
    rel_error: float
    iterations: int
    converged: bool


def robust_objective(problem: SensingProblem, W: torch.Tensor, lam: float) -> float:
    """``||W||_* + lam * sum_i |<A_i, W> - y_i|`` (float64)."""
    W = W.to(torch.float64).cpu()
    A = problem.A.reshape(problem.n, -1).to(torch.float64).cpu()
    residual = A @ W.reshape(-1) - problem.y.to(torch.float64).cpu()
    return float(nuclear_norm(W)) + lam * float(residual.abs().sum())


def robust_nuclear_norm(
    problem: SensingProblem,
    lam: float | None = None,
    *,
    step: float | None = None,
    tol: float = 1e-9,
    max_iter: int = 20_000,
) -> RobustNuclearResult:
    """``argmin_W ||W||_* + lam * sum_i |<A_i, W> - y_i|``, computed in float64.

    Parameters
    ----------
    problem : SensingProblem
    lam : float, optional
        Weight of the l1 data fit. The two terms balance at ``lam ~ max(m, m') / n`` (for unit
        Frobenius ``A_i``, ``sum_i |<A_i, W>| ~ n ||W||_F / m``); the default ``10 max(m, m') / n``
        interpolates clean data and leaves 10% outliers unfitted on 20 x 20 and 50 x 50 rank-3
        problems (``3 max/n`` under-fits, ``30 max/n`` fits the outliers).
    step : float, optional
        Douglas-Rachford parameter (both proxes use it); default ``||y||_2 / sqrt(n)``.
    tol : float
        Stop when the prox point and its graph projection differ by less than ``tol`` (relative
        to ``1 + ||W||_F``).
    max_iter : int
    """
    tol = check_float("tol", tol, positive=True)
    max_iter = check_int("max_iter", max_iter)
    m, m2 = problem.shape
    n = problem.n
    lam = check_float("lam", 10.0 * max(m, m2) / n if lam is None else lam, positive=True)
    A = problem.A.reshape(n, m * m2).to(torch.float64).cpu()
    y = problem.y.to(torch.float64).cpu()
    if step is None:
        step = max(float(y.norm()) / n**0.5, 1e-8)
    step = check_float("step", step, positive=True)
    # projection onto {(w, z): z = A w}: w = (I + A^T A)^{-1} (c + A^T d), by the n x n identity
    # (I + A^T A)^{-1} = I - A^T (I + A A^T)^{-1} A
    factor = torch.linalg.cholesky(torch.eye(n, dtype=torch.float64) + A @ A.T)

    def project(c: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rhs = c + A.T @ d
        w = rhs - A.T @ torch.cholesky_solve((A @ rhs)[:, None], factor)[:, 0]
        return w, A @ w

    def prox(c: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = prox_nuclear(c.reshape(m, m2), step).reshape(-1)
        return w, y + prox_l1(d - y, step * lam)

    zc, zd = torch.zeros(m * m2, dtype=torch.float64), y.clone()
    converged = False
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        xc, xd = prox(zc, zd)
        vc, vd = project(2 * xc - zc, 2 * xd - zd)
        zc, zd = zc + vc - xc, zd + vd - xd
        gap = float(torch.sqrt((vc - xc).square().sum() + (vd - xd).square().sum()))
        if gap < tol * (1 + float(xc.norm())):
            converged = True
            break
    W = prox(zc, zd)[0].reshape(m, m2)
    W_dev = W.to(problem.device, problem.dtype)
    return RobustNuclearResult(
        W=W_dev,
        objective=robust_objective(problem, W, lam),
        lam=lam,
        gen_loss=float(problem.gen_loss(W_dev)),
        rel_error=float(problem.rel_error(W_dev)),
        iterations=iterations,
        converged=converged,
    )
