"""Weights and tempering shared by the marginal samplers (:mod:`factorkit.fit.marginal_sampler`,
:mod:`factorkit.fit.normalized`): log-mean-exp, normalized weights, Kish's ESS, systematic
resampling, the levels of a tempered SMC run (powers of the weight, or the weight capped), and the
pooling of independent runs."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

from factorkit.fit._pooling import log_mean_exp, log_mean_se, pooled_index, systematic_resample
from factorkit.fit.smc import effective_sample_size, extension_bounds, pcn_moves, run_weights, runs_to_add

if TYPE_CHECKING:
    from factorkit.fit.tail import TailIndex

MAX_TEMPERATURES = 10_000
# tempered_runs' effort check: the pCN steps of its longer runs, as a multiple
EFFORT_FACTOR = 4
# what effort_change compares between runs (mean_log_weight where the runs report it)
EFFORT_STATISTICS = ("log_volume", "rb", "mean_log_weight")


def normalized_weights(log_weight: np.ndarray) -> np.ndarray:
    """``w / sum w`` from ``log w`` (all zero weights refused by the callers)."""
    top = log_weight.max()
    w = np.exp(log_weight - top)
    return w / w.sum()


def kish_ess(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of normalized weights."""
    return float(1.0 / np.square(weights).sum()) if weights.size else 0.0


PARETO_K_LIMIT = 0.7
"""The largest Pareto shape (:func:`pareto_k`) of importance weights whose estimates are kept.
Above it the self-normalized estimate converges too slowly to trust whatever its ESS says
(Vehtari et al., "Pareto smoothed importance sampling", JMLR 25, 2024), and on the paper's cells
it shows: ``python benchmarks/bench_pareto_k.py`` (the width figure's ``eps = 0`` cells, widths 5
and 10, seeds 0-3) found shapes 0.05-0.63 at width 10 (one leaky ReLU seed 0.75), 0.60-0.97 at
width 5 (counted tail index 2), and where the shape was above 0.7, the importance estimate of ``L_gen``
2.0-2.7 standard errors from long tempered SMC runs in 4 of 9 cells (higher in 3: the far tail
missed), within 1.4 in the others. ``method='auto'`` hands such a run over to tempered SMC; an
explicit ``method='importance'`` warns."""


def pareto_k(log_weight: np.ndarray) -> float:
    """The shape ``k`` of a generalized Pareto law fitted to the upper tail of the weights
    ``exp(log_weight)``: the weights' tail falls like ``t^(-1/k)``, so their variance is finite for
    ``k < 1/2`` and their mean for ``k < 1``. An empirical check of what Kish's ESS assumes.

    The tail is the ``M = min(S / 5, 3 sqrt S)`` largest of the ``S`` finite weights, over the
    next one (Vehtari et al., "Pareto smoothed importance sampling", JMLR 25, 2024); the fit is
    Zhang & Stephens' ("A new and efficient estimation method for the generalized Pareto
    distribution", Technometrics 51, 2009): the posterior mean of ``theta = -k / sigma`` over a
    grid weighted by the profile likelihood, then ``k`` given ``theta``, shrunk towards 1/2 by a
    prior worth ten exceedances as in PSIS. ``nan`` with fewer than 20 finite weights or a tail of
    ties."""
    values = np.asarray(log_weight, dtype=np.float64)
    values = np.sort(values[np.isfinite(values)])
    count = values.size
    if count < 20:
        return math.nan
    tail = int(math.ceil(min(0.2 * count, 3 * math.sqrt(count))))
    top = values[-1]
    exceed = np.exp(values[-tail:] - top) - math.exp(values[-tail - 1] - top)  # ascending
    if not exceed[-1] > 0:
        return math.nan
    quartile = exceed[int(tail / 4 + 0.5) - 1]
    if not quartile > 0:
        quartile = exceed[exceed > 0][0]
    grid = 30 + int(math.sqrt(tail))
    theta = 1 / exceed[-1] + (1 - np.sqrt(grid / (np.arange(1, grid + 1) - 0.5))) / (3 * quartile)
    shape = np.log1p(-theta[:, None] * exceed[None, :]).mean(1)  # k given theta
    profile = tail * (np.log(-theta / shape) - shape - 1)
    weights = np.exp(profile - profile.max())
    theta_hat = float((theta * weights).sum() / weights.sum())
    k = float(np.log1p(-theta_hat * exceed).mean())
    return (tail * k + 10 * 0.5) / (tail + 10)


def heavy_tail_checked(shape: float, give_up: bool, drawn: int) -> bool:
    """Whether an importance run over ``drawn`` draws whose weights have the Pareto shape ``shape``
    (:func:`pareto_k`) stands: up to :data:`PARETO_K_LIMIT` it does; above it the estimate cannot
    be trusted, so with ``give_up`` (``method='auto'``) the run is handed over to tempered SMC
    (``False``) and an explicit importance run warns and stands."""
    if not shape > PARETO_K_LIMIT:  # nan (too few finite weights) included
        return True
    if give_up:
        return False
    warnings.warn(
        f"importance weights with Pareto shape {shape:.2f} > {PARETO_K_LIMIT} over {drawn} draws: a tail "
        "this heavy leaves the estimate and its error bar untrustworthy (use method='smc')",
        RuntimeWarning, stacklevel=4,
    )  # fmt: skip
    return True


