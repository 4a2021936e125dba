"""Does the interpolating posterior exist? The tail of the ``eps = 0`` weight under the prior.

At ``eps = 0`` a prior draw of the hidden layers weighs ``w(G) = N(y; 0, Sigma(G))``
(:mod:`factorkit.fit.marginal`) and the interpolating posterior's normalizing constant is
``E_G[w]``. ``w`` is unbounded where ``Sigma(G)`` loses rank with ``y`` still in its range, so
whether ``E_G[w]`` is finite depends on how much prior mass lies near such ``G``. For linear hidden
layers with a Gaussian prior, width ``k >= m'`` and generic (Gaussian) sensing, that mass is
counted by exponents (up to logarithmic factors):

* The rows of ``W = W_d F`` are i.i.d. ``N(0, s_d^2 G)``; if ``G`` (``m' x m'``) has ``j = m' - r``
  eigenvalues of order ``lambda = s^2`` and ``r`` of order one, ``Sigma`` (``n x n``) has
  ``a = n - m r`` eigenvalues of order ``lambda`` when ``n > m r``, and ``w ~ lambda^(-a/2)``
  provided ``y`` lies within ``O(s)`` of the range in the limit: the row space of ``W*`` (rank
  ``r*``) must lie within ``O(s)`` of the range of ``G``, ``r*(m' - r)`` conditions, each costing
  a factor ``s`` of prior probability. So ``r* <= r < m'``.
* ``F = W_{d-1} ... W_1`` has ``j`` singular values of order ``s`` when its ``d - 1`` factors share
  them, ``j_1 + ... + j_{d-1} = j``; a factor's ``j_i`` small singular values cost ``s^(j_i^2)``
  and, in a ``k x k`` factor, aligning them with the ``m'``-dimensional image they act on costs
  ``s^(j_i (k - m'))`` (the first factor, ``k x m'``, pays the same ``s^(j_i (k - m' + j_i))`` as
  Wishart's eigenvalue density). Depth spreads the cost: ``sum j_i^2`` is smallest for an even
  split.

So ``P(w > t)`` falls like ``t^(-alpha)`` with

    alpha = min over r of [ (k - m') j + min sum j_i^2 + r* (m' - r) ] / (n - m r),

``E_G[w]`` (the interpolating posterior) exists iff ``alpha > 1`` (at ``alpha = 1`` the
divergence is logarithmic), and importance weights from the prior have finite variance iff
``alpha > 2``. Where ``alpha <= 1`` the threshold posterior still exists at every ``eps > 0``, but
as ``eps -> 0`` it concentrates on the strata with ``alpha_r < 1``, where ``W``'s rows lie in an
``r``-dimensional space holding ``W*``'s and ``n > m r`` measurements leave one solution,
``W = W*``: G&C's ``eps -> 0`` limit there is the truth (``L_gen -> 0``), not a posterior with a
spread. The paper's problem (``m = m' = 5``, ``n = 15``, rank 1, ``k = 5``): ``alpha`` 2, 1.2, 1,
0.8, 0.8 at depths 2 to 6; at ``k = 10`` every depth has ``alpha >= 3``. The guide's "Does the
interpolating posterior exist?" compares these with Hill's estimates from prior draws.

**Normalized priors** (``W = c G / ||G||_F``, ``c = ||W*||_F`` as :func:`~factorkit.fit.prior.resolve_prior`
sets it; :mod:`factorkit.fit.normalized`) keep the same hidden layers, so the prior's cost of a
stratum is the same; what changes is the count of vanishing directions. ``W`` lives on the sphere
of radius ``c``: inside the range of a rank-``r`` ``G`` the ``n`` measurements and the norm leave
``n - (m r - 1)`` conditions, one more than ``Sigma``'s ``n - m r`` vanishing eigenvalues (the
truth, of norm ``c``, is the one solution there), so ``w ~ lambda^(-(n - m r + 1)/2)`` and

    alpha = min over r of [ (k - m') j + min sum j_i^2 + r* (m' - r) ] / (n - m r + 1).

(Measured: with hidden layers ``s`` away from a rank-``r`` stratum the normalized weight grows
like ``s^-(n - m r + 1)`` where the unnormalized one grows like ``s^-(n - m r)``;
``tests/test_tail.py``.) The paper's depth figures (normalized, ``k = 5``): ``alpha`` 20/11, 12/11,
10/11 at depths 2 to 4: the interpolating posterior exists at depths 2 and 3 only. A target norm
other than ``||W*||`` puts the truth off the sphere; that case is not counted.

Activations that are increasing bijections onto their range (tanh, leaky ReLU with a positive
slope) give ``F = s(W_{d-1} X)`` a continuous positive density on the matrices of their range
whenever ``X`` (the layer's input, ``X = I`` at depth 2) has full column rank, so the last hidden
layer alone brings ``F`` within ``s`` of a stratum at the cost a depth-2 net pays: at depth 2 the
count is the same as for linear layers, and deeper it is an upper bound (``upper``; whatever
else the earlier layers do can only make the tail heavier). ReLU (exact zeros) and other
callables are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from factorkit.fit.prior import Prior
from factorkit.models.deep import DeepFactorization, activation_name
from factorkit.problems.sensing import SensingProblem


@dataclass(frozen=True)
class TailIndex:
    """The tail index ``alpha`` of the ``eps = 0`` weight (``P(w > t) ~ t^-alpha``) and the
    stratum that sets it: ``G`` of ``rank`` r, near which the weight grows like
    ``lambda^(-vanishing / 2)`` (``vanishing`` eigenvalues of ``Sigma`` go to zero; one more
    condition for a normalized prior) and the prior pays ``s^cost`` to come within ``s`` of it
    (``alpha = cost / vanishing``).
    ``alpha = inf`` (rank, vanishing and cost 0) where ``w`` is bounded."""

    alpha: float
    rank: int = 0
    vanishing: int = 0
    cost: int = 0
    upper: bool = False  # alpha is an upper bound on the index (non-linear layers beyond depth 2)

    @property
    def exists(self) -> bool:
        """``E_G[w] < inf`` is shown: the interpolating posterior exists (never for a bound)."""
        return self.alpha > 1 and not self.upper

    @property
    def missing(self) -> bool:
        """``E_G[w] = inf`` is shown: the interpolating posterior does not exist."""
        return self.alpha <= 1

    @property
    def finite_variance(self) -> bool:
        """Importance weights from the prior are shown to have finite variance."""
        return self.alpha > 2 and not self.upper

    @property
    def infinite_variance(self) -> bool:
        """Importance weights from the prior are shown to have an infinite variance that grows as a
        power (``alpha < 2``; a bound below 2 shows it too): their Kish ESS does not grow as the
        draws and their error bars do not hold. At ``alpha = 2`` the variance diverges only
        logarithmically, and that is left to importance sampling."""
        return self.alpha < 2


def spread_cost(small: int, factors: int) -> int:
    """``min sum j_i^2`` over ``factors`` non-negative integers summing to ``small``."""
    if factors < 1:
        raise ValueError(f"factors must be >= 1, got {factors}")
    share, extra = divmod(small, factors)
    return share * share * (factors - extra) + (share + 1) ** 2 * extra


def truth_rank(problem: SensingProblem) -> int:
    """The rank of ``W*``: singular values above ``max(m, m')`` units of roundoff of its dtype
    (relative to the largest; a float32 truth's rank-one matrix has float32-sized others)."""
    truth = problem.W_star.detach().to("cpu")
    tolerance = torch.finfo(truth.dtype).eps * max(truth.shape)
    return int(torch.linalg.matrix_rank(truth.to(torch.float64), rtol=tolerance))


def covered(problem: SensingProblem, model: DeepFactorization, prior: Prior) -> str | None:
    """``None`` where :func:`weight_tail_index` counts the tail, else why not (a sentence)."""
    truth = problem.W_star.detach().to("cpu", torch.float64)
    y = problem.y.detach().to("cpu", torch.float64)
    exact = problem.A.detach().to("cpu", torch.float64).reshape(problem.n, -1) @ truth.reshape(-1)
    if (y - exact).norm() > 1e3 * torch.finfo(problem.y.dtype).eps * max(float(y.norm()), 1e-300):
        # the strata draw their weight from y lying in A of a low-rank space holding W*'s rows
        return "the count assumes y = A(W*) exactly; the problem's measurements are noisy or corrupted"
    if prior.normalize:
        norm = float(truth.norm())
        # the norm the study resolves is the truth's own, computed in the problem's dtype
        if abs(prior.target_norm - norm) > 1e3 * torch.finfo(problem.W_star.dtype).eps * norm:
            return (
                f"the count for a normalized prior assumes target_norm = ||W*|| = {norm:.6g}, "
                f"got {prior.target_norm:.6g} (the truth off the prior's sphere)"
            )
    return _covered(problem.kind, model, prior)


def _covered(kind: str, model: DeepFactorization, prior: Prior) -> str | None:
    if prior.base != "gaussian":
        return f"the count is for Gaussian priors (normalized or not), the prior is {prior.name!r}"
    if model.depth > 1 and not (model.is_linear or bijective(model)):
        return (
            "the count is for linear, tanh or leaky ReLU hidden layers, not "
            f"{activation_name(model.activation)!r} (F needs a positive density near low-rank matrices)"
        )
    if model.depth > 1 and model.width < model.m2:
        return f"width {model.width} < m' = {model.m2}: G is singular for every draw"
    if kind != "gaussian":
        return f"the count assumes generic (Gaussian) measurements, the problem's are {kind!r}"
    return None


def bijective(model: DeepFactorization) -> bool:
    """The activation is an increasing bijection onto its range (module docstring)."""
    name = model.activation if isinstance(model.activation, str) else None
    return name == "tanh" or (name == "leaky_relu" and model.negative_slope > 0)


def weight_tail_index(problem: SensingProblem, model: DeepFactorization, prior: Prior) -> TailIndex | None:
    """The tail index of the ``eps = 0`` weight under the prior (module docstring), or ``None``
    where the count does not apply (:func:`covered`)."""
    if covered(problem, model, prior) is not None:
        return None
    return count_tail_index(model, prior, problem.n, truth_rank(problem))


def count_tail_index(
    model: DeepFactorization, prior: Prior, n: int, rank: int, kind: str = "gaussian"
) -> TailIndex | None:
    """:func:`weight_tail_index` from the sizes alone: ``n`` measurements of kind ``kind`` of a
    truth of rank ``rank`` (what a study's configuration knows before it draws a problem; a
    normalized prior's target norm is taken to be the truth's, as the study resolves it)."""
    if _covered(kind, model, prior) is not None:
        return None
    if model.depth == 1:
        return TailIndex(math.inf)
    m, m2 = model.m, model.m2
    upper = not model.is_linear and model.depth > 2
    # a non-linear net's small singular values come from its last hidden layer alone (a bound)
    excess, factors, target = model.width - m2, 1 if upper else model.depth - 1, rank
    best = TailIndex(math.inf, upper=upper)
    for rank in range(max(target, 0), m2):
        vanishing = n - m * rank + (1 if prior.normalize else 0)  # the sphere: one condition more
        if vanishing <= 0:
            continue
        small = m2 - rank
        cost = excess * small + spread_cost(small, factors) + target * (m2 - rank)
        if cost / vanishing < best.alpha:
            best = TailIndex(cost / vanishing, rank, vanishing, cost, upper)
    return best


def settings_tail_index(settings) -> TailIndex | None:
    """:func:`count_tail_index` at a study cell's settings (a mapping with ``m``, ``m2``, ``width``,
    ``depth``, ``activation``, ``prior``, ``n``, ``rank``, ``measurements`` and, when present,
    ``noise`` and ``outliers``): ``None`` where the count does not apply, noisy or corrupted
    measurements included (the strata need ``y = A(W*)``)."""
    s = settings
    if s.get("noise") or s.get("outliers"):
        return None
    model = DeepFactorization(s["m"], s["m2"], s["width"], s["depth"], s["activation"])
    return count_tail_index(model, Prior.from_name(s["prior"]), s["n"], s["rank"], s["measurements"])


def interpolating_missing(problem: SensingProblem, model: DeepFactorization, prior: Prior) -> str | None:
    """``None`` unless the count shows the interpolating posterior does not exist; then why (a
    sentence for an error message)."""
    return missing_reason(weight_tail_index(problem, model, prior))


def missing_reason(tail: TailIndex | None) -> str | None:
    """``None`` unless ``tail`` shows the interpolating posterior does not exist; then why."""
    if tail is None or not tail.missing:
        return None
    index = "at most " if tail.upper else ""
    return (
        f"the interpolating posterior does not exist here: the eps = 0 weight's mean over the prior "
        f"is infinite (its tail index is {index}{tail.alpha:.3g} <= 1, set by hidden layers of rank "
        f"{tail.rank}, near which it grows like lambda^-{tail.vanishing}/2). As eps -> 0 the G&C posterior "
        f"concentrates there, on W = W* (L_gen -> 0); sample at an eps > 0 (factorkit.fit.tail)"
    )


__all__ = [
    "TailIndex",
    "bijective",
    "count_tail_index",
    "covered",
    "interpolating_missing",
    "missing_reason",
    "settings_tail_index",
    "spread_cost",
    "truth_rank",
    "weight_tail_index",
]
