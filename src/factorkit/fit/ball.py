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
RUBEN_TERMS = 2_000  # Ruben's series where it needs at most this many terms (t / (2 min lambda))
RUBEN_CAP = 10_000  # under method='auto', rows Ruben has not finished in this many terms: the contour
# the contour's rows at a time and nodes per block: its temporaries stay in cache (1.25-1.64x every
# row at once in blocks of 256 nodes on the paper's deep cells: benchmarks/bench_contour.py)
CONTOUR_ROWS = 256
CONTOUR_BLOCK = 128
SADDLE_RTOL = 1e-8  # the contour's line: K'(-mu) within this of t, or the row is left to Ruben


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
    values: np.ndarray,
    centre: np.ndarray,
    radius2: float,
    *,
    rtol: float = 1e-12,
    max_terms: int = 100_000,
    method: str = "auto",
    work: dict | None = None,
) -> np.ndarray:
    """``log P(||g - y||^2 <= radius2)`` for ``g ~ N(0, U diag(values) U^T)``, per row.

    ``values`` (``..., n``): the eigenvalues of ``Sigma`` (>= 0); ``centre`` (``..., n``): ``U^T y``.
    ``method``: ``'ruben'`` (Ruben's series to a relative error below ``rtol``, a rigorous bound;
    ``RuntimeError`` past ``max_terms`` terms), ``'contour'`` (the Bromwich integral on the vertical
    line through the saddlepoint, geometric convergence to a relative ``rtol``; rows where it does
    not converge in 4e6 nodes go to Ruben, ``max_terms`` terms at most), or ``'auto'``: Ruben where it
    needs at most :data:`RUBEN_TERMS` terms by ``t / (2 min lambda)``, the contour elsewhere and for
    the rows Ruben has not finished in :data:`RUBEN_CAP` terms (a centre far out along small
    eigenvalues puts the series' mass at ``k ~ sum delta^2 / 2``).
    ``-inf`` where the ball misses the support. ``work`` (a dict), if given, counts what was done:
    ``'ruben'`` the series' terms times the dimension, ``'contour'`` the nodes times the dimension,
    summed over rows (each unit is one pass of the inner loop over the eigenvalues of one row), and
    ``'blocks'`` the vectorized blocks of either (each has a fixed cost, whatever its rows).
    """
    if method not in ("auto", "ruben", "contour"):
        raise ValueError(f"method must be 'auto', 'ruben' or 'contour', got {method!r}")
    values = np.atleast_2d(values)
    centre = np.atleast_2d(centre)
    shape = values.shape[:-1]
    values, centre = values.reshape(-1, values.shape[-1]), centre.reshape(-1, centre.shape[-1])
    positive, centre, c0, rank = split_spectrum(values, centre)
    t = radius2 - c0
    out = np.full(values.shape[0], -np.inf)
    auto = method == "auto"
    for dim in np.unique(rank):
        rows = np.flatnonzero((rank == dim) & (t > 0))
        if rows.size == 0:
            continue
        if dim == 0:  # Sigma = 0: g = 0 surely, inside iff c0 < radius2
            out[rows] = 0.0
            continue
        order = np.argsort(positive[rows], axis=-1)[:, -dim:]
        lam = np.take_along_axis(positive[rows], order, axis=-1)
        shift = np.take_along_axis(centre[rows], order, axis=-1)
        # Ruben needs at least t / (2 min lam) terms: cheap for a compact spectrum, hopeless for a
        # spread one. It can need far more (a centre far out along small eigenvalues puts its
        # mixing distribution at k ~ sum delta^2 / 2): under 'auto' a row that has not converged
        # in RUBEN_CAP terms goes to the contour instead
        if auto:
            ruben = 0.5 * t[rows] / lam[:, 0] <= RUBEN_TERMS
        else:
            ruben = np.full(rows.size, method == "ruben")
        if ruben.any():
            value = _ruben(
                lam[ruben], shift[ruben] ** 2 / lam[ruben], t[rows[ruben]], rtol,
                RUBEN_CAP if auto else max_terms, give_up=auto, work=work,
            )  # fmt: skip
            out[rows[ruben]] = value
            ruben[np.flatnonzero(ruben)[np.isnan(value)]] = False
        if (~ruben).any():
            value = _contour(lam[~ruben], shift[~ruben] ** 2, t[rows[~ruben]], rtol, work=work)
            slow = np.isnan(value)
            if slow.any():  # the contour converges slowly for few eigenvalues: Ruben, however long
                hard = np.flatnonzero(~ruben)[slow]
                value[slow] = _ruben(
                    lam[hard], shift[hard] ** 2 / lam[hard], t[rows[hard]], rtol, max_terms, work=work
                )
            out[rows[~ruben]] = value
    return out.reshape(shape)


