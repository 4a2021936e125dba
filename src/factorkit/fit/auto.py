"""Choose the G&C sampler per problem from pilots.

Rejection is exact and i.i.d. but needs ``n / V(eps)`` draws for ``n`` samples; subset simulation
(:func:`factorkit.fit.smc.subset_simulation`) is exact in distribution at any threshold and costs
about ``runs * N * (1 + K * log V / log p0)`` evaluations, whatever ``V``. Where the output layer
is Gaussian, :func:`factorkit.fit.marginal_sampler.marginal_sample` integrates it out: each
hidden-layer draw costs an eigen-decomposition and, where its weight can matter, a ball
probability whose work grows with the spread of the spectrum (deep nets: hundreds of SMC
evaluations' time a draw), and carries a smooth weight: wide nets at any eps, and eps = 0, are its
ground; deep narrow ones, where the weights degenerate, often SMC's. A pilot of ``pilot`` prior
draws (its own candidate stream, so the choice does not depend on the draws that end up in the
sample) estimates ``V``, and a pilot of :data:`MARGINAL_PILOT` hidden-layer draws the effective
samples per draw of the marginal sampler and its work per draw; the cheapest sampler then runs
until it holds ``target_ess`` effective samples or spends ``max_evaluations``. Costs are counted
(evaluations, draws, terms of the ball probability's series and nodes of its contour, priced by
constants fitted once on the reference machine: ``benchmarks/bench_auto_prices.py``), not timed,
so the choice is the same on every machine.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch

from factorkit._choices import SAMPLERS
from factorkit._validation import check_choice, check_float, check_int
from factorkit.fit.guess_check import guess_and_check
from factorkit.fit.hidden import HiddenLayers
from factorkit.fit.marginal import OutputLayerIntegral, applies
from factorkit.fit.marginal_sampler import (
    FIRST_BATCH,
    HIDDEN_DRAWS,
    excess_alpha,
    first_analysis,
    kish_ess,
    marginal_sample,
    normalized_weights,
    resolve_path,
)
from factorkit.fit.prior import resolve_prior
from factorkit.fit.result import GuessCheckResult
from factorkit.fit.smc import P0, REFERENCE_RUNS, extension_bounds, subset_simulation
from factorkit.fit.tail import interpolating_missing, weight_tail_index
from factorkit.fit.weights import EFFORT_FACTOR, expected_caps, expected_temperatures
from factorkit.models.deep import DeepFactorization
from factorkit.problems.sensing import SensingProblem

PILOT_SEED_OFFSET = 7_000_001
PILOT_DRAWS = 2**16
MARGINAL_PILOT = 1024
SMC_EVALUATION_COST = 2.3
"""Rejection evaluations one SMC loss evaluation costs in seconds: SMC moves small populations
through sequential pCN steps, rejection evaluates large reparametrized batches (measured 5x at
depth 10 width 5 and 8-100x at depth 2 width 160 with the joint pCN kernel,
``benchmarks/bench_marginal.py speed``; the low end is taken, so the choice leans to SMC only where
it is clearly cheaper). The layer-by-layer kernel (``smc.MOVES``) costs 0.44-0.47x the joint one
per evaluation at depth 10 width 5 (``benchmarks/bench_auto_prices.py smc`` with and without
``--moves joint``, one session): 5 x 0.46."""
SMC_PARAMETER_US = 0.0031
"""Microseconds one SMC loss evaluation costs per weight of the model (one thread of the reference
2-core machine): the forward product and the loss. With :data:`SMC_LAYER_US`, fitted on 24 cells of
the paper's width and depth figures, widths 5-160, depths 2-10, each within 0.78-1.19x
(``benchmarks/bench_auto_prices.py smc``)."""
SMC_LAYER_US = 0.0051
"""Microseconds one SMC loss evaluation costs per weight of the layer it moves (a layer's share of
the weights on average): the pCN proposal's normal draws and arithmetic (:data:`SMC_PARAMETER_US`)."""
MARGINAL_RUN_US = 55_000.0
"""Microseconds of a marginal run whatever its draws: the posterior draws of ``W`` (a thousand
exact draws of ``g`` in the ball and of ``W`` given it). Fitted with the three below on the 71
cells of the unnormalized depth figure and the width figures that the marginal sampler finishes in
under 30,000 draws (``benchmarks/bench_auto_prices.py``: 54.5 ms, 81.6 us, 0.0155 us, 0.054 us;
each run's time from its own counts within 0.59-1.30x)."""
MARGINAL_DRAW_US = 80.0
"""Microseconds per hidden-layer draw (at least a first batch of 1,024), its ball probabilities
aside: the draw, its Gram matrix, the covariance of the measurements and its eigen-decomposition,
the Chernoff bound, its Rao-Blackwellized conditional mean."""
MARGINAL_RUBEN_US = 0.015
"""Microseconds per term of Ruben's series and eigenvalue (``OutputLayerIntegral.work['ruben']``)."""
MARGINAL_CONTOUR_US = 0.055
"""Microseconds per contour node and eigenvalue (``OutputLayerIntegral.work['contour']``)."""