TEMPER_FRACTION = 0.5
"""The share of Kish's ESS the incremental weights of each temperature (:func:`temper`) or noise
level (:func:`~factorkit.fit.noise_path.anneal_noise`) keep."""
HEAVY_TEMPER_FRACTION = 0.8
""":data:`TEMPER_FRACTION` of the normalized prior's ``eps = 0`` tempering where the weight's
counted tail index ``alpha`` is below :data:`HEAVY_TAIL_ALPHA` (:func:`heavy_fraction`): about
1.8x the temperatures. On the paper's depth-3 linear cell (``alpha = 12/11``) 10 moves a
temperature at 0.8 gave the answer of 40 at 0.5 for 0.42x the evaluations, and 40 at 0.8 that of
160 at 0.5 for 0.44x; on the depth-2 cell (``alpha = 20/11``, nearly settled at 10 moves) and on
the Gaussian prior's noise path, no gain per evaluation (``bench_effort.py --fraction``; the
marginal guide's "Deep eps = 0 posteriors")."""
HEAVY_TAIL_ALPHA = 1.5
"""Where the counted tail index of the ``eps = 0`` weight is below this, the posterior's own
log-weight has a long exponential tail: a prior tail ``P(w > t) ~ t^-alpha`` makes the posterior's
``P(log w > s) ~ exp(-(alpha - 1) s)``, ``1 / (alpha - 1)`` nats a decade of ``e`` (11 at
``alpha = 12/11``, 1.2 at 20/11), which tempering has to cross."""


def heavy_fraction(tail: TailIndex | None) -> float | None:
    """:data:`HEAVY_TEMPER_FRACTION` where the counted tail index ``tail.alpha`` (``tail`` from
    :func:`~factorkit.fit.tail.weight_tail_index`; ``None``: not counted) is below
    :data:`HEAVY_TAIL_ALPHA`, else ``None`` (:data:`TEMPER_FRACTION`)."""
    return HEAVY_TEMPER_FRACTION if tail is not None and tail.alpha < HEAVY_TAIL_ALPHA else None


def _largest_kept(low: float, high: float, keeps) -> float:
    """The largest ``x`` in ``[low, high]`` with ``keeps(x)``, by 60 bisections (``keeps(low)``
    taken as true, ``keeps`` monotone)."""
    for _ in range(60):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if keeps(middle) else (low, middle)
    return low


def _planning_draws(log_weight: np.ndarray) -> np.ndarray | None:
    """Prior draws' finite ``log_weight`` shifted to a maximum of 0 (``None``: none finite)."""
    finite = np.isfinite(log_weight)
    if not finite.any():
        return None
    ell = np.asarray(log_weight, dtype=np.float64)[finite]
    return ell - ell.max()


def next_temperature(log_weight: np.ndarray, beta: float, fraction: float) -> float:
    """The next temperature: the largest ``b <= 1`` whose incremental weights
    ``exp((b - beta) log_weight)`` keep Kish's ESS at ``fraction`` of the population (bisection)."""
    finite = np.isfinite(log_weight)

    def ess(step: float) -> float:
        scaled = np.where(finite, step * log_weight, -np.inf)
        return kish_ess(normalized_weights(scaled)) / log_weight.size

    if ess(1.0 - beta) >= fraction:
        return 1.0
    low = _largest_kept(0.0, 1.0 - beta, lambda step: ess(step) >= fraction)
    return beta + max(low, 1e-12)


def expected_temperatures(log_weight: np.ndarray, fraction: float | None = None) -> int:
    """How many temperatures :func:`temper` takes from ``0`` to ``1`` if its moves left a population
    distributed as each tempered target, estimated from prior draws' ``log_weight``: at ``beta``
    the tempered target ``prior * w^beta`` is these draws weighted by ``w^beta``, and the next
    temperature the largest ``beta + d`` whose incremental weights ``w^d`` keep Kish's ESS at
    ``fraction`` of the population there, ``(sum w^(beta+d))^2 / (sum w^beta sum w^(beta+2d))``
    (:func:`next_temperature` on a population that is a sample of the target). The draws' own
    ESS under the later targets is small, so this is a planning figure, not a bound. ``fraction``
    defaults to :data:`TEMPER_FRACTION`, :func:`temper`'s."""
    fraction = TEMPER_FRACTION if fraction is None else fraction
    ell = _planning_draws(log_weight)
    return 0 if ell is None else _expected_powers(ell, 0.0, fraction, lambda beta: 1.0, MAX_TEMPERATURES)


def _expected_powers(log_r: np.ndarray, base, fraction: float, top, limit: int) -> int:
    """The planning count of levels along the targets ``base + beta * log_r`` (log-weights of prior
    draws; ``base`` 0 for the power path, the last capped target for the excess's) from ``beta =
    0`` to 1, at most ``limit``: each step the largest ``d`` up to ``top(beta) - beta`` whose
    increments ``r^d`` keep the ESS ``fraction`` of the draws weighted by the target,
    ``(mean r^(beta+d))^2 / (mean r^beta mean r^(beta+2d))`` with the base weights (the draws'
    count cancels: means, not sums)."""

    def kept(beta: float, step: float) -> float:
        return math.exp(
            2 * log_mean_exp(base + (beta + step) * log_r)
            - log_mean_exp(base + beta * log_r)
            - log_mean_exp(base + (beta + 2 * step) * log_r)
        )

    beta, count = 0.0, 0
    while beta < 1.0 and count < limit:
        count += 1
        most = top(beta)
        if kept(beta, most - beta) >= fraction:
            beta = most
            continue
        beta += max(
            _largest_kept(0.0, most - beta, lambda step, beta=beta: kept(beta, step) >= fraction), 1e-12
        )
    return count