def log_ball_upper_bound(values: np.ndarray, centre: np.ndarray, radius2: float) -> np.ndarray:
    """Chernoff's bound on :func:`log_ball_probability`, per row: ``P(Q <= t) <= M(s) e^{-s t}`` for
    every ``s <= 0``, taken at the saddlepoint (the best such ``s``), within a few nats of the
    truth. Cheap next to the probability itself: it serves to skip draws whose weight cannot
    matter (:mod:`factorkit.fit.marginal_sampler`)."""
    values = np.atleast_2d(values)
    centre = np.atleast_2d(centre)
    positive, inside, c0, rank = split_spectrum(values, centre)
    t = radius2 - c0
    out = np.where(t > 0, 0.0, -np.inf)
    c2 = inside**2
    rows = np.flatnonzero((t > 0) & ((positive + c2).sum(-1) > t) & (rank > 0))
    if rows.size:
        lam, c2r = positive[rows], c2[rows]
        # null eigenvalues (lam = 0, c2 = 0) add nothing to K: keep them as tiny positive ones
        lam = np.where(lam > 0, lam, 1e-300)
        s = saddlepoint(lam, c2r, t[rows])
        K, _, _ = _cumulants(s, lam, c2r)
        out[rows] = np.minimum(K - s * t[rows], 0.0)
    return out