def smc_evaluation_us(model) -> float:
    """Microseconds of one SMC loss evaluation of ``model`` on the reference machine."""
    weights = model.n_parameters()
    return SMC_PARAMETER_US * weights + SMC_LAYER_US * weights / model.depth


def marginal_us(draws: float, work: dict) -> float:
    """Microseconds of a marginal run of ``draws`` hidden-layer draws on the reference machine (at
    least :data:`~factorkit.fit.marginal_sampler.FIRST_BATCH`), given ``work`` per draw
    (``OutputLayerIntegral.work`` over the draws it counted)."""
    balls = MARGINAL_RUBEN_US * work["ruben"] + MARGINAL_CONTOUR_US * work["contour"]
    return MARGINAL_RUN_US + max(draws, FIRST_BATCH) * MARGINAL_DRAW_US + draws * balls


def smc_cost(volume: float, n_particles: int, runs: int, p0: float, mcmc_steps: int) -> float:
    """Loss evaluations of ``runs`` subset-simulation runs down to prior volume ``volume``."""
    levels = max(1, math.ceil(math.log(volume) / math.log(p0)))
    return runs * n_particles * (1 + mcmc_steps * levels)


@dataclass(frozen=True)
class SamplerChoice:
    """What a pilot of ``draws`` prior draws with ``accepted`` acceptances says (:func:`choose_sampler`)."""

    volume: float
    """``V(eps)``: the pilot's acceptance rate, or its 95% upper bound ``3 / draws`` with none."""
    rejection_draws: float
    smc_evaluations: float
    rejection: bool
    reason: str
    sampler: str = ""
    """``'rejection'``, ``'smc'`` or ``'marginal'``."""
    marginal_evaluations: float = math.nan
    """The marginal sampler's expected cost in loss evaluations (NaN where it does not apply)."""


def choose_sampler(
    accepted: int,
    draws: int,
    *,
    target_ess: float,
    max_evaluations: int,
    n_particles: int,
    runs: int,
    p0: float,
    mcmc_steps: int,
    marginal_evaluations: float = math.nan,
) -> SamplerChoice:
    """The sampler expected to reach ``target_ess`` in the least time, counted in rejection's loss
    evaluations (an SMC evaluation as :data:`SMC_EVALUATION_COST`, the marginal sampler as the SMC
    evaluations that take as long, :class:`MarginalCost`: counts and constants, so the choice is
    the same on every machine): rejection
    (``target_ess / V`` draws, only when the pilot accepted something and they fit in
    ``max_evaluations``), SMC, and the marginal sampler where it applies (``marginal_evaluations``
    not NaN; its effective samples counted by Kish's ESS of the hidden-layer weights, before the
    Rao-Blackwellization that makes each worth more: a choice that leans towards SMC)."""
    volume = accepted / draws if accepted else 3.0 / draws
    rejection_draws = target_ess / volume
    # priced at 8 runs at least, whatever the first batch: what the ESS target typically takes
    # (fewer runs to start with only stop early where they already reach it)
    smc_evaluations = smc_cost(volume, n_particles, max(runs, REFERENCE_RUNS), p0, mcmc_steps)
    costs = {"smc": SMC_EVALUATION_COST * smc_evaluations}  # in rejection evaluations
    if not math.isnan(marginal_evaluations):
        costs["marginal"] = marginal_evaluations
    other = min(costs, key=costs.get)
    rejection = bool(accepted) and rejection_draws <= min(costs[other], max_evaluations)
    reason = (
        f"rejection expects {rejection_draws:.3g} draws"
        + ("" if accepted else " (none accepted in the pilot)")
        + "".join(f", {'SMC' if k == 'smc' else k} {v:.3g} evaluations" for k, v in costs.items())
    )
    sampler = "rejection" if rejection else other
    return SamplerChoice(
        volume, rejection_draws, smc_evaluations, rejection, reason, sampler, marginal_evaluations
    )


