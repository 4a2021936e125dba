"""The convex reference: the minimum-nuclear-norm matrix consistent with the measurements.

``min ||W||_*  s.t.  <A_i, W> = y_i`` (Recht, Fazel & Parrilo, SIAM Review 2010). Gunasekar et
al. (NeurIPS 2017) conjecture, and show for commuting measurements, that gradient flow on a
depth-2 factorization from infinitesimal initialisation converges to this solution, so its
generalization loss is a reference line for GD in the studies.

Solved by Douglas-Rachford splitting between singular value thresholding (the prox of the
nuclear norm) and the exact projection onto the affine set ``{W : A(W) = y}``
(Combettes & Pesquet, "Proximal splitting methods in signal processing", 2011, Alg. 10.15).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from factorkit._validation import check_float, check_int
from factorkit.problems.sensing import SensingProblem
from factorkit.prox import nuclear_norm, prox_nuclear


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