def tempered_runs(
    more, runs: int, target_ess: float, n_particles: int, mcmc_steps: int, check_effort: bool = False,
    generator: torch.Generator | None = None,
) -> dict:  # fmt: skip
    """Independent tempered SMC runs from ``more(count, mcmc_steps)`` (each a dict with ``draws``,
    ``log_volume``, ``levels``, ``evaluations``, ``distinct``): ``runs`` first, then as many as
    :func:`~factorkit.fit.smc.runs_to_add` says until the spread of their means of ``L_gen`` says
    ``target_ess`` (at most 16 times ``max(runs, 8)``); pooled into a state.

    The runs are pooled by their normalizing constants: each run's ``Z_r = exp(log_volume)`` is an
    unbiased estimate and ``Z_r`` times its particle average one of ``Z E[f]``, so ``log V`` is
    ``log mean Z_r`` and the posterior mean of ``L_gen`` is ``sum Z_r m_r / sum Z_r`` over the
    runs' means ``m_r``: consistent as runs are added, where the plain mean of ``m_r`` keeps each
    run's finite-population bias, which a heavy-tailed posterior makes large (runs that find its
    deep mass weigh more, as they should: ``benchmarks/bench_noise_path.py``). The ESS is the
    ratio estimator's (:func:`~factorkit.fit.smc.effective_sample_size` with the runs' weights);
    the draws are resampled to the same weights (``generator``).

    ``check_effort``: before adding runs, run half as many (4 at least) with ``EFFORT_FACTOR`` times
    the pCN steps per temperature and compare (:func:`effort_change`); where the answer moved, warn, keep
    only the longer runs and add runs at their steps (where it did not, both groups are pooled
    and runs are added at the steps of the group whose pooled ESS per loss evaluation was the
    higher: in heavy cells the shorter runs' normalizing constants scatter so much that a few
    longer runs buy more effective samples than many short ones; longer runs added there stop at
    the evaluations the cap of shorter runs would have allowed). Poorly mixing runs agree with each other
    and miss the same mass (they all start from the prior), so the spread between runs cannot see
    it; more effort can. The state's ``effort`` records the comparison, the steps of the runs
    added after it, ``converged`` (the answer did not move) and ``phases``: the runs and loss
    evaluations spent on the first runs, on the check's (kept or not) and on the runs added."""
    chunk, cap = extension_bounds(runs)
    results = more(runs, mcmc_steps)
    checks = []
    phases = {"first": _tally(results)}
    if check_effort:
        longer = more(chunk // 2, EFFORT_FACTOR * mcmc_steps)
        phases["check"] = _tally(longer)
        change = effort_change(results, longer)
        checks.append({"mcmc_steps": [mcmc_steps, EFFORT_FACTOR * mcmc_steps], **change})
        if change["moved"]:
            results, mcmc_steps = longer, EFFORT_FACTOR * mcmc_steps
            moved = ", ".join(
                f"{key} {change[key][0]:.4g} -> {change[key][1]:.4g} ({change[key + '_z']:+.1f} se)"
                for key in EFFORT_STATISTICS
                if key in change
            )
            warnings.warn(
                f"tempered SMC's answer moved when its moves per temperature went from "
                f"{mcmc_steps // EFFORT_FACTOR} to {mcmc_steps} ({moved}; rb: the posterior mean of "
                "L_gen): the runs have not mixed and the estimates are biased, even those of the "
                "longer runs kept; see the guide's 'Deep eps = 0 posteriors'",
                RuntimeWarning,
                stacklevel=4,
            )
        else:
            rates = [_ess_per_evaluation(group, n_particles) for group in (results, longer)]
            checks[-1]["ess_per_evaluation"] = rates
            results += longer
            if rates[1] > rates[0]:  # within the evaluations the shorter runs' cap would have spent
                mcmc_steps = EFFORT_FACTOR * mcmc_steps
                cap = len(results) + max(cap - len(results), 0) // EFFORT_FACTOR

    added = []
    while True:
        ess = _pooled_ess(results, n_particles)
        count = runs_to_add(ess, len(results), target_ess, chunk, cap)
        if not count:
            break
        made = more(count, mcmc_steps)
        added += made
        results += made
    phases["added"] = _tally(added)
    log_volumes = np.array([r["log_volume"] for r in results])
    weights = run_weights(results).numpy()
    rb_groups = [r["draws"]["rb"] for r in results]
    ess = effective_sample_size(rb_groups, results[0]["distinct"], weights)
    means = np.array([float(g.double().mean()) for g in rb_groups])
    rb = float((weights * means).sum())
    # the posterior variance of L_gen given the pooled posterior: the runs' weighted variances
    # about the pooled mean
    spread = sum(
        w * float((g.double() - rb).square().mean()) for w, g in zip(weights, rb_groups, strict=True)
    )
    low = min(level["acceptance"] for r in results for level in r["levels"])
    if low < 0.05:
        warnings.warn(f"pCN acceptance fell to {low:.3f} at some temperature: chains mixed poorly",
                      RuntimeWarning, stacklevel=4)  # fmt: skip
    return {
        "method": "smc",
        "draws": _pooled_draws(results, weights, generator),
        "log_volume": log_mean_exp(log_volumes),
        "log_volume_se": log_mean_se(log_volumes),
        "log_volume_runs": log_volumes.tolist(),
        "run_weights": weights.tolist(),
        "ess": float(ess),
        "evaluations": sum(r["evaluations"] for r in results),
        "weight_spread": float("nan"),
        "rb": rb,
        "rb_se": math.sqrt(spread / max(ess, 1.0)),
        "temperatures": [len(r["levels"]) for r in results],
        "effort": {
            "mcmc_steps": mcmc_steps,
            "checks": checks,
            "converged": not checks or not checks[-1]["moved"],
            "phases": phases,
        },  # fmt: skip
    }


def _pooled_ess(runs: list[dict], n_particles: int) -> float:
    """The ESS of ``runs``' posterior mean of ``L_gen`` pooled by their normalizing constants."""
    return effective_sample_size([r["draws"]["rb"] for r in runs], n_particles, run_weights(runs))


def _ess_per_evaluation(runs: list[dict], n_particles: int) -> float:
    """:func:`_pooled_ess` of ``runs`` per loss evaluation they spent: what a run added at their
    moves per temperature is expected to buy."""
    return float(_pooled_ess(runs, n_particles)) / max(_tally(runs)["evaluations"], 1)


def _tally(runs: list[dict]) -> dict:
    """Runs and their loss evaluations: what one phase of :func:`tempered_runs` spent."""
    return {"runs": len(runs), "evaluations": int(sum(r["evaluations"] for r in runs))}


def _pooled_draws(results: list[dict], weights: np.ndarray, generator) -> dict:
    """The runs' draws as one posterior sample of the same size: every draw of run ``r`` weighs
    ``weights[r]`` over its draws, systematically resampled (``generator``; without one the draws
    are concatenated as they are, each run's share its size)."""
    draws = {key: torch.cat([r["draws"][key] for r in results]) for key in ("W", "train", "gen", "rb")}
    if generator is None:
        return draws
    index = pooled_index(np.array([r["draws"]["rb"].numel() for r in results]), weights, generator)
    return {key: value[index] for key, value in draws.items()}


def effort_change(shorter: list[dict], longer: list[dict], z: float = 3.0) -> dict:
    """Whether two groups of independent runs (the same sampler, ``longer`` with more moves) differ
    in their mean ``log_volume``, posterior mean of ``L_gen`` (``draws['rb']``) or, where the runs
    report it, the final population's mean log-weight (``mean_log_weight``: the most sensitive of
    the three, a posterior expectation that equilibrium fixes) by more than ``z`` combined standard
    errors (each from its runs' spread). Returns each statistic's two means and standardized
    difference (``<key>_z``), and ``moved``."""
    out, moved = {}, False
    runs = shorter + longer
    for key in (k for k in EFFORT_STATISTICS if k == "rb" or all(k in r for r in runs)):
        groups = [
            np.array([_statistic(r, key) for r in group], dtype=np.float64) for group in (shorter, longer)
        ]
        means = [float(g.mean()) for g in groups]
        se = (
            math.sqrt(sum(g.var(ddof=1) / g.size for g in groups))
            if min(g.size for g in groups) > 1
            else math.inf
        )
        score = (means[1] - means[0]) / se if se > 0 else (0.0 if means[0] == means[1] else math.inf)
        out[key], out[f"{key}_z"] = means, score
        moved = moved or bool(abs(score) > z)
    out["moved"] = moved
    return out


def _statistic(run: dict, key: str) -> float:
    """One run's value of an :data:`EFFORT_STATISTICS` entry (``rb``: the mean over its draws)."""
    return float(run["draws"]["rb"].double().mean()) if key == "rb" else float(run[key])


def run_record(value: torch.Tensor, log_volume: float, levels: list, evaluations: int) -> dict:
    """What :func:`tempered_runs` reads of one run besides its draws, from :func:`temper`'s
    outputs (``value``: the final population's log-weights)."""
    return {
        "log_volume": log_volume,
        "levels": levels,
        "evaluations": evaluations,
        "distinct": int(torch.unique(value).numel()),
        "mean_log_weight": float(value.double().mean()),
    }


SINGULAR_RTOL = 1e-4
"""Matrices with a singular value below this times their largest are decomposed by an SVD
(:func:`thin_svd`)."""
SINGULAR_CACHE = True
"""Whether :func:`temper` and the noise path share one :class:`SingularCache` across each block
of consecutive singular-value moves (off: a fresh decomposition every move, the benchmarks'
baseline)."""


def thin_svd(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(values, left, right)``: each matrix of ``u`` (``P x r x c``) as ``left diag(values)
    right^T``, ``q = min(r, c)`` values (descending), ``left`` ``P x r x q``, ``right`` ``P x c x q``.

    From the eigen-decomposition of the smaller Gram matrix (``u^T u`` or ``u u^T``), the other
    vectors as ``u v / s``: 1.4-1.8x an SVD (``benchmarks/bench_singular_pairs.py``). A squared
    singular value carries an absolute error of float64's eps times the largest squared, so a
    matrix with a value below :data:`SINGULAR_RTOL` of its largest (that value's vectors would
    carry errors up to ``eps / SINGULAR_RTOL^2``) is decomposed by an SVD instead."""
    count, rows, cols = u.shape
    tall = rows >= cols
    values, vectors = torch.linalg.eigh(u.transpose(1, 2) @ u if tall else u @ u.transpose(1, 2))
    sv = values.flip(1).clamp_min(0.0).sqrt()
    side = vectors.flip(2)
    scale = sv.clamp_min(torch.finfo(u.dtype).tiny)[:, None, :]  # each column by its value
    other = (u @ side if tall else u.transpose(1, 2) @ side) / scale
    left, right = (other, side) if tall else (side, other)
    poor = sv[:, -1] <= SINGULAR_RTOL * sv[:, 0]
    if bool(poor.any()):
        exact_left, exact_sv, exact_right = torch.linalg.svd(u[poor], full_matrices=False)
        sv[poor], left[poor], right[poor] = exact_sv, exact_left, exact_right.transpose(1, 2)
    return sv, left, right


class SingularCache:
    """Thin SVDs (:func:`thin_svd`) of the matrix latents, per particle and layer, made when a
    particle's matrix is first picked and then kept up to date by the accepted moves: a
    singular-value move keeps the singular vectors and changes one value, so the new matrix's
    decomposition is the old one with that value replaced. A block of ``M`` consecutive moves
    then decomposes each matrix at most once instead of about ``M / layers`` times
    (``benchmarks/bench_singular_pairs.py``, second table). Valid while only
    :func:`singular_value_moves` changes the latents: one cache per block."""

    def __init__(self) -> None:
        self.parts: dict[int, list[torch.Tensor]] = {}  # layer -> [values, left, right, known]

    def triples(self, index: int, u: torch.Tensor, here: torch.Tensor):
        """``(values, left, right)`` of the matrices ``u[here]`` of latent ``index``."""
        if index not in self.parts:
            count, rows, cols = u.shape
            q = min(rows, cols)
            self.parts[index] = [
                u.new_empty(count, q),
                u.new_empty(count, rows, q),
                u.new_empty(count, cols, q),
                torch.zeros(count, dtype=torch.bool),
            ]
        values, left, right, known = self.parts[index]
        need = here[~known[here]]
        if need.numel():
            values[need], left[need], right[need] = thin_svd(u[need])
            known[need] = True
        return values[here], left[here], right[here]

    def accept(self, index: int, rows: torch.Tensor, pick: torch.Tensor, new: torch.Tensor) -> None:
        """The matrices ``rows`` of latent ``index`` had their ``pick``-th value set to ``new``."""
        self.parts[index][0][rows, pick] = new


def singular_value_moves(
    latent, value, log_weight_of, level, spread, target_acceptance, generator, layers=None, cache=None
):
    """One move of matrix latents (``P x r x c`` each; the first ``layers`` of ``latent``, default
    all, the others stay) that scales one singular value of one of them, both chosen uniformly
    per particle, by ``e^t``, ``t ~ N(0, spread^2)``, keeping its singular vectors; the target is
    the standard normal law of all the latents times the weight as ``level`` (a :class:`Power`,
    :class:`Capped` or :class:`Excess` level) takes it, ``w^beta``, ``min(w, e^cap)`` or the
    excess's power above a cap.

    In singular-value coordinates Lebesgue measure on ``r x c`` matrices is ``prod_{a<b} |s_a^2 -
    s_b^2| prod_a s_a^|r - c| ds dU dV``, so the move (its own reverse with ``-t``: the singular
    vectors stay, and the same matrix and value are chosen with the same probability) is accepted
    with the level's log ratio (``beta (log w' - log w)``) plus ``- s_j^2 (e^2t - 1) / 2 + (1 + |r -
    c|) t + sum_{a != j} log(|s_j'^2 - s_a^2| / |s_j^2 - s_a^2|)``. pCN moves every direction at
    once and rarely shrinks one singular value of a layer far enough to reach where deep ``eps = 0``
    posteriors sit (near a low-rank ``F``); this move walks the log of one directly. ``spread``
    adapts as pCN's step does. One weight evaluation per particle. ``cache``: a
    :class:`SingularCache` the caller keeps across consecutive moves (default: a fresh one, every
    matrix decomposed). Returns the latents, values, spread and acceptance rate."""
    count = value.shape[0]
    layers = len(latent) if layers is None else layers
    cache = SingularCache() if cache is None else cache
    layer = torch.randint(layers, (count,), generator=generator)
    t = spread * torch.randn(count, generator=generator, dtype=torch.float64)
    log_q = torch.zeros(count, dtype=torch.float64)
    proposal, changes = [], []
    for index, u in enumerate(latent[:layers]):
        _, rows, cols = u.shape
        chosen = torch.randint(min(rows, cols), (count,), generator=generator)
        here = torch.nonzero(layer == index)[:, 0]  # the particles that move this matrix
        at, pick, step = torch.arange(here.numel()), chosen[here], t[here]
        sv, left_all, right_all = cache.triples(index, u, here)
        left, right = left_all[at, :, pick], right_all[at, :, pick]
        old = sv[at, pick]
        new = old * step.exp()
        others = torch.ones_like(sv, dtype=torch.bool)
        others[at, pick] = False
        squares = sv.square()
        gaps = torch.where(
            others,
            (new[:, None].square() - squares).abs().log() - (old[:, None].square() - squares).abs().log(),
            torch.zeros_like(sv),
        ).sum(1)
        log_q[here] = gaps + (1 + abs(rows - cols)) * step - old.square() * torch.expm1(2 * step) / 2
        # a rank-one change along the chosen singular pair, on the particles that chose it
        rank_one = (new - old)[:, None, None] * left[:, :, None] * right[:, None, :]
        moved = u.clone()
        moved[here] += rank_one
        proposal.append(moved)
        changes.append((here, pick, new))
    log_u = torch.rand(count, generator=generator, dtype=torch.float64).log()
    proposed = log_weight_of(proposal + latent[layers:], None)  # the other latents unchanged
    accept = log_u < level.log_ratio(proposed, value) + log_q
    for index, (here, pick, new) in enumerate(changes):
        taken = accept[here]
        cache.accept(index, here[taken], pick[taken], new[taken])
    latent = [
        torch.where(accept[:, None, None], v, u) for u, v in zip(latent[:layers], proposal, strict=True)
    ] + latent[layers:]
    value = torch.where(accept, proposed, value)
    rate = float(accept.double().mean())
    spread = min(max(spread * math.exp(3.0 * (rate - target_acceptance)), 1e-3), 3.0)
    return latent, value, spread, rate


def singular_cache() -> SingularCache | None:
    """One block's :class:`SingularCache`, or ``None`` (a fresh decomposition every move) while
    :data:`SINGULAR_CACHE` is off."""
    return SingularCache() if SINGULAR_CACHE else None


TEMPER_PATHS = ("capped", "power")
"""The sequences of targets :func:`temper` walks from the prior to ``prior * w``."""


@dataclasses.dataclass(frozen=True)
class Power:
    """The tempered target ``prior * w^beta`` (``beta`` from 0 to 1): the power path."""

    beta: float

    @property
    def last(self) -> bool:
        return self.beta >= 1.0

    def following(self, log_weight: np.ndarray, fraction: float) -> Power:
        return Power(next_temperature(log_weight, self.beta, fraction))

    def increment(self, log_weight: np.ndarray, following: Power) -> np.ndarray:
        """The log incremental weights ``(beta' - beta) log w`` (``-inf`` where ``w = 0``)."""
        return np.where(np.isfinite(log_weight), (following.beta - self.beta) * log_weight, -np.inf)

    def log_ratio(self, proposed: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """The target's log ratio for a move from log-weight ``current`` to ``proposed``."""
        difference = torch.where(
            torch.isfinite(proposed), proposed - current, torch.full_like(proposed, -math.inf)
        )
        return self.beta * difference

    def floor(self, current: torch.Tensor, log_u: torch.Tensor) -> torch.Tensor:
        """The log-weight a proposal must exceed for the Metropolis test ``log_u < log_ratio``."""
        return current + log_u / self.beta

    def record(self) -> dict:
        return {"beta": self.beta}


@dataclasses.dataclass(frozen=True)
class Capped:
    """The target ``prior * min(w, e^cap)`` (``cap`` from ``-inf``, the prior, to ``+inf``,
    ``prior * w``): the capped path.

    Every target is proper (``min(w, e^cap) <= e^cap``), and above its cap it is the prior itself,
    so the particles spread over the whole set ``{w >= e^cap}`` at once, deep strata included;
    a power ``w^beta`` instead keeps the deepest part of a long-tailed weight out of sight until
    ``beta`` is near 1 (the marginal guide's "Deep eps = 0 posteriors"). The incremental weights
    ``min(w, e^cap') / min(w, e^cap)`` are exact, so a run is SMC along another path: unbiased in
    ``V`` and consistent in the posterior as every SMC sampler is. ``alpha``: the weight's tail
    index where it is known (:func:`~factorkit.fit.tail.weight_tail_index`); the path then ends
    with :class:`Excess` levels instead of the jump from its last cap to the uncapped weight."""

    cap: float
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.alpha is not None and not self.alpha > 1:
            raise ValueError(f"alpha (the weight's tail index) must be above 1, got {self.alpha}")

    @property
    def last(self) -> bool:
        return self.cap == math.inf

    def following(self, log_weight: np.ndarray, fraction: float) -> Capped | Excess:
        """The next capped level; where that would be the uncapped weight and ``alpha`` is known,
        the first :class:`Excess` level at this cap instead (from the prior, ``cap = -inf``: the
        power path in bounded steps)."""
        cap = next_cap(log_weight, self.cap, fraction)
        if cap < math.inf or self.alpha is None or not EXCESS_END:
            return Capped(cap, self.alpha)
        return Excess(self.cap, 0.0, self.alpha).following(log_weight, fraction)

    def increment(self, log_weight: np.ndarray, following: Capped | Excess) -> np.ndarray:
        """The log incremental weights ``min(log w, cap') - min(log w, cap)`` (``-inf`` where ``w = 0``;
        from the prior, ``cap = -inf``, the first term alone), or toward an :class:`Excess` level
        at this cap, that level's from ``beta = 0`` (the same target as this one)."""
        if isinstance(following, Excess):
            return Excess(self.cap, 0.0, following.alpha).increment(log_weight, following)
        return _cap_increment(log_weight, self.cap, following.cap)

    def log_ratio(self, proposed: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """The target's log ratio for a move from log-weight ``current`` to ``proposed``."""
        return torch.where(
            torch.isfinite(proposed),
            proposed.clamp(max=self.cap) - current.clamp(max=self.cap),
            torch.full_like(proposed, -math.inf),
        )

    def floor(self, current: torch.Tensor, log_u: torch.Tensor) -> torch.Tensor:
        """The log-weight a proposal must exceed for the Metropolis test ``log_u < log_ratio``
        (below the cap, so exceeding it is the capped test's condition)."""
        return current.clamp(max=self.cap) + log_u

    def record(self) -> dict:
        return {"cap": self.cap}


EXCESS_END = True
"""Whether a capped path that knows the weight's tail index ends with :class:`Excess` levels (off:
it jumps from its last cap to the uncapped weight, the path before 2026-12-08, the benchmarks'
baseline)."""
EXCESS_TAIL = 4.0
"""The tail index each :class:`Excess` level's increments keep at the least: a step from ``beta``
is at most ``(alpha - beta) / EXCESS_TAIL``. At 4 the increments have a finite third moment, so
their mean over a population is normal at the Berry-Esseen rate. On the pole ``w = |x|^-0.75``
(``python benchmarks/bench_excess_end.py pole --excess-tail ...``, 40 repetitions of the pole
test) the standardized errors of ``log Z`` and of the pole's share had means +0.36 and -0.44
(standard deviations 0.92 and 0.99) at 4; at 2.22 (0.9 of the finite-variance step, the first
version) -0.61 and -1.48 (1.35 and 1.12); at 3 -0.25 and -1.01 (1.33 and 1.31); at 8 +0.77 and
-0.02, for 1.8x the evaluations of 4."""


@dataclasses.dataclass(frozen=True)
class Excess:
    """The target ``prior * min(w, e^cap) * r^beta``, ``r = w / min(w, e^cap)`` the weight's excess
    over the cap (``beta`` from 0, the capped target, to 1, ``prior * w``): how the capped path
    ends where the weight's tail is heavy.

    Under the prior ``P(w > t)`` falls as ``t^-alpha`` (``alpha``, the tail index, above 1 for a
    proper posterior), so under the target at ``beta`` the increment ``r^d`` toward ``beta + d``
    has the tail index ``(alpha - beta) / d``: a finite second moment exactly when ``beta + 2 d <
    alpha``. Where ``alpha <= 2`` the capped path's own last step (``d = 1`` from ``beta = 0``) has
    an infinite one, and a finite population's importance step underweights the mass above the
    last cap however long its moves (``benchmarks/README.md``, "The particles, not the moves").
    Each step here is the largest that keeps the ESS fraction and an increment tail index of
    :data:`EXCESS_TAIL` at the least, ``d <= (alpha - beta) / EXCESS_TAIL``: ``log(1 - 1 / alpha)
    / log(1 - 1 / EXCESS_TAIL)`` levels at the least (8 at ``alpha = 8/7``, 9 at 12/11).

    ``cap = -inf`` (a capped path whose first step would already be the uncapped weight): ``r``
    is ``w`` itself up to a constant factor, and the targets are ``prior * w^beta``, the power
    path in steps the same bound keeps."""

    cap: float
    beta: float
    alpha: float

    @property
    def last(self) -> bool:
        return self.beta >= 1.0

    def _log_target(self, log_weight: torch.Tensor) -> torch.Tensor:
        finite = torch.isfinite(log_weight)
        if self.cap == -math.inf:  # prior * w^beta
            inside = self.beta * torch.where(finite, log_weight, torch.zeros_like(log_weight))
        else:
            inside = log_weight.clamp(max=self.cap) + self.beta * (log_weight - self.cap).clamp(min=0)
        return torch.where(finite, inside, torch.full_like(log_weight, -math.inf))

    def bound(self) -> float:
        """The largest next ``beta`` whose increment keeps the tail index :data:`EXCESS_TAIL`."""
        return self.beta + (self.alpha - self.beta) / EXCESS_TAIL

    def following(self, log_weight: np.ndarray, fraction: float) -> Excess:
        excess = _excess(log_weight, self.cap)
        beta = next_temperature(excess, self.beta, fraction)
        return Excess(self.cap, min(beta, self.bound(), 1.0), self.alpha)

    def increment(self, log_weight: np.ndarray, following: Excess) -> np.ndarray:
        """The log incremental weights ``(beta' - beta) log r`` (``-inf`` where ``w = 0``)."""
        return (following.beta - self.beta) * _excess(log_weight, self.cap)

    def log_ratio(self, proposed: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """The target's log ratio for a move from log-weight ``current`` to ``proposed``."""
        return torch.where(
            torch.isfinite(proposed),
            self._log_target(proposed) - self._log_target(current),
            torch.full_like(proposed, -math.inf),
        )

    def floor(self, current: torch.Tensor, log_u: torch.Tensor) -> torch.Tensor:
        """The log-weight a proposal must exceed for the Metropolis test ``log_u < log_ratio``: the
        inverse of the target's log, ``t`` below the cap and ``cap + (t - cap) / beta`` above
        (``t / beta`` without a cap)."""
        target = self._log_target(current) + log_u
        if self.beta <= 0:
            return torch.where(target <= self.cap, target, torch.full_like(target, math.inf))
        if self.cap == -math.inf:
            return target / self.beta
        return torch.where(target <= self.cap, target, self.cap + (target - self.cap) / self.beta)

    def record(self) -> dict:
        return {"cap": self.cap, "beta": self.beta}


def _excess(log_weight: np.ndarray, cap: float) -> np.ndarray:
    """``log r = max(log w - cap, 0)`` (``log w`` itself at ``cap = -inf``), ``-inf`` where ``w = 0``."""
    finite = np.isfinite(log_weight)
    if cap == -math.inf:
        return np.where(finite, log_weight, -np.inf)
    return np.where(finite, np.maximum(np.where(finite, log_weight, cap) - cap, 0.0), -np.inf)


def _cap_increment(log_weight: np.ndarray, cap: float, following: float) -> np.ndarray:
    finite = np.isfinite(log_weight)
    base = np.minimum(log_weight, cap) if cap > -math.inf else 0.0
    return np.where(finite, np.minimum(log_weight, following) - base, -np.inf)


def next_cap(log_weight: np.ndarray, cap: float, fraction: float) -> float:
    """The next level of the capped path: the largest ``cap' > cap`` (``inf`` where the uncapped
    weight does) whose incremental weights ``min(w, e^cap') / min(w, e^cap)`` keep Kish's ESS at
    ``fraction`` of the population (bisection on ``log_weight``'s range)."""
    finite = np.isfinite(log_weight)

    def ess(following: float) -> float:
        return kish_ess(normalized_weights(_cap_increment(log_weight, cap, following))) / log_weight.size

    if ess(math.inf) >= fraction:
        return math.inf
    low, high = max(cap, float(log_weight[finite].min())), float(log_weight[finite].max())
    return _largest_kept(low, high, lambda following: ess(following) >= fraction)


def expected_caps(log_weight: np.ndarray, fraction: float | None = None, alpha: float | None = None) -> int:
    """How many levels the capped path (:class:`Capped`) takes from the prior to ``prior * w`` if
    its moves left each population distributed as its target, estimated from prior draws'
    ``log_weight`` as :func:`expected_temperatures` does for the power path: at ``cap`` the
    target is these draws weighted by ``a = min(w, e^cap)``, and the increment ``b / a``
    (``b = min(w, e^cap')``) keeps the ESS fraction ``(mean b)^2 / (mean a * mean(b^2 / a))``.
    With the tail index ``alpha`` the path ends with :class:`Excess` levels where it would jump
    to the uncapped weight, each counted the same way (``a`` the draws' weights under that level's
    target, the increment ``r^d``) and at most its step :data:`EXCESS_TAIL` allows."""
    fraction = TEMPER_FRACTION if fraction is None else fraction
    ell = _planning_draws(log_weight)
    if ell is None:
        return 0

    def kept(a: np.ndarray, b: np.ndarray) -> float:  # from log target a to log target b
        return math.exp(2 * log_mean_exp(b) - log_mean_exp(a) - log_mean_exp(2 * b - a))

    cap, count = -math.inf, 0
    while cap < math.inf and count < MAX_TEMPERATURES:
        count += 1
        a = _capped_log_weight(ell, cap)
        if kept(a, ell) >= fraction:
            break
        low = _largest_kept(
            max(cap, float(ell.min())), 0.0,
            lambda following, a=a: kept(a, np.minimum(ell, following)) >= fraction,
        )  # fmt: skip
        if low <= cap:  # no level keeps the fraction: the schedule is stuck (an empty tail)
            return count
        cap = low
    if alpha is None or not EXCESS_END:
        return count
    count -= 1  # the jump's level: the excess levels replace it

    def top(beta: float) -> float:
        return min(Excess(cap, beta, alpha).bound(), 1.0)

    limit = MAX_TEMPERATURES - count
    return count + _expected_powers(_excess(ell, cap), _capped_log_weight(ell, cap), fraction, top, limit)


def _capped_log_weight(log_weight: np.ndarray, cap: float) -> np.ndarray:
    """``min(log w, cap)``, the capped target's log-weight (0, the prior's, at ``cap = -inf``)."""
    return np.minimum(log_weight, cap) if cap > -math.inf else np.zeros_like(log_weight)


def temper(log_weight_of, latent, n_particles, mcmc_steps, target_acceptance, generator, *, nothing, screen,
           matrices: int = 0, fraction: float | None = None, path: str = "power",
           tail_alpha: float | None = None):  # fmt: skip
    """One tempered SMC run on standard-normal ``latent`` (a list of tensors, ``n_particles``
    rows each) toward the smooth log-weight ``log_weight_of(latent, floor)``: levels that keep
    ``fraction`` of the population's ESS, systematic resampling, pCN moves with a Metropolis test.
    ``path``: ``'power'`` walks the targets ``prior * w^beta`` (:class:`Power`), ``'capped'`` the
    targets ``prior * min(w, e^cap)`` (:class:`Capped`), ending with :class:`Excess` levels where
    ``tail_alpha``, the weight's tail index, is given (above 1; ignored by the power path).
    ``screen``: pass each proposal the floor its log-weight must reach to be accepted (draws below
    it may come back ``-inf`` uncomputed); ``nothing``: the error when no particle has a finite
    weight; ``matrices``: how many of the first latents are matrices; where there are any, half of
    the ``mcmc_steps`` moves per level are :func:`singular_value_moves` of those (after the pCN
    moves), the other half pCN's; ``fraction``: the ESS share each level keeps (default
    :data:`TEMPER_FRACTION`). Returns the final ``latent``, their log-weights (uncapped), ``log V``
    (the sum of the levels' log mean incremental weights), the levels (each with its ``beta``,
    ``cap`` or both) and the weight evaluations."""
    if path not in TEMPER_PATHS:
        raise ValueError(f"path must be one of {TEMPER_PATHS}, got {path!r}")
    scale_moves = mcmc_steps // 2 if matrices else 0
    mcmc_steps -= scale_moves
    fraction = TEMPER_FRACTION if fraction is None else fraction
    value = log_weight_of(latent, None)
    evaluations = n_particles
    level = Power(0.0) if path == "power" else Capped(-math.inf, tail_alpha)
    log_volume, step, spread = 0.0, 0.5, 1.0
    levels = []
    while not level.last:
        if not bool(torch.isfinite(value).any()):
            raise RuntimeError(nothing)
        if len(levels) >= MAX_TEMPERATURES:
            message = f"tempering did not reach its last level in {MAX_TEMPERATURES} steps ({level})"
            raise RuntimeError(message)
        ell = value.numpy()
        following = level.following(ell, fraction)
        increment = level.increment(ell, following)
        log_volume += log_mean_exp(increment)
        index = torch.from_numpy(systematic_resample(normalized_weights(increment), n_particles, generator))
        latent = [u[index] for u in latent]
        value = value[index]
        level = following

        def metropolis(proposal, current, level=level):
            # with ``screen``, a proposal whose bound is below the floor cannot be accepted and
            # need not be computed
            log_u = torch.rand(n_particles, generator=generator, dtype=torch.float64).log()
            proposed = log_weight_of(proposal, level.floor(current, log_u).numpy() if screen else None)
            return log_u < level.log_ratio(proposed, current), proposed

        moved = pcn_moves(latent, value, metropolis, step, mcmc_steps, target_acceptance, generator)
        latent, value, step, acceptance = moved
        evaluations += n_particles * mcmc_steps
        cache = singular_cache()  # the block of scale moves shares one decomposition per matrix
        for _ in range(scale_moves):
            latent, value, spread, _ = singular_value_moves(
                latent, value, log_weight_of, level, spread, target_acceptance, generator, matrices, cache
            )
        evaluations += n_particles * scale_moves
        levels.append({**level.record(), "log_volume": log_volume, "acceptance": acceptance, "step": step})
    return latent, value, log_volume, levels, evaluations


__all__ = [
    "Capped",
    "EFFORT_FACTOR",
    "EXCESS_END",
    "EXCESS_TAIL",
    "Excess",
    "Power",
    "TEMPER_PATHS",
    "expected_caps",
    "next_cap",
    "PARETO_K_LIMIT",
    "heavy_tail_checked",
    "pareto_k",
    "expected_temperatures",
    "MAX_TEMPERATURES",
    "effort_change",
    "run_record",
    "kish_ess",
    "SingularCache",
    "singular_value_moves",
    "thin_svd",
    "log_mean_exp",
    "next_temperature",
    "HEAVY_TAIL_ALPHA",
    "HEAVY_TEMPER_FRACTION",
    "heavy_fraction",
    "TEMPER_FRACTION",
    "normalized_weights",
    "systematic_resample",
    "temper",
    "tempered_runs",
]