@dataclass(frozen=True)
class MarginalCost:
    """What the marginal sampler's pilot predicts (:func:`marginal_cost`)."""

    method: str
    """``'exact'`` (depth 1), ``'importance'`` or ``'tempered'`` (no pilot draw carried weight,
    importance would need more than :data:`~factorkit.fit.marginal_sampler.HIDDEN_DRAWS` draws, or
    at ``eps = 0`` the weight's variance is infinite: the sampler goes to tempered SMC then)."""
    draws: float
    """Hidden-layer draws the run analyses: what the target ESS needs by the pilot's ESS per draw,
    or the tempered SMC's particles times its moves (:func:`planned_temperatures`; at ``eps = 0``
    with its effort check)."""
    microseconds: float
    """The run's time on the reference machine (:func:`marginal_us`; a tempered run's draws all
    exact, at the pilot's work per exact probability)."""
    evaluations: float
    """The same in rejection evaluations, ``choose_sampler``'s unit: as many SMC evaluations of the
    model as take that time (:func:`smc_evaluation_us`), times :data:`SMC_EVALUATION_COST`."""
    pilot_microseconds: float
    """The pilot's own time on the reference machine (the planner's floor for a run: a first batch
    of draws at the pilot's price per draw)."""


def _eps_zero_tail(problem, model, prior, eps: float):
    """The ``eps = 0`` weight's counted tail index (:func:`~factorkit.fit.tail.weight_tail_index`;
    ``None`` at ``eps > 0`` or where not counted): where it says the variance is infinite the
    sampler skips importance sampling (``method='auto'``), and it picks the tempered runs' path
    (:func:`~factorkit.fit.marginal_sampler.resolve_path`)."""
    return weight_tail_index(problem, model, prior) if eps == 0 else None


def tempered_draws(
    n_particles: int, runs: int, mcmc_steps: int, check_effort: bool, temperatures: int = 10
) -> float:
    """Hidden-layer draws of the marginal sampler's tempered SMC over ``temperatures``
    temperatures: ``max(runs, 8)`` runs, and with ``check_effort`` (its default at ``eps = 0``)
    the check's half chunk of runs at :data:`~factorkit.fit.weights.EFFORT_FACTOR` times the moves
    (:func:`~factorkit.fit.weights.tempered_runs`). Runs added beyond these are not priced."""
    per_run = n_particles * (1 + mcmc_steps * temperatures)
    check = extension_bounds(runs)[0] // 2 * n_particles * (1 + EFFORT_FACTOR * mcmc_steps * temperatures)
    return float(max(runs, REFERENCE_RUNS) * per_run + (check if check_effort else 0))


def planned_temperatures(
    log_weight,
    ess: float,
    fraction: float | None = None,
    path: str = "power",
    tail_alpha: float | None = None,
) -> int:
    """The levels a tempered run is priced at: :func:`~factorkit.fit.weights.expected_temperatures`
    (``path='power'``) or :func:`~factorkit.fit.weights.expected_caps` (``'capped'``, with the
    excess's levels where ``tail_alpha`` is given) of the pilot's
    log-weights plus one (measured: the runs took 5-7 where it says 4-5, the pilot's draws
    under-representing the tails that set the last temperatures), or ten where no pilot draw
    carried weight (``ess < 2``: nothing to read the schedule from). ``fraction``: the run's ESS share
    a level (default :data:`~factorkit.fit.weights.TEMPER_FRACTION`)."""
    if ess < 2:
        return 10
    if path == "capped":
        return expected_caps(log_weight, fraction, tail_alpha) + 1
    return expected_temperatures(log_weight, fraction) + 1


