"""Choose the G&C sampler per problem from a pilot estimate of the prior volume ``V(eps)``.

Rejection is exact and i.i.d. but needs ``n / V(eps)`` draws for ``n`` samples; subset simulation
(:func:`factorkit.fit.smc.subset_simulation`) is exact in distribution at any threshold and costs
about ``runs * N * (1 + K * log V / log p0)`` evaluations, whatever ``V``. A pilot of ``pilot``
prior draws (its own candidate stream, so the choice does not depend on the draws that end up in
the sample) estimates ``V``; the cheaper sampler in loss evaluations then runs until it holds
``target_ess`` effective samples (accepted draws for rejection, the between-run ESS for SMC) or
spends ``max_evaluations``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from factorkit._choices import SAMPLERS
from factorkit._validation import check_choice, check_float, check_int
from factorkit.fit.guess_check import guess_and_check
from factorkit.fit.prior import resolve_prior
from factorkit.fit.result import GuessCheckResult
from factorkit.fit.smc import subset_simulation
from factorkit.models.deep import DeepFactorization
from factorkit.problems.sensing import SensingProblem

PILOT_SEED_OFFSET = 7_000_001
PILOT_DRAWS = 2**16


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
) -> SamplerChoice:
    """Rejection when the pilot accepted something and ``target_ess / V`` draws cost no more than
    SMC's expected evaluations and fit in ``max_evaluations``; SMC otherwise."""
    volume = accepted / draws if accepted else 3.0 / draws
    rejection_draws = target_ess / volume
    smc_evaluations = smc_cost(volume, n_particles, runs, p0, mcmc_steps)
    rejection = bool(accepted) and rejection_draws <= min(smc_evaluations, max_evaluations)
    reason = (
        f"rejection expects {rejection_draws:.3g} draws"
        + ("" if accepted else " (none accepted in the pilot)")
        + f", SMC {smc_evaluations:.3g} evaluations"
    )
    return SamplerChoice(volume, rejection_draws, smc_evaluations, rejection, reason)


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
    p0: float = 0.1,
    mcmc_steps: int = 10,
    chunk_size: int | None = None,
    backend: str = "auto",
    seed: int = 0,
    keep_samples: bool = True,
) -> GuessCheckResult:
    """Sample ``P(w | L_train(w) < eps)`` with rejection or SMC, whichever a pilot says is cheaper.

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
        SMC settings (:func:`~factorkit.fit.smc.subset_simulation`); runs are added ``runs`` at a
        time until the ESS reaches ``target_ess``.
    chunk_size, backend
        Rejection settings.
    seed : int
        Seed of the chosen sampler's stream (the pilot draws from ``seed + PILOT_SEED_OFFSET``).
    keep_samples : bool
        Keep the sampled end-to-end matrices.

    Returns
    -------
    GuessCheckResult
        The chosen sampler's result (``sampler`` names it); ``extra['pilot']`` holds the pilot's
        draws, acceptances, the expected cost of each sampler and the reason of the choice;
        ``wall_time`` includes the pilot.
    """
    target_ess = check_float("target_ess", target_ess, positive=True)
    max_evaluations = check_int("max_evaluations", max_evaluations)
    pilot = check_int("pilot", min(pilot, max_evaluations), minimum=1)
    seed = check_int("seed", seed, minimum=0)
    prior = resolve_prior(prior, problem)
    start = time.perf_counter()
    trial = guess_and_check(
        problem,
        model,
        eps=eps,
        prior=prior,
        max_evaluations=pilot,
        seed=seed + PILOT_SEED_OFFSET,
        keep_samples=False,
        chunk_size=chunk_size,
        backend=backend,
        progress=False,
    )
    choice = choose_sampler(
        trial.accepted,
        trial.evaluations,
        target_ess=target_ess,
        max_evaluations=max_evaluations,
        n_particles=n_particles,
        runs=runs,
        p0=p0,
        mcmc_steps=mcmc_steps,
    )
    if choice.rejection:
        result = guess_and_check(
            problem,
            model,
            eps=eps,
            prior=prior,
            n_samples=math.ceil(target_ess),
            max_evaluations=max_evaluations,
            seed=seed,
            keep_samples=keep_samples,
            chunk_size=chunk_size,
            backend=backend,
            progress=False,
        )
    else:
        result = subset_simulation(
            problem,
            model,
            eps=eps,
            prior=prior,
            n_particles=n_particles,
            p0=p0,
            mcmc_steps=mcmc_steps,
            runs=runs,
            max_evaluations=max_evaluations,
            seed=seed,
            keep_samples=keep_samples,
            min_ess=target_ess,
            total_evaluations=max_evaluations,
        )
    result.wall_time = time.perf_counter() - start
    result.extra["pilot"] = {
        "draws": trial.evaluations,
        "accepted": trial.accepted,
        "rejection_draws": choice.rejection_draws,
        "smc_evaluations": choice.smc_evaluations,
        "reason": choice.reason,
    }
    return result


# the options each sampler takes (beside eps, prior, seed, keep_samples): callers that hold settings for
# every sampler (a study cell, the command line) pass the chosen one what it takes
SAMPLER_OPTIONS = {
    "rejection": ("n_samples", "max_evaluations", "chunk_size", "backend", "progress"),
    "smc": ("n_particles", "p0", "mcmc_steps", "runs"),
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
    """The ``settings`` that ``sampler`` takes (see :data:`SAMPLER_OPTIONS`), the others dropped."""
    wanted = SAMPLER_OPTIONS[check_choice("sampler", sampler, SAMPLERS)]
    return {name: value for name, value in settings.items() if name in wanted}


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
    ``'auto'``: :func:`factorkit.fit.auto.auto_sample`, the cheaper of the two from a pilot
    estimate of ``V(eps)`` (``target_ess``, ``max_evaluations`` and both samplers' options).
    """
    check_choice("sampler", sampler, SAMPLERS)
    function = {"rejection": guess_and_check, "smc": subset_simulation, "auto": auto_sample}[sampler]
    return function(problem, model, eps=eps, **options)