def _log_gammainc(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``log P(a, x)``, the regularized lower incomplete gamma function, without underflow: SciPy's
    value where it is representable, else its series ``x^a e^-x / Gamma(a + 1) *
    sum_j x^j / ((a + 1) ... (a + j))`` (underflow only happens for ``a > x``, where the series
    converges geometrically)."""
    a, x = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(x, dtype=np.float64))
    value = special.gammainc(a, x)
    out = np.empty(a.shape)
    fine = value > 1e-250
    out[fine] = np.log(value[fine])
    if (~fine).any():
        aa, xx = a[~fine], x[~fine]
        term = np.ones(aa.shape)
        series = np.ones(aa.shape)
        for j in range(1, 5000):
            term = term * xx / (aa + j)
            series += term
            if (term <= 1e-17 * series).all():
                break
        with np.errstate(divide="ignore"):
            out[~fine] = aa * np.log(xx) - xx - special.gammaln(aa + 1) + np.log(series)
    return out


def _log_gammainc_run(first: float, count: int, x: np.ndarray) -> np.ndarray:
    """``log P(first + i, x)`` for ``i = 0 .. count - 1`` (``rows x count``): the last by
    :func:`_log_gammainc`, the others by the downward recurrence
    ``P(a, x) = P(a + 1, x) + x^a e^-x / Gamma(a + 1)`` (positive terms only: stable)."""
    out = np.empty((x.size, count))
    out[:, -1] = _log_gammainc(np.full(x.size, first + count - 1), x)
    log_x = np.log(x)
    for i in range(count - 2, -1, -1):
        a = first + i
        out[:, i] = np.logaddexp(out[:, i + 1], a * log_x - x - special.gammaln(a + 1))
    return out


def _ruben(
    lam: np.ndarray,
    delta2: np.ndarray,
    t: np.ndarray,
    rtol: float,
    max_terms: int,
    give_up: bool = False,
    work: dict | None = None,
) -> np.ndarray:
    """``log P(sum_j lam_j (x_j + delta_j)^2 <= t)`` by Ruben's series, rows of positive ``lam``;
    rows not finished in ``max_terms`` terms raise ``RuntimeError``, or are NaN with ``give_up``.

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
    # log sum_k a_k F_k, accumulated in logs: the chi-square CDFs F_k underflow deep in the tail
    log_total = log_a0 + _log_gammainc(np.full(rows, dim / 2), half_x)
    mass = np.ones(rows)  # sum_k b_k (scaled like b)
    result = np.full(rows, np.nan)
    active = np.arange(rows)
    block = 64
    for start in range(1, max_terms + 1, block):
        stop = min(start + block, max_terms + 1)
        if work is not None:
            work["ruben"] = work.get("ruben", 0) + active.size * (stop - start) * dim
            work["blocks"] = work.get("blocks", 0) + 1
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
                mass[active] *= factor
                log_scale[active] -= np.log(factor)
        log_chi = _log_gammainc_run(dim / 2 + start, stop - start, half_x[active])
        with np.errstate(divide="ignore"):
            log_terms = np.log(coefficients) + log_chi + (log_a0[active] + log_scale[active])[:, None]
        log_total[active] = np.logaddexp(log_total[active], special.logsumexp(log_terms, axis=1))
        mass[active] += coefficients.sum(1)
        # what is left: at most (1 - sum a) * P(chi^2_{N + 2 stop} <= x), the CDF decreasing in k
        log_mass = log_a0[active] + log_scale[active] + np.log(mass[active])
        with np.errstate(divide="ignore"):
            log_left = np.log(-np.expm1(np.minimum(log_mass, 0.0))) + _log_gammainc(
                np.full(active.size, dim / 2 + stop), half_x[active]
            )
        done = log_left <= math.log(rtol) + log_total[active]
        if done.any():
            result[active[done]] = log_total[active[done]]
            keep = ~done
            active, previous, S, T = active[keep], previous[keep], S[keep], T[keep]
            gamma, weight = gamma[keep], weight[keep]
            if active.size == 0:
                return np.minimum(result, 0.0)
    if give_up:
        return np.minimum(result, 0.0)  # NaN where not finished
    raise RuntimeError(
        f"Ruben's series did not converge in {max_terms} terms (eigenvalue spread "
        f"{float((lam.max(1) / lam.min(1)).max()):.3g}, t / beta up to {float(2 * half_x.max()):.3g})"
    )


def _cumulants(s, lam: np.ndarray, c2: np.ndarray):
    """``K(s)``, ``K'(s)``, ``K''(s)`` of ``Q = sum_j lam_j (x_j + delta_j)^2`` (``c2 = lam delta^2``)
    at real ``s`` (one per row, below ``1 / (2 max lam)``)."""
    one = 1.0 - 2.0 * s[:, None] * lam
    K = (-0.5 * np.log(one) + s[:, None] * c2 / one).sum(1)
    K1 = (lam / one + c2 / one**2).sum(1)
    K2 = (2 * lam**2 / one**2 + 4 * lam * c2 / one**3).sum(1)
    return K, K1, K2


def saddlepoint(lam: np.ndarray, c2: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The root ``s < 0`` of ``K'(s) = t`` for rows below the mean (``t < K'(0)``).

    ``log K'(-e^w)`` decreases in ``w`` and is close to linear far out (``K'(s) ~ r / (2|s|)``),
    so Newton's method on it usually converges in a few steps. It need not: where the centre's
    terms ``c2 / (1 - 2 s lam)^2`` hold ``K'`` on a plateau before it falls, Newton from the plateau
    overshoots far past the root and back again, each step inside the bracket (found on deep leaky
    ReLU draws: 100 steps alternating between ``s = -52`` and ``-6e11``). So the bracket kept
    alongside takes a bisection step whenever Newton would leave it *or* would move further than
    half the step before last (Numerical Recipes' ``rtsafe``): never slower than bisection on
    ``w`` in ``[-700, 700]``, machine precision within 100 steps."""
    rows = lam.shape[0]
    lo, hi = np.full(rows, -700.0), np.full(rows, 700.0)  # bracket on w = log(-s): exp stays finite
    w = np.log(np.maximum(0.5 * lam.shape[1], 0.5) / t)
    log_t = np.log(t)
    step_before = np.full(rows, hi - lo)  # the step before last (the bracket's width to begin with)
    step = step_before.copy()
    for _ in range(100):
        s = -np.exp(w)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            _, K1, K2 = _cumulants(s, lam, c2)
            f = np.log(K1) - log_t  # > 0: s too large (w too small)
            newton = -f / (s * K2 / K1)  # Newton's step: -f / f'(w), f' = s K'' / K' < 0
        # a row whose step is below w's rounding has its root (f = 0 included) and stays put: were
        # it to test its proposal against a bracket end it sits on, it would bisect away from it
        done = np.abs(newton) <= 1e-14 * np.maximum(1.0, np.abs(w))
        if done.all():
            break
        lo = np.where(f > 0, w, lo)
        hi = np.where(f < 0, w, hi)
        proposal = w + newton
        bisect = (
            (proposal <= lo)
            | (proposal >= hi)
            | ~np.isfinite(proposal)
            | (np.abs(newton) > 0.5 * np.abs(step_before))
        )
        previous = w
        w = np.where(done, w, np.where(bisect, 0.5 * (lo + hi), proposal))
        step_before, step = step, w - previous
    return -np.exp(w)


def _contour(
    lam: np.ndarray,
    c2: np.ndarray,
    t: np.ndarray,
    rtol: float,
    max_nodes: int = 4_000_000,
    work: dict | None = None,
) -> np.ndarray:
    """:func:`_contour_rows` on :data:`CONTOUR_ROWS` rows at a time: its temporaries (rows x nodes x
    eigenvalues, complex) then stay in cache. Each row's arithmetic is the same either way."""
    out = np.empty(lam.shape[0])
    for first in range(0, lam.shape[0], CONTOUR_ROWS):
        rows = slice(first, first + CONTOUR_ROWS)
        out[rows] = _contour_rows(lam[rows], c2[rows], t[rows], rtol, max_nodes, work)
    return out


def _contour_rows(
    lam: np.ndarray,
    c2: np.ndarray,
    t: np.ndarray,
    rtol: float,
    max_nodes: int = 4_000_000,
    work: dict | None = None,
    block: int = CONTOUR_BLOCK,
) -> np.ndarray:
    """``log P(sum_j lam_j (x_j + delta_j)^2 <= t)`` (``c2 = lam delta^2``) by the Bromwich integral
    of the Laplace transform of the CDF, ``M(-p) / p``, on the vertical line through the saddlepoint.

    ``P(Q <= t) = (1 / pi) int_0^inf Re[exp(p t) M(-p) / p] du`` on ``p = mu + iu`` for any
    ``mu > 0``. At ``mu`` the saddlepoint of ``p t + log M(-p)`` (Daniels, Ann. Math. Statist. 25,
    1954; Helstrom, IEEE Trans. Aerospace Electron. Syst. 19, 1983) the integrand at ``u = 0`` has
    the size of ``P`` and its modulus only decreases along the line (``|M(-mu - iu)| <= M(-mu)``),
    so the trapezoidal rule keeps a *relative* accuracy however small ``P`` is. The integrand is
    analytic in the strip ``|Im u| < mu`` (the pole at ``p = 0``; the branch points
    ``-1 / (2 lam_j)`` lie further), where ``exp(p t)`` grows by at most ``exp(mu t)``: the step
    ``h = 2 pi mu / (log(1 / rtol) + 10 + mu t)`` makes the discretization error ``~ rtol``
    (geometric convergence). The line is followed until the integrand, which decays at least like
    ``u^-(r/2 + 1)`` with ``r`` the eigenvalues already past their scale, bounds the tail below
    ``rtol``. (A parabola bent around the negative axis, Weideman & Trefethen's contour, needs far
    fewer nodes but meets ``exp(-p sum c2)`` growth when the centre lies outside the ball along
    small eigenvalues: tried, and refused for that reason.) Near and above the mean ``mu`` is held
    at ``2 / t`` (``P >= 1/2`` or so, where an absolute accuracy is a relative one).
    """
    rows, dim = lam.shape
    lower = t < (lam + c2).sum(1)
    s_hat = np.zeros(rows)
    solved = np.ones(rows, dtype=bool)
    if lower.any():
        s_hat[lower] = saddlepoint(lam[lower], c2[lower], t[lower])
        # the line must pass through the saddlepoint: elsewhere the integrand's peak can lie
        # hundreds of thousands of nats above P and the sum lose every digit. A row whose root was
        # not found stays NaN (the caller's Ruben takes it), as does one whose sum is not positive
        _, K1, _ = _cumulants(s_hat[lower], lam[lower], c2[lower])
        solved[lower] = np.abs(K1 / t[lower] - 1.0) <= SADDLE_RTOL
    mu = np.maximum(np.where(lower, -s_hat, 0.0), 2.0 / t)
    K, _, _ = _cumulants(-mu, lam, c2)
    peak = K + mu * t - np.log(mu)  # log of the integrand at u = 0
    h = 2 * np.pi * mu / (math.log(1.0 / rtol) + 10.0 + mu * t)
    total = np.zeros(rows)
    active = np.flatnonzero(solved)
    log_result = np.full(rows, np.nan)
    k0 = 0
    while active.size:
        if work is not None:
            work["contour"] = work.get("contour", 0) + active.size * block * dim
            work["blocks"] = work.get("blocks", 0) + 1
        u = np.arange(k0, k0 + block)[None, :] * h[active, None]
        p = mu[active, None] + 1j * u
        one = 1.0 + 2.0 * p[:, :, None] * lam[active, None, :]
        log_m = (-0.5 * np.log(one) - p[:, :, None] * c2[active, None, :] / one).sum(2)
        term = (np.exp(log_m + p * t[active, None] - peak[active, None]) / p).real * mu[active, None]
        if k0 == 0:
            term[:, 0] *= 0.5
        total[active] += term.sum(1) * h[active]
        # |integrand| decreases along the line and falls at least like u^-(r/2 + 1) beyond the
        # scales 1 / (2 lam_j) already passed: the tail is below |f(U)| U / (r / 2)
        U = (k0 + block) * h[active]
        passed = np.maximum(
            (2.0 * lam[active] * U[:, None] >= 1.0 + 2.0 * lam[active] * mu[active, None]).sum(1), 1
        )
        modulus = (
            np.exp(log_m[:, -1].real + mu[active] * t[active] - peak[active]) * mu[active] / np.abs(p[:, -1])
        )
        done = modulus * U / (0.5 * passed) <= 1e-2 * rtol * np.abs(total[active])
        if done.any():
            value = total[active[done]] / np.pi
            with np.errstate(divide="ignore", invalid="ignore"):
                log_result[active[done]] = np.where(
                    value > 0, np.log(value) + peak[active[done]] - np.log(mu[active[done]]), np.nan
                )
            active = active[~done]
        k0 += block
        if k0 >= max_nodes:  # NaN: not converged (too few eigenvalues to make the integrand decay)
            break
    return np.minimum(log_result, 0.0)


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