def _planned_run(
    log_weight,
    heavy: bool,
    *,
    target_ess: float,
    n_particles: int,
    runs: int,
    mcmc_steps: int,
    check_effort: bool,
    fraction: float | None = None,
    path: str = "power",
    tail_alpha: float | None = None,
) -> tuple[str, float]:
    """The way and the hidden-layer draws a marginal run is priced at, from its pilot's
    ``log_weight`` (:data:`MARGINAL_PILOT` draws): importance sampling for a quarter more draws
    than the pilot's ESS per draw says the target needs (the sampler's batches ask for as much),
    unless that is more than :data:`~factorkit.fit.marginal_sampler.HIDDEN_DRAWS`, no pilot draw
    carries weight, or the weights are ``heavy`` (infinite variance: the sampler skips importance
    sampling); tempered SMC otherwise (:func:`tempered_draws` over :func:`planned_temperatures` at
    ``fraction`` along ``path``, told ``tail_alpha``)."""
    ess = kish_ess(normalized_weights(log_weight)) if math.isfinite(float(log_weight.max())) else 0.0
    if ess >= 2 and not heavy:
        draws = 1.25 * target_ess * MARGINAL_PILOT / ess
        if draws <= HIDDEN_DRAWS:
            return "importance", draws
    temperatures = planned_temperatures(log_weight, ess, fraction, path, tail_alpha)
    return "tempered", tempered_draws(n_particles, runs, mcmc_steps, check_effort, temperatures)


def marginal_cost(
    problem, model, prior, eps: float, *, target_ess: float, n_particles: int, runs: int, mcmc_steps: int,
    seed: int,
) -> MarginalCost:  # fmt: skip
    """The expected cost of :func:`~factorkit.fit.marginal_sampler.marginal_sample`, from a pilot
    of :data:`MARGINAL_PILOT` hidden-layer draws analysed as the sampler analyses its first batch
    (:func:`~factorkit.fit.marginal_sampler.first_analysis`): its effective samples per draw give
    the draws the target needs, its counted work per draw their price (:func:`marginal_us`). Where
    that needs more than the sampler's most draws, where no pilot draw carries weight, and at
    ``eps = 0`` where the weight's variance is infinite (its counted tail index below 2: the
    sampler skips importance sampling there), the run is priced as tempered SMC
    (:func:`tempered_draws`, over :func:`planned_temperatures`; at ``eps = 0`` with its effort
    check). Counted, not timed: the same choice on every machine."""
    hidden = HiddenLayers(model, prior)
    smc_us = smc_evaluation_us(model)
    if hidden.kind == "identity":  # depth 1: exact, one analysis
        us = MARGINAL_RUN_US  # one analysis, then the posterior draws
        return MarginalCost("exact", 1.0, us, SMC_EVALUATION_COST * us / smc_us, us)
    integral = OutputLayerIntegral(problem.to(device="cpu", dtype=torch.float64), model, prior, eps)
    generator = torch.Generator().manual_seed(seed + PILOT_SEED_OFFSET)
    gram = hidden.gram(hidden.draw(MARGINAL_PILOT, generator), MARGINAL_PILOT)
    log_weight = first_analysis(integral, gram).log_weight
    per_draw = {name: count / MARGINAL_PILOT for name, count in integral.work.items()}
    pilot_us = marginal_us(MARGINAL_PILOT, per_draw) - MARGINAL_RUN_US  # draws only
    tail = _eps_zero_tail(problem, model, prior, eps)
    path = resolve_path("auto", eps, tail)
    method, draws = _planned_run(
        log_weight, tail is not None and tail.infinite_variance, target_ess=target_ess,
        n_particles=n_particles, runs=runs, mcmc_steps=mcmc_steps, check_effort=eps == 0,
        path=path, tail_alpha=excess_alpha(path, eps, tail),
    )  # fmt: skip
    if method == "importance":
        us = marginal_us(draws, per_draw)
    elif eps == 0:  # every move of every particle is a Gaussian density: no ball probability
        us = MARGINAL_RUN_US + draws * MARGINAL_MOVE_US
    else:  # every move of every particle is an exact probability
        exact = max(integral.work["exact"], 1)
        us = marginal_us(draws, {name: count / exact for name, count in integral.work.items()})
    return MarginalCost(method, draws, us, SMC_EVALUATION_COST * us / smc_us, pilot_us)


MARGINAL_MOVE_US = 6.0
"""Microseconds of one weight evaluation inside the marginal sampler's tempered SMC at ``eps = 0``
(the moves of the hidden latents and the log density ``log N(y; 0, Sigma(F))`` of each; no ball
probability to count): 6.0 us pooled over the 115 tempered ``eps = 0`` rows of ``study paper
--zero-depth`` (widths 5 and 10; median 6.8, 4.3-10.3 by row; 2026-12-07, twenty-first
session). It replaced the importance sampler's price per draw (:data:`MARGINAL_DRAW_US`, 80 us:
that draw carries the posterior draws' work, which a tempered move does not), which priced
these rows 5-15x above their measured time. ``eps > 0`` moves keep the counted price (each is
an exact ball probability)."""


