"""Sub-gradient method (SubGM) for robust low-rank recovery with an l1 loss.

Ma & Fattahi, "Global Convergence of Sub-gradient Method for Robust Matrix Recovery: Small
Initialization, Noisy Measurements, and Over-parameterization" (arXiv:2202.08788):

    f(U) = (1/n) sum_i |<A_i, U U^T> - y_i|,      Q_t = (1/n) sum_i sign(<A_i, U_t U_t^T> - y_i) A_i,
    U_{t+1} = U_t - eta_t (Q_t + Q_t^T) U_t,      eta_t = eta_0 rho^t,    U_0 = alpha B,

with ``B`` a random matrix and ``alpha`` small; the asymmetric form ``W = U V^T`` steps
``U -= eta_t Q_t V``, ``V -= eta_t Q_t^T U``. ``normalize=True`` divides the step by
``||Q_t||_F`` (a Polyak-type normalization; which variant the paper's theorems use for which noise
model was not checked here: both are offered). ``loss='l2'`` replaces ``sign(r_i)`` by ``2 r_i``:
plain gradient descent on the squared loss, the non-robust baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from factorkit._validation import check_choice, check_float, check_int, make_generator
from factorkit.problems.sensing import SensingProblem

STEP_SCALE = 0.04  # step=None: eta_0 rms ||A_i||_F / sqrt(m m') (see subgradient_method)
NORMALIZED_STEP = 0.1  # step=None with normalize=True


@dataclass
class SubgradientResult:
    U: torch.Tensor
    V: torch.Tensor | None
    W: torch.Tensor
    rel_error: float
    history: list[float] = field(default_factory=list)


def subgradient_method(
    problem: SensingProblem,
    rank: int,
    *,
    symmetric: bool = True,
    loss: str = "l1",
    init_scale: float = 1e-3,
    step: float | None = None,
    decay: float = 0.997,
    steps: int = 3000,
    normalize: bool = False,
    seed: int = 0,
    log_every: int = 10,
) -> SubgradientResult:
    """Recover ``W*`` from (corrupted) measurements by SubGM on ``U U^T`` or ``U V^T``.

    Parameters
    ----------
    problem : SensingProblem
        Square for ``symmetric=True``.
    rank : int
        Factor rank ``r'`` (may over-estimate the true rank).
    symmetric : bool
        ``W = U U^T`` (PSD truth) or ``W = U V^T``.
    loss : {'l1', 'l2'}
    init_scale : float
        ``alpha``: ``U_0 = alpha B`` with ``B`` i.i.d. standard normal.
    step : float, optional
        ``eta_0``. ``None``: ``STEP_SCALE * sqrt(m m') / rms_i ||A_i||_F`` (``NORMALIZED_STEP`` with
        ``normalize=True``), so the steps move the factors by the same relative amounts whatever
        the scale of the measurements: the expected sign sub-gradient has norm about
        ``0.8 ||A_i||_F / sqrt(m m')``, so unit-Frobenius ``A_i`` need steps ``sqrt(m m')`` times
        those of i.i.d. N(0, 1) entries, and the former fixed default 0.1 left unit-norm problems
        at their start (``benchmarks/held_out.py robust``). 0.04 is the scale of the tuned runs of
        ``tests/test_subgradient.py`` (2.0 at 50 x 50).
    decay : float
        ``eta_t = eta_0 * decay^t``; ``decay`` in ``(0, 1]``.
    steps : int
    normalize : bool
        Divide the step by ``||Q_t||_F``.
    seed : int
    log_every : int
        Record ``||W - W*||_F / ||W*||_F`` every ``log_every`` steps.
    """
    m, m2 = problem.shape
    rank = check_int("rank", rank)
    check_choice("loss", loss, ("l1", "l2"))
    init_scale = check_float("init_scale", init_scale, positive=True)
    if step is not None:
        step = check_float("step", step, positive=True)
    decay = check_float("decay", decay, positive=True, upper=1.0)
    steps = check_int("steps", steps, minimum=0)
    log_every = check_int("log_every", log_every)
    if symmetric and m != m2:
        raise ValueError(f"symmetric=True needs a square problem, got shape {problem.shape}")
    generator = make_generator(seed)
    dtype, device = problem.dtype, problem.device
    A = problem.A.reshape(problem.n, m * m2)
    if step is None:
        size = float(A.square().sum(1).mean().sqrt())  # rms ||A_i||_F
        step = NORMALIZED_STEP if normalize else STEP_SCALE * (m * m2) ** 0.5 / max(size, 1e-300)
    U = (init_scale * torch.randn(m, rank, generator=generator, dtype=torch.float64)).to(device, dtype)
    V = (
        None
        if symmetric
        else (init_scale * torch.randn(m2, rank, generator=generator, dtype=torch.float64)).to(device, dtype)
    )
    history = []
    for t in range(steps + 1):
        W = U @ U.T if symmetric else U @ V.T
        if t % log_every == 0 or t == steps:
            history.append(float(problem.rel_error(W)))
        if t == steps:
            break
        residual = problem.train_residuals(W)
        weights = torch.sign(residual) if loss == "l1" else 2 * residual
        Q = (weights @ A).reshape(m, m2) / problem.n
        eta = step * decay**t
        if normalize:
            eta = eta / max(float(Q.norm()), 1e-30)
        if symmetric:
            U = U - eta * (Q + Q.T) @ U
        else:
            U, V = U - eta * Q @ V, V - eta * Q.T @ U
    return SubgradientResult(U=U, V=V, W=W, rel_error=history[-1], history=history)
