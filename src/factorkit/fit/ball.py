"""The probability that a Gaussian vector falls in a ball, to a relative accuracy, deep into the tail.

For ``g ~ N(0, Sigma)`` in ``R^n`` and the ball ``||g - y||^2 <= t``: in the eigenbasis of
``Sigma = U diag(lambda) U^T``, ``||g - y||^2 = sum_j lambda_j (x_j + delta_j)^2 + c_0`` with
``x_j`` standard normal, ``delta_j = -(U^T y)_j / sqrt(lambda_j)`` over the positive eigenvalues,
and ``c_0 = sum (U^T y)_j^2`` over the null ones (a singular ``Sigma`` puts ``g`` on its range: the
ball is met only if ``c_0 <= t``). The positive part is a generalized non-central chi-square.

Its CDF is computed by Ruben's series (H. Ruben, "Probability content of regions under spherical
normal distributions, IV", Ann. Math. Statist. 33, 1962; the recursion of R. W. Farebrother,
Algorithm AS 204, Applied Statistics 33, 1984): with ``beta = min lambda_j``,

    P(sum_j lambda_j (x_j + delta_j)^2 <= t) = sum_{k >= 0} a_k P(chi^2_{N + 2k} <= t / beta),

where ``a_k`` are the probabilities of a mixing distribution on ``k`` (so every term is >= 0 and
``sum a_k = 1``): ``a_0 = prod_j (beta / lambda_j)^(1/2) exp(-sum_j delta_j^2 / 2)`` and
``k a_k = sum_{r=1}^k G_r a_{k-r}``, ``G_r = sum_j [gamma_j^r + r delta_j^2 (1 - gamma_j)
gamma_j^(r-1)] / 2``, ``gamma_j = 1 - beta / lambda_j`` in ``[0, 1)``. Because the chi-square CDFs
decrease in ``k``, the terms left out after ``K`` are at most ``(1 - sum_{k <= K} a_k)
P(chi^2_{N + 2K + 2} <= t / beta)``: the series stops when that bound is below ``rtol`` times the
sum, a relative error bound that holds in the far lower tail, where every term is positive and
small (Imhof's and Davies' inversions of the characteristic function control the *absolute* error,
about 1e-13 at best: useless for a probability of 1e-30). In the lower tail few terms are needed
(about ``t / (2 beta)``); the work is ``O(K^2)`` per ball.

At ``t -> 0`` the ball's probability over its volume tends to the density ``N(y; 0, Sigma)``:
:func:`log_gaussian_density` gives its logarithm (``-inf`` where ``y`` is off the range of a
singular ``Sigma``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

NULL_RTOL = 1e-10  # eigenvalues below this times the largest are the null space of Sigma


def log_ball_volume(dim: int, radius2: float) -> float:
    """``log`` of the volume of a ball of squared radius ``radius2`` in ``R^dim``."""
    if radius2 <= 0:
        return -math.inf
    return 0.5 * dim * math.log(math.pi * radius2) - special.gammaln(dim / 2 + 1)


def split_spectrum(values: np.ndarray, centre: np.ndarray, rtol: float = NULL_RTOL):
    """``(positive, centre on them, c_0, rank)`` per row: eigenvalues above ``rtol`` times the
    largest (their count ``rank``), and ``c_0``, the squared centre on the null space."""
    values = np.asarray(values, dtype=np.float64)
    centre = np.asarray(centre, dtype=np.float64)
    largest = values.max(axis=-1, keepdims=True)
    null = values <= rtol * np.maximum(largest, 1e-300)
    c0 = np.where(null, centre**2, 0.0).sum(-1)
    return np.where(null, 0.0, values), np.where(null, 0.0, centre), c0, (~null).sum(-1)


def log_ball_probability(
    values: np.ndarray, centre: np.ndarray, radius2: float, *, rtol: float = 1e-12, max_terms: int = 100_000
) -> np.ndarray:
    """``log P(||g - y||^2 <= radius2)`` for ``g ~ N(0, U diag(values) U^T)``, per row.

    ``values`` (``..., n``): the eigenvalues of ``Sigma`` (>= 0); ``centre`` (``..., n``): ``U^T y``.
    Ruben's series to a relative error below ``rtol`` (module docstring); ``-inf`` where the ball
    misses the support. ``RuntimeError`` if a row needs more than ``max_terms`` terms.
    """
    values = np.atleast_2d(values)
    centre = np.atleast_2d(centre)
    shape = values.shape[:-1]
    values, centre = values.reshape(-1, values.shape[-1]), centre.reshape(-1, centre.shape[-1])
    positive, centre, c0, rank = split_spectrum(values, centre)
    t = radius2 - c0
    out = np.full(values.shape[0], -np.inf)
    for dim in np.unique(rank):
        rows = np.flatnonzero((rank == dim) & (t > 0))
        if rows.size == 0:
            continue
        if dim == 0:  # Sigma = 0: g = 0 surely, inside iff c0 < radius2
            out[rows] = 0.0
            continue
        lam = np.sort(positive[rows], axis=-1)[:, -dim:]
        order = np.argsort(positive[rows], axis=-1)[:, -dim:]
        shift = np.take_along_axis(centre[rows], order, axis=-1)
        out[rows] = _ruben(lam, shift**2 / lam, t[rows], rtol, max_terms)
    return out.reshape(shape)


def _ruben(lam: np.ndarray, delta2: np.ndarray, t: np.ndarray, rtol: float, max_terms: int) -> np.ndarray:
    """``log P(sum_j lam_j (x_j + delta_j)^2 <= t)`` by Ruben's series, rows of positive ``lam``.

    The convolution ``k b_k = sum_r G_r b_{k-r}`` is kept as running sums per eigenvalue,
    ``S_j(k) = sum_r gamma_j^r b_{k-r}`` and ``T_j(k) = sum_r r gamma_j^(r-1) b_{k-r}``, which
    advance as ``S_j(k) = gamma_j (b_{k-1} + S_j(k-1))`` and ``T_j(k) = b_{k-1} + gamma_j T_j(k-1)
    + S_j(k-1)``: ``O(n)`` per term instead of ``O(k)``, every quantity positive (no cancellation).
    The terms are made in blocks; the chi-square CDFs and the stopping rule are read per block.
    """
    rows, dim = lam.shape
    beta = lam.min(axis=1)
    gamma = 1.0 - beta[:, None] / lam
    weight = 0.5 * delta2 * (1.0 - gamma)
    log_a0 = -0.5 * np.log(lam / beta[:, None]).sum(1) - 0.5 * delta2.sum(1)
    half_x = 0.5 * t / beta  # the chi-square argument, halved for gammainc
    # scaled arithmetic: a_k = exp(log_a0 + log_scale) b_k, rescaled when b grows (a_0 underflowed)
    log_scale = np.zeros(rows)
    previous = np.ones(rows)  # b_{k-1}
    S = np.zeros((rows, dim))
    T = np.zeros((rows, dim))
    total = special.gammainc(dim / 2, half_x)  # sum_k b_k F_k
    mass = np.ones(rows)  # sum_k b_k
    result = np.full(rows, np.nan)
    active = np.arange(rows)
    block = 64
    for start in range(1, max_terms + 1, block):
        stop = min(start + block, max_terms + 1)
        coefficients = np.empty((active.size, stop - start))
        for k in range(start, stop):
            S_next = gamma * (previous[:, None] + S)
            T = previous[:, None] + gamma * T + S
            S = S_next
            previous = (0.5 * S.sum(1) + (weight * T).sum(1)) / k
            coefficients[:, k - start] = previous
            if previous.max() > 1e150:  # rows whose coefficients grow (a_0 underflowed): rescale
                factor = np.where(previous > 1e150, 1e-150, 1.0)
                previous = previous * factor
                S, T = S * factor[:, None], T * factor[:, None]
                coefficients[:, : k - start + 1] *= factor[:, None]
                total[active] *= factor
                mass[active] *= factor
                log_scale[active] -= np.log(factor)
        chi = special.gammainc(dim / 2 + np.arange(start, stop)[None, :], half_x[active, None])
        total[active] += (coefficients * chi).sum(1)
        mass[active] += coefficients.sum(1)
        # what is left: at most (1 - sum a) * P(chi^2_{N + 2 stop} <= x), the CDF decreasing in k
        log_mass = log_a0[active] + log_scale[active] + np.log(mass[active])
        left = -np.expm1(np.minimum(log_mass, 0.0)) * special.gammainc(dim / 2 + stop, half_x[active])
        log_total = log_a0[active] + log_scale[active] + np.log(np.maximum(total[active], 1e-300))
        with np.errstate(divide="ignore"):
            done = (left == 0) | (np.log(left) <= math.log(rtol) + log_total)
        if done.any():
            result[active[done]] = log_total[done]
            keep = ~done
            active, previous, S, T = active[keep], previous[keep], S[keep], T[keep]
            gamma, weight = gamma[keep], weight[keep]
            if active.size == 0:
                return result
    raise RuntimeError(
        f"Ruben's series did not converge in {max_terms} terms (eigenvalue spread "
        f"{float((lam.max(1) / lam.min(1)).max()):.3g}, t / beta up to {float(2 * half_x.max()):.3g})"
    )


def log_gaussian_density(values: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``log N(y; 0, Sigma)`` per row from the eigenvalues of ``Sigma`` and ``centre = U^T y``;
    ``-inf`` where ``Sigma`` is singular and ``y`` has a part off its range (no density there:
    the G&C posterior at ``eps = 0`` gives such a draw no weight)."""
    values = np.atleast_2d(values)
    centre = np.atleast_2d(centre)
    positive, inside, c0, rank = split_spectrum(values, centre)
    n = values.shape[-1]
    scale = np.maximum((centre**2).sum(-1), 1e-300)
    logdet = np.where(positive > 0, np.log(np.where(positive > 0, positive, 1.0)), 0.0).sum(-1)
    quad = np.where(positive > 0, inside**2 / np.where(positive > 0, positive, 1.0), 0.0).sum(-1)
    out = -0.5 * (n * math.log(2 * math.pi) + logdet + quad)
    # a singular Sigma: y must lie on its range (to the eigenvalue tolerance) to have a density
    # at all, and then only on that range; both cases are recorded as no weight here
    off_range = (rank < n) & (c0 > 1e-20 * scale)
    degenerate = (rank < n) & ~off_range
    if degenerate.any():
        raise ValueError(
            "y lies on the range of a singular Sigma: the density is infinite (a degenerate case)"
        )
    return np.where(off_range, -np.inf, out)