NORMALIZED_DRAW_US = 55.0
"""Microseconds of one hidden-layer draw weighed by :class:`~factorkit.fit.normalized.Directions`'
estimate (the draw, its Gram matrix, its 64 directions drawn and evaluated) on the reference
machine, one thread: 49.8-60.2 us on 1,024 draws of the depth figure's depth-2 linear net, best of
five, scaled by the planner's probe (``paper.probe_us``) read before and after (2026-12-07,
twenty-first session). It had been 25.0, timed on the estimate without the draws and before the
estimate's later changes; the pilot's own time (``pilot_microseconds``) is this times its 1,024
draws."""
NORMALIZED_MOVE_US = 47.0
"""Microseconds of one weight evaluation inside the normalized sampler's tempered SMC (the
singular-value and pCN moves of the hidden latents with their weights): 22.5 s for 402,000
evaluations on the same cell, seed 0, with the 64 directions' estimate (``normalized_cost``); with
the exact weight (:meth:`~factorkit.fit.normalized.Directions.exact_log_weight`, 2026-12-07) 62 us
over the 32 rows of ``study paper --zero-depth`` (50-80 by row) on a machine then 1.02-1.27x
slower than the reference, so the constant stood at 56. With that weight through NumPy (twenty-second
session) the study's depth-2 linear rows took 42.8-43.6 us against the twenty-first session's
51.9 on the same machine, two at once (``python benchmarks/bench_auto_prices.py probe``): 56 times
their ratio. Runs added beyond the first ``runs`` and the effort check are not priced
(:func:`tempered_draws`)."""


def normalized_cost(
    problem, model, prior, *, target_ess: float, n_particles: int, runs: int, mcmc_steps: int, seed: int
) -> MarginalCost:
    """The expected cost of the normalized prior's ``eps = 0`` sampler
    (:func:`~factorkit.fit.normalized.normalized_zero_sample`, ``method='auto'``), priced as
    :func:`marginal_cost` prices the Gaussian reduction: a pilot of :data:`MARGINAL_PILOT` hidden
    draws weighed by :class:`~factorkit.fit.normalized.Directions`, their ESS per draw for
    importance sampling, and tempered SMC with its effort check (:func:`tempered_draws`) where that
    needs more than its most draws or the weight's variance is infinite (along the sampler's
    default path, :func:`~factorkit.fit.marginal_sampler.resolve_path`); the times per draw and
    per tempered evaluation are :data:`NORMALIZED_DRAW_US` and :data:`NORMALIZED_MOVE_US`.
    ``evaluations`` is in ``choose_sampler``'s unit."""
    from factorkit.fit.normalized import Directions, NormalizedInterpolation

    hidden = HiddenLayers(model, replace(prior, normalize=False))
    smc_us = smc_evaluation_us(model)
    pilot_us = MARGINAL_PILOT * NORMALIZED_DRAW_US
    if hidden.kind == "identity":  # depth 1: every direction weighs the same
        price = SMC_EVALUATION_COST * MARGINAL_RUN_US / smc_us
        return MarginalCost("exact", 1.0, MARGINAL_RUN_US, price, pilot_us)
    target = NormalizedInterpolation(problem.to(device="cpu", dtype=torch.float64), model, prior)
    directions = Directions(target)
    generator = torch.Generator().manual_seed(seed + PILOT_SEED_OFFSET)
    gram = hidden.gram(hidden.draw(MARGINAL_PILOT, generator), MARGINAL_PILOT)
    log_weight = directions.evaluate(gram, directions.draw(MARGINAL_PILOT, generator))[0]
    tail = weight_tail_index(problem, model, prior)
    path = resolve_path("auto", 0.0, tail)
    method, draws = _planned_run(
        log_weight, tail is not None and tail.infinite_variance, target_ess=target_ess,
        n_particles=n_particles, runs=runs, mcmc_steps=mcmc_steps, check_effort=True,
        path=path, tail_alpha=excess_alpha(path, 0.0, tail),
    )  # fmt: skip
    if method == "importance":
        us = MARGINAL_RUN_US + max(draws, FIRST_BATCH) * NORMALIZED_DRAW_US
    else:
        us = MARGINAL_RUN_US + draws * NORMALIZED_MOVE_US
    return MarginalCost(method, draws, us, SMC_EVALUATION_COST * us / smc_us, pilot_us)


def auto_sample(
    problem,
    model,
    *,
    eps: float,
    prior="gaussian",
    target_ess: float = 200,
    max_evaluations: int = 100_000_000,
    pilot: int = PILOT_DRAWS,
    n_particles: int = 500,
    runs: int = 8,
    p0: float = P0,
    mcmc_steps: int = 10,
    chunk_size: int | None = None,
    backend: str = "auto",
    seed: int = 0,
    keep_samples: bool = True,
) -> GuessCheckResult:
    """Sample ``P(w | L_train(w) <= eps)`` with rejection, the marginal sampler or SMC, whichever the
    pilots say is cheapest (module docstring): the marginal sampler only where the output layer is
    Gaussian and the prior not normalized (``extra['pilot']['marginal']`` says why not elsewhere).
    ``eps = 0`` (the interpolating posterior) only by the marginal sampler.

    Parameters
    ----------
    problem, model, eps, prior
        As for :func:`factorkit.fit.guess_and_check`.
    target_ess : float
        Effective sample size to reach.
    max_evaluations : int
        Most loss evaluations of the chosen sampler (the pilot's come on top); rejection is chosen
        only if it is expected to reach ``target_ess`` within it.
    pilot : int
        Prior draws of the pilot estimate of ``V(eps)``.
    n_particles, runs, p0, mcmc_steps
        SMC settings (:func:`~factorkit.fit.smc.subset_simulation`): ``runs`` to start with, more
        added (up to ``max(runs, 8)`` at a time) until the ESS reaches ``target_ess`` (raised while
        fewer than 8 runs make its estimate noisy: :func:`~factorkit.fit.smc.ess_goal`); SMC is
        priced at 8 runs at least.
    chunk_size, backend
        Rejection settings.
    seed : int
        Seed of the chosen sampler's stream (the pilots draw from ``seed + PILOT_SEED_OFFSET``).
    keep_samples : bool
        Keep the sampled end-to-end matrices.

    Returns
    -------
    GuessCheckResult
        The chosen sampler's result (``sampler`` names it); ``extra['pilot']`` holds the pilot's
        draws, acceptances, the expected cost of each sampler and the reason of the choice;
        ``wall_time`` includes the pilot.
    """
    eps = check_float("eps", eps, nonnegative=True)
    target_ess = check_float("target_ess", target_ess, positive=True)
    max_evaluations = check_int("max_evaluations", max_evaluations)
    pilot = check_int("pilot", min(pilot, max_evaluations), minimum=1)
    seed = check_int("seed", seed, minimum=0)
    prior = resolve_prior(prior, problem)
    why_not = applies(model, prior, eps)
    if eps == 0 and why_not is not None:
        raise ValueError(f"eps = 0 needs the marginal sampler, which does not apply here: {why_not}")
    missing = interpolating_missing(problem, model, prior) if eps == 0 else None  # before any pilot
    if missing is not None:
        raise ValueError(f"eps = 0: {missing}")
    start = time.perf_counter()
    smc_settings = {"n_particles": n_particles, "runs": runs, "mcmc_steps": mcmc_steps}
    marginal = (
        None if why_not is not None or prior.normalize  # normalized: eps = 0, no other choice
        else marginal_cost(problem, model, prior, eps, target_ess=target_ess, seed=seed, **smc_settings)
    )  # fmt: skip
    marginal_evaluations = math.nan if marginal is None else marginal.evaluations
    trial = None
    if eps > 0:
        trial = guess_and_check(problem, model, eps=eps, prior=prior, max_evaluations=pilot,
                                seed=seed + PILOT_SEED_OFFSET, keep_samples=False, chunk_size=chunk_size,
                                backend=backend, progress=False)  # fmt: skip
    choice = choose_sampler(
        trial.accepted if trial else 0,
        trial.evaluations if trial else 1,
        target_ess=target_ess,
        max_evaluations=max_evaluations,
        p0=p0,
        marginal_evaluations=marginal_evaluations,
        **smc_settings,
    )
    if eps == 0:  # neither rejection nor SMC reaches it, whatever they would cost
        choice = replace(choice, sampler="marginal", rejection=False)
    if choice.sampler == "rejection":
        result = guess_and_check(problem, model, eps=eps, prior=prior, n_samples=math.ceil(target_ess),
                                 max_evaluations=max_evaluations, seed=seed, keep_samples=keep_samples,
                                 chunk_size=chunk_size, backend=backend, progress=False)  # fmt: skip
    elif choice.sampler == "marginal":
        # the run is the one priced: importance sampling, where the pilot predicted it, does not
        # fall back to tempered SMC (whose cost the choice did not weigh: 100x and more on deep
        # leaky ReLU cells); it stops at its most hidden draws and warns if the ESS falls short
        priced = eps > 0 and marginal is not None and marginal.method == "importance"
        result = marginal_sample(problem, model, eps=eps, prior=prior, target_ess=target_ess, seed=seed,
                                 keep_samples=keep_samples, method="importance" if priced else "auto",
                                 **smc_settings)  # fmt: skip
    else:
        result = subset_simulation(problem, model, eps=eps, prior=prior, p0=p0,
                                   max_evaluations=max_evaluations, seed=seed,
                                   keep_samples=keep_samples, min_ess=target_ess,
                                   total_evaluations=max_evaluations, **smc_settings)  # fmt: skip
    result.wall_time = time.perf_counter() - start
    result.extra["pilot"] = {
        "draws": trial.evaluations if trial else 0,
        "accepted": trial.accepted if trial else 0,
        "rejection_draws": choice.rejection_draws if trial else math.inf,
        "smc_evaluations": choice.smc_evaluations,
        "marginal_evaluations": marginal_evaluations,
        "marginal_method": None if marginal is None else marginal.method,
        "reason": choice.reason if trial else "eps = 0: only the marginal sampler reaches it",
        "marginal": why_not or "applies",
    }
    return result


# the options each sampler takes (beside eps, prior, seed, keep_samples): callers that hold settings for
# every sampler (a study cell, the command line) pass the chosen one what it takes
SAMPLER_OPTIONS = {
    "rejection": ("n_samples", "max_evaluations", "chunk_size", "backend", "progress"),
    "smc": ("n_particles", "p0", "mcmc_steps", "runs", "moves"),
    "marginal": ("n_samples", "target_ess", "n_particles", "runs", "mcmc_steps", "method", "hidden_draws"),
    "auto": (
        "n_particles",
        "p0",
        "mcmc_steps",
        "runs",
        "chunk_size",
        "backend",
        "target_ess",
        "max_evaluations",
    ),
}


def sampler_options(sampler: str, **settings) -> dict:
    """The ``settings`` that ``sampler`` takes (see :data:`SAMPLER_OPTIONS`), the others dropped;
    ``None`` means "the sampler's default" except for rejection, where it means "no limit"."""
    wanted = SAMPLER_OPTIONS[check_choice("sampler", sampler, SAMPLERS)]
    return {
        name: value
        for name, value in settings.items()
        if name in wanted and (value is not None or sampler == "rejection")
    }


def sample_posterior(
    problem: SensingProblem,
    model: DeepFactorization,
    *,
    eps: float,
    sampler: str = "rejection",
    **options,
) -> GuessCheckResult:
    """Sample the G&C posterior with the sampler named ``sampler``.

    ``'rejection'``: :func:`guess_and_check` (any prior; ``n_samples``, ``max_evaluations``,
    ``chunk_size``, ``backend``...). ``'smc'``: :func:`factorkit.fit.smc.subset_simulation`
    (Gaussian priors; ``n_particles``, ``p0``, ``mcmc_steps``, ``runs``...), exact in
    distribution at thresholds rejection cannot reach, with an estimate of ``log V(eps)``.
    ``'marginal'``: :func:`factorkit.fit.marginal_sampler.marginal_sample` (a Gaussian output layer,
    integrated out: exact volumes and posteriors at any ``eps``, ``0`` included; ``target_ess``,
    ``method``...). ``'auto'``: :func:`factorkit.fit.auto.auto_sample`, the cheapest from pilots
    (``target_ess``, ``max_evaluations`` and the samplers' options).
    """
    check_choice("sampler", sampler, SAMPLERS)
    function = {"rejection": guess_and_check, "smc": subset_simulation, "marginal": marginal_sample,
                "auto": auto_sample}[sampler]  # fmt: skip
    return function(problem, model, eps=eps, **options)
