"""The marginal G&C sampler: the output layer integrated out (:mod:`factorkit.fit.marginal`).

Given the hidden layers, the G&C acceptance is a number ``P(accept | G)`` and the accepted output
layer has a Gaussian law restricted to a ball; what is left to sample is the hidden layers,
weighted by ``P(accept | G)`` (at ``eps = 0`` by the density ``N(y; 0, Sigma_gg)``). Three ways:

* ``'exact'`` (depth 1): there are no hidden layers; ``V(eps)`` is one evaluation of the ball
  probability, with no Monte Carlo error, and the posterior draws are i.i.d.
* ``'importance'``: prior draws of the hidden layers, self-normalized weights ``P(accept | G_p)``.
  ``V(eps)`` is the mean weight (unbiased, standard error from the weights' spread), the
  posterior is resampled from the weighted draws (systematic resampling), the effective sample
  size is Kish's ``(sum w)^2 / sum w^2``. Draws are added in batches until the ESS reaches
  ``target_ess`` or ``hidden_draws`` are spent.
* ``'smc'``: when the weights degenerate (deep nets, tiny eps, eps = 0), ``runs`` independent
  tempered SMC runs over the hidden layers' latents (:class:`~factorkit.fit.hidden.HiddenLayers`):
  the target ``prior(u) * P(accept | G(u))^beta`` walks from ``beta = 0`` to ``1``, each step
  chosen so the incremental weights keep an ESS of half the population, then systematic
  resampling and ``mcmc_steps`` pCN moves accepted by the Metropolis test on ``beta * (log P' - log
  P)`` (reversible for the tempered target, Cotter et al. 2013). Each run's ``log V`` is the sum of
  the log mean incremental weights; the runs are pooled by those normalizing constants
  (:func:`~factorkit.fit.weights.tempered_runs`: ``log mean V_r``, the ratio estimator of the
  posterior mean, its ESS from the runs' spread). At ``eps = 0``, ``path='capped'`` (the default at
  ``eps = 0`` where the weight's counted tail index is below 1.5) walks ``prior * min(w, e^cap)``
  instead, ``cap`` rising from ``-inf`` to the last cap, then tempers the excess over it
  (:class:`~factorkit.fit.weights.Excess`); ``path='noise'`` replaces the powers of the
  weight by measurement noise annealed to 0 (:mod:`factorkit.fit.noise_path`).

``'auto'`` runs importance sampling when its first batch projects ``target_ess`` within
``hidden_draws``, SMC otherwise, and hands a finished importance run over to SMC where its weights'
Pareto shape is above :data:`~factorkit.fit.weights.PARETO_K_LIMIT` (0.7: a tail too heavy for its
estimate to be trusted); at ``eps = 0`` it goes to SMC directly where the weight's counted
tail index is below 2 (:attr:`~factorkit.fit.tail.TailIndex.infinite_variance`: importance weights
whose ESS stalls and whose error bars do not hold). Every posterior draw ``W`` is then completed
exactly (a ball draw of ``g``, Matheron's rule for ``W``), its ``L_gen`` computed exactly, and the
Rao-Blackwellized ``E[L_gen | G, g]`` (closed form) gives the reported posterior mean
(``extra['gen_loss_rb']``): importance sampling averages it over *every* weighted hidden draw (one
exact ``g`` each), with no resampling noise and the self-normalized estimator's standard error.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch
from scipy import stats

from factorkit._validation import check_choice, check_float, check_int, make_generator
from factorkit.fit.hidden import HiddenLayers
from factorkit.fit.marginal import Analysis, OutputLayerIntegral, applies
from factorkit.fit.noise_path import anneal_noise
from factorkit.fit.normalized import normalized_zero_sample
from factorkit.fit.prior import resolve_prior
from factorkit.fit.result import GuessCheckResult
from factorkit.fit.tail import TailIndex, missing_reason, weight_tail_index
from factorkit.fit.weights import (
    HEAVY_TAIL_ALPHA,
    heavy_fraction,
    heavy_tail_checked,
    kish_ess,
    log_mean_exp,
    normalized_weights,
    pareto_k,
    run_record,
    systematic_resample,
    temper,
    tempered_runs,
)
from factorkit.models.deep import DeepFactorization
from factorkit.problems.sensing import SensingProblem

METHODS = ("auto", "importance", "smc")
PATHS = ("auto", "capped", "noise", "power")


def resolve_path(path: str, eps: float, tail: TailIndex | None) -> str:
    """The tempered runs' path ``marginal_sample`` takes for ``path``: ``'auto'`` is ``'capped'`` at
    ``eps = 0`` where the weight's counted tail index ``tail.alpha`` is below
    :data:`~factorkit.fit.weights.HEAVY_TAIL_ALPHA` (the posterior's ``log w`` has a tail of
    ``1 / (alpha - 1)`` nats, 2 or more), ``'power'`` elsewhere; any other name as given."""
    check_choice("path", path, PATHS)
    if path != "auto":
        return path
    heavy = eps == 0 and tail is not None and tail.alpha < HEAVY_TAIL_ALPHA
    return "capped" if heavy else "power"


def excess_alpha(path: str, eps: float, tail: TailIndex | None) -> float | None:
    """The tail index the tempered runs are told (:func:`~factorkit.fit.weights.temper`'s
    ``tail_alpha``): the counted ``tail.alpha`` on the capped path at ``eps = 0``, which then ends
    by tempering the weight's excess over its last cap (:class:`~factorkit.fit.weights.Excess`);
    ``None`` elsewhere (at ``eps > 0`` the weight is a probability, bounded)."""
    return tail.alpha if path == "capped" and eps == 0 and tail is not None else None


# hidden-layer draws whose Chernoff bound lies this many nats below the largest weight are not
# computed: together they weigh less than draws * e^-50 (2e-22 per draw) of the total
SCREEN_NATS = 50.0
FIRST_BATCH = 1024
HIDDEN_DRAWS = 2**18
"""Most hidden-layer draws of importance sampling (``marginal_sample``'s ``hidden_draws``)."""


def marginal_sample(
    problem: SensingProblem,
    model: DeepFactorization,
    *,
    eps: float,
    prior="gaussian",
    method: str = "auto",
    n_samples: int = 1000,
    target_ess: float = 200,
    hidden_draws: int = HIDDEN_DRAWS,
    n_particles: int = 500,
    runs: int = 8,
    mcmc_steps: int = 10,
    target_acceptance: float = 0.3,
    check_effort: bool | None = None,
    path: str = "auto",
    seed: int | torch.Generator = 0,
    keep_samples: bool = True,
) -> GuessCheckResult:
    """Sample ``P(w | L_train(w) <= eps)`` with the Gaussian output layer integrated out.

    Parameters
    ----------
    problem, model, prior
        As for :func:`factorkit.fit.guess_and_check`; the output layer must be Gaussian, and a
        normalized prior is covered at ``eps = 0`` only (the interpolating posterior, by the
        reduction of :mod:`factorkit.fit.normalized`); :func:`factorkit.fit.marginal.applies`
        says why not elsewhere.
    eps : float
        Threshold, ``>= 0``; ``0`` is the interpolating posterior (``A(W) = y`` exactly), refused
        (``ValueError``) where :func:`factorkit.fit.tail.weight_tail_index` shows it does not
        exist (its normalizing constant is infinite: deep narrow linear nets).
    method : {'auto', 'importance', 'smc'}
        How the hidden layers are sampled (module docstring); depth 1 needs neither (``'exact'``).
    n_samples : int
        Posterior draws of ``W`` for importance sampling and depth 1 (SMC returns its particles).
    target_ess : float
        Effective sample size importance sampling runs to, and SMC adds runs to.
    hidden_draws : int
        Most hidden-layer draws of importance sampling.
    n_particles, runs, mcmc_steps, target_acceptance
        Tempered SMC: population per run, independent runs to start with (more are added, as
        many as the ESS per run says are missing, up to 16 times ``max(runs, 8)``, while the ESS
        is below ``target_ess``, raised with fewer than 8 runs: :func:`factorkit.fit.smc.ess_goal`),
        pCN steps per temperature, and the acceptance rate the pCN step adapts to.
    check_effort : bool or None
        Tempered SMC only: also run half as many runs (4 at least) with ``EFFORT_FACTOR`` (4) times
        ``mcmc_steps`` and compare (:func:`factorkit.fit.weights.tempered_runs`); where the
        answer moved, warn and keep the longer runs; where it did not, keep both and add runs at
        the steps whose runs bought more effective samples per evaluation. ``None`` (default):
        at ``eps = 0``, where the weight is a density that deep posteriors make hard to mix (the
        guide's "Deep eps = 0 posteriors"); ``extra['effort']`` records the comparison.
    path : {'auto', 'capped', 'power', 'noise'}
        Tempered SMC's sequence of targets. ``'power'`` raises the weight to a power ``beta`` from
        0 to 1. ``'capped'`` caps it, ``prior * min(w, e^cap)`` with ``cap`` rising from ``-inf``
        to ``+inf`` (:class:`~factorkit.fit.weights.Capped`): every target is flat above its cap,
        so the particles reach the deep strata of a long-tailed weight early (any ``eps``, any prior
        the sampler covers). At ``eps = 0`` it ends by tempering the weight's excess over its last
        cap in steps its counted tail index bounds (:class:`~factorkit.fit.weights.Excess`),
        where a jump to the uncapped weight would leave a population-size bias (the guide's "The
        excess end"). ``'auto'`` (default): ``'capped'`` at ``eps = 0`` where the weight's
        counted tail index is below :data:`~factorkit.fit.weights.HEAVY_TAIL_ALPHA` (1.5),
        ``'power'`` elsewhere (:func:`resolve_path`): on the paper's cells below 1.5 the capped runs
        passed the effort check in 37 of 40 rows (39 ending with the jump, whose bias the check
        cannot see) where the power path's passed in 16, and their medians of ``L_gen`` stand
        5-22% below the jump's, as larger populations say they should; elsewhere the
        power path took 0.51-0.97x the capped path's evaluations for answers within the seeds'
        spread (the marginal guide's "The capped path"). ``'noise'`` (``eps = 0``, unnormalized
        priors) adds Gaussian measurement noise whose variance falls a decade a level to 0
        (:mod:`factorkit.fit.noise_path`): where the weight's tail index is below 2 the posterior's
        mass spreads over decades of the weight's depth, and this path follows it further for the
        same moves a level, at about three times the levels a run
        (``benchmarks/bench_noise_path.py``). Not the default: per second it wins on some cells and
        not on others, and the study's ``eps = 0`` rows would cost several times more.
    seed : int or torch.Generator
    keep_samples : bool
        Keep the posterior draws of ``W``.

    Returns
    -------
    GuessCheckResult
        ``sampler='marginal'``; ``accepted`` counts the posterior draws, ``evaluations`` the
        hidden-layer draws whose weight was computed. ``extra``: ``method``, ``log_volume`` and
        ``log_volume_se`` (``eps > 0``), ``log_density`` (``eps = 0``: ``log E[N(y; 0, Sigma_gg)]``,
        the limit of ``V(eps)`` over the volume of the ball of radius ``sqrt(n eps)``), ``ess``
        (Kish's, of the hidden-layer weights, capped at ``n_samples``; SMC: between runs) and
        ``kish_ess`` (not capped), ``weight_spread`` (the largest normalized weight: ``1 / draws``
        when flat, 1 when one draw carries everything), ``pareto_k`` (importance sampling: the
        Pareto shape of the weights' tail, :func:`~factorkit.fit.weights.pareto_k`; ``nan``
        otherwise), ``gen_loss_rb`` (the posterior mean of ``L_gen``, Rao-Blackwellized over every
        weighted draw), its standard error
        ``gen_loss_rb_se`` and interval ``gen_loss_rb_ci``, and ``ess_gen_loss``: the i.i.d.
        posterior draws that would estimate that mean as well; tempered SMC adds
        ``log_volume_runs``, ``run_weights`` (each run's share of the pool: its normalizing
        constant's), ``temperatures`` (levels per run) and ``effort`` (``check_effort``'s comparison).
        Unnormalized priors add ``tail_index``: the counted tail index of the ``eps = 0`` weight
        under the prior (:mod:`factorkit.fit.tail`; ``nan`` where it is not counted, an upper
        bound for tanh and leaky ReLU nets deeper than 2; ``<= 2``: importance weights of
        infinite variance).
    """
    eps = check_float("eps", eps, nonnegative=True)
    check_choice("method", method, METHODS)
    n_samples = check_int("n_samples", n_samples)
    target_ess = check_float("target_ess", target_ess, positive=True)
    hidden_draws = check_int("hidden_draws", hidden_draws)
    n_particles = check_int("n_particles", n_particles, minimum=2)
    runs = check_int("runs", runs)
    mcmc_steps = check_int("mcmc_steps", mcmc_steps)
    target_acceptance = check_float("target_acceptance", target_acceptance)
    if check_effort is not None and not isinstance(check_effort, bool):
        raise TypeError(f"check_effort must be True, False or None, got {check_effort!r}")
    if not 0 < target_acceptance < 1:
        raise ValueError(f"target_acceptance must be in (0, 1), got {target_acceptance}")
    check = eps == 0 if check_effort is None else check_effort
    check_choice("path", path, PATHS)
    prior = resolve_prior(prior, problem)
    if path == "noise" and (eps != 0 or prior.normalize):
        raise ValueError(
            f"path='noise' anneals the measurement noise to the eps = 0 posterior of an unnormalized "
            f"prior; got eps = {eps:g} and a {'normalized' if prior.normalize else 'unnormalized'} "
            "prior (use path='power' or 'capped')"
        )
    model.check_fits(problem.shape)
    problem64 = problem.to(device="cpu", dtype=torch.float64)
    tail = weight_tail_index(problem, model, prior)
    path = resolve_path(path, eps, tail)
    tail_alpha = excess_alpha(path, eps, tail)
    missing = missing_reason(tail) if eps == 0 else None
    if method == "auto" and eps == 0 and tail is not None and tail.infinite_variance:
        method = "smc"  # importance weights of infinite variance: straight to tempered SMC
    if prior.normalize:  # the interpolating posterior only (factorkit.fit.normalized)
        reason = applies(model, prior, eps)
        if reason is not None:
            raise ValueError(f"sampler='marginal' does not apply: {reason}")
        if missing is not None:
            raise ValueError(f"eps = 0: {missing}")
        start = time.perf_counter()
        state = normalized_zero_sample(
            problem64, model, prior, method=method, n_samples=n_samples, target_ess=target_ess,
            hidden_draws=hidden_draws, n_particles=n_particles, runs=runs, mcmc_steps=mcmc_steps,
            target_acceptance=target_acceptance, check_effort=check, generator=make_generator(seed, "cpu"),
            fraction=heavy_fraction(tail) if path == "power" else None, path=path, tail_alpha=tail_alpha,
        )  # fmt: skip
        result = _result(problem, eps, state, keep_samples, time.perf_counter() - start)
        result.extra["tail_index"] = math.nan if tail is None else tail.alpha
        result.extra["path"] = path
        return result
    if missing is not None:
        raise ValueError(f"eps = 0: {missing}")
    integral = OutputLayerIntegral(problem64, model, prior, eps)
    hidden = HiddenLayers(model, prior)
    generator = make_generator(seed, "cpu")
    start = time.perf_counter()
    if hidden.kind == "identity":
        state = _exact(integral, n_samples, generator)
    else:
        state = None
        if method in ("auto", "importance"):
            state = _importance(integral, hidden, target_ess, hidden_draws, n_samples, generator,
                                give_up=method == "auto")  # fmt: skip
        if state is None:
            state = _tempered(integral, hidden.for_moves(), n_particles, runs, mcmc_steps, target_acceptance,
                              target_ess, generator, check, path, tail_alpha)  # fmt: skip
    result = _result(problem, eps, state, keep_samples, time.perf_counter() - start)
    result.extra["tail_index"] = math.nan if tail is None else tail.alpha
    result.extra["path"] = path
    result.extra["work"] = dict(integral.work)
    return result


# ---------------------------------------------------------------------- the three ways
def _draws(
    integral: OutputLayerIntegral, grams: torch.Tensor, rows: np.ndarray, generator, log_weight=None
) -> dict:
    """Posterior draws for the hidden-layer draws ``grams[rows]``: ``g``, ``W``, their exact
    losses and ``E[L_gen | G, g]`` (``log_weight``: the log-weights of every draw in ``grams``,
    when known). Each distinct draw is analysed once, however often ``rows`` repeats it."""
    unique, inverse = np.unique(rows, return_inverse=True)
    known = None if log_weight is None else log_weight[unique]
    analysis = integral.analyse(grams[torch.from_numpy(unique)], log_weight=known)
    g = integral.sample_g(analysis, inverse, generator)
    W = integral.sample_W(analysis, inverse, g, generator)
    train, gen = integral.problem.losses(W)
    return {"W": W, "train": train, "gen": gen, "rb": integral.conditional_gen_loss(analysis, inverse, g)}


def _exact(integral: OutputLayerIntegral, n_samples: int, generator) -> dict:
    grams = torch.eye(integral.problem.shape[1], dtype=torch.float64)[None]
    analysis = integral.analyse(grams)
    draws = _draws(integral, grams, np.zeros(n_samples, dtype=np.int64), generator, analysis.log_weight)
    prior_gen = integral.prior_gen_loss(analysis)
    return {
        "method": "exact",
        "draws": draws,
        "log_volume": float(analysis.log_weight[0]),
        "log_volume_se": 0.0,
        "ess": float(n_samples),
        "evaluations": 1,
        "weight_spread": 1.0,
        "rb": float(draws["rb"].mean()),
        "rb_se": float(draws["rb"].std() / math.sqrt(n_samples)) if n_samples > 1 else float("nan"),
        "prior_gen": (float(prior_gen[0]), 0.0),
    }


def _importance(
    integral, hidden, target_ess, hidden_draws, n_samples, generator, give_up: bool
) -> dict | None:
    """Importance sampling from the prior of the hidden layers; ``None`` (when ``give_up``) if the
    first batch projects ``target_ess`` beyond ``hidden_draws``. The first batch holds
    :data:`FIRST_BATCH` draws; later ones what the ESS per draw so far says the target needs (a
    quarter more), within the memory bound of :meth:`HiddenLayers.batch`."""
    largest = max(FIRST_BATCH, hidden.batch())
    grams, log_weights, prior_gens = [], [], []
    drawn = screened = 0
    ess = 0.0
    best = -math.inf  # the largest log-weight so far: draws SCREEN_NATS below it cannot matter
    while drawn < hidden_draws:
        wanted = FIRST_BATCH if drawn == 0 else largest
        if ess > 0:
            wanted = min(largest, max(FIRST_BATCH, math.ceil(1.25 * (target_ess - ess) * drawn / ess)))
        count = min(wanted, hidden_draws - drawn)
        gram = hidden.gram(hidden.draw(count, generator), count)
        if not math.isfinite(best):
            analysis = first_analysis(integral, gram)
        else:
            analysis = integral.analyse(gram, floor=best - SCREEN_NATS if integral.eps > 0 else None)
        screened += analysis.screened
        best = max(best, float(analysis.log_weight.max()))
        grams.append(gram)
        log_weights.append(analysis.log_weight)
        prior_gens.append(integral.prior_gen_loss(analysis))
        drawn += count
        log_weight = np.concatenate(log_weights)
        if not np.isfinite(log_weight.max()):
            ess = 0.0
        else:
            ess = kish_ess(normalized_weights(log_weight))
        if ess >= target_ess:
            break
        # every batch re-projects: a heavy-tailed weight's first batch overstates its ESS per draw
        if give_up and (ess == 0 or ess / drawn * hidden_draws < target_ess):
            return None
    if not np.isfinite(log_weight.max()):
        raise RuntimeError(
            f"none of {drawn} hidden-layer draws puts probability on the ball at eps = {integral.eps:g}"
        )
    if ess < target_ess:
        warnings.warn(
            f"importance sampling reached an ESS of {ess:.1f} < target_ess = {target_ess:g} "
            f"with hidden_draws = {drawn}", RuntimeWarning, stacklevel=3)  # fmt: skip
    shape = pareto_k(log_weight)
    if not heavy_tail_checked(shape, give_up, drawn):
        return None
    grams = torch.cat(grams)
    weights = normalized_weights(log_weight)
    rows = systematic_resample(weights, n_samples, generator)
    draws = _draws(integral, grams, rows, generator, log_weight)
    raw = np.exp(log_weight - log_weight.max())
    log_volume = log_mean_exp(log_weight)
    log_volume_se = float(raw.std(ddof=1) / raw.mean() / math.sqrt(drawn)) if drawn > 1 else float("nan")
    # the mean of L_gen over every weighted draw (one g each; g = y at eps = 0), not over the
    # resampled ones: no resampling noise, and the self-normalized estimator's standard error
    # (the delta method) counts the spread of the weights, which resampled duplicates would hide.
    # Draws below 1e-12 of the largest weight are left out (their mass is below N * 1e-12).
    kept = weights >= 1e-12 * weights.max()
    rb_all = _conditional_all(integral, grams, log_weight, kept, generator)
    w = np.where(kept, weights, 0.0) / weights[kept].sum()
    rb = float((w * rb_all).sum())
    rb_se = math.sqrt(float((w**2 * (rb_all - rb) ** 2).sum()))
    prior_gen = np.concatenate(prior_gens)
    return {
        "method": "importance",
        "screened": screened,
        "draws": draws,
        "log_volume": log_volume,
        "log_volume_se": log_volume_se,
        "ess": min(ess, float(n_samples)),
        "kish_ess": ess,
        "evaluations": drawn,
        "weight_spread": float(weights.max()),
        "pareto_k": shape,
        "rb": rb,
        "rb_se": rb_se,
        "prior_gen": (float(prior_gen.mean()), float(prior_gen.std(ddof=1) / math.sqrt(prior_gen.size))),
    }


def first_analysis(integral: OutputLayerIntegral, gram: torch.Tensor) -> Analysis:
    """A first batch of hidden-layer draws analysed as importance sampling does: at ``eps > 0`` the
    Chernoff bound of every draw, then the exact log-weight of those whose bound comes within
    :data:`SCREEN_NATS` of the best exact weight among the largest bounds (the others cannot
    matter: ``-inf``); at ``eps = 0`` every draw's density."""
    if integral.eps == 0:
        return integral.analyse(gram)
    analysis = integral.analyse(gram, floor=math.inf)  # eigen-decompositions and bounds only
    return integral.reweigh(analysis, _reference(integral, analysis) - SCREEN_NATS)


def _reference(integral, analysis, top: int = 64) -> float:
    """The largest exact log-weight among the ``top`` draws with the largest Chernoff bounds."""
    order = np.argsort(-analysis.bound)[:top]
    return float(integral.log_ball(analysis.values[order], analysis.centre[order]).max())


def _conditional_all(integral, grams: torch.Tensor, log_weight, kept: np.ndarray, generator) -> np.ndarray:
    """``E[L_gen | G_p, g_p]`` for every ``kept`` draw, ``g_p`` one exact draw in the ball (``y`` at
    ``eps = 0``), 0 elsewhere; in batches."""
    out = np.zeros(grams.shape[0])
    rows = np.flatnonzero(kept)
    for first in range(0, rows.size, 4096):
        chunk = rows[first : first + 4096]
        analysis = integral.analyse(grams[torch.from_numpy(chunk)], log_weight=log_weight[chunk])
        local = np.arange(chunk.size)
        g = integral.sample_g(analysis, local, generator)
        out[chunk] = integral.conditional_gen_loss(analysis, local, g).numpy()
    return out


def _tempered_run(
    integral, hidden, n_particles, mcmc_steps, target_acceptance, generator, path, tail_alpha=None
) -> dict:
    """One SMC run over the hidden layers; its final population, log V and levels (with matrix
    latents, half of each level's moves are singular-value moves). ``path``: ``'power'`` tempers
    the weight and ``'capped'`` caps it (:func:`~factorkit.fit.weights.temper`, ending with the
    excess's levels where ``tail_alpha`` is given), ``'noise'``
    (``eps = 0``) anneals the measurement noise (:func:`~factorkit.fit.noise_path.anneal_noise`)."""
    if path == "noise":

        def density_at(latent: list[torch.Tensor], noise: float) -> torch.Tensor:
            return torch.from_numpy(integral.log_noisy_density(hidden.gram(latent, n_particles), noise))

        latent, value, log_volume, levels, evaluations = anneal_noise(
            density_at, lambda latent: integral.sigma_spectrum(hidden.gram(latent, n_particles)),
            hidden.draw(n_particles, generator), n_particles, mcmc_steps, target_acceptance, generator,
            matrices=hidden.matrices,
        )  # fmt: skip
        gram = hidden.gram(latent, n_particles)
        return {
            "gram": gram,
            "log_weight": value.numpy(),
            **run_record(value, log_volume, levels, evaluations),
        }

    def log_weight_of(latent: list[torch.Tensor], floor=None) -> torch.Tensor:
        return torch.from_numpy(integral.analyse(hidden.gram(latent, n_particles), floor=floor).log_weight)

    latent, value, log_volume, levels, evaluations = temper(
        log_weight_of, hidden.draw(n_particles, generator), n_particles, mcmc_steps, target_acceptance,
        generator, nothing=f"no hidden-layer particle puts probability on the ball at eps = {integral.eps:g}",
        screen=integral.eps > 0, matrices=hidden.matrices, path=path, tail_alpha=tail_alpha,
    )  # fmt: skip
    gram = hidden.gram(latent, n_particles)
    # every particle's value is its exact log-weight (screened proposals were never accepted)
    return {"gram": gram, "log_weight": value.numpy(), **run_record(value, log_volume, levels, evaluations)}


def _tempered(
    integral, hidden, n_particles, runs, mcmc_steps, target_acceptance, target_ess, generator, check_effort,
    path="power", tail_alpha=None,
) -> dict:  # fmt: skip
    def more(count, steps):
        out = []
        for _ in range(count):
            run = _tempered_run(integral, hidden, n_particles, steps, target_acceptance, generator, path,
                                tail_alpha)  # fmt: skip
            run["draws"] = _draws(integral, run["gram"], np.arange(n_particles), generator, run["log_weight"])
            out.append(run)
        return out

    state = tempered_runs(more, runs, target_ess, n_particles, mcmc_steps, check_effort, generator)
    prior = integral.prior_gen_loss(integral.analyse(hidden.gram(hidden.draw(n_particles, generator),
                                                                 n_particles)))  # fmt: skip
    state["prior_gen"] = (float(prior.mean()), float(prior.std() / math.sqrt(prior.numel())))
    return state


def _result(problem, eps: float, state, keep_samples: bool, wall_time: float) -> GuessCheckResult:
    draws = state["draws"]
    dtype = problem.dtype
    ess = state["ess"]
    half = (
        float(stats.t.ppf(0.975, max(ess, 2.0) - 1)) * state["rb_se"]
        if math.isfinite(state["rb_se"])
        else math.nan
    )
    extra = {
        "method": state["method"],
        "ess": ess,
        "weight_spread": state["weight_spread"],
        "gen_loss_rb": state["rb"],
        "gen_loss_rb_ci": [state["rb"] - half, state["rb"] + half],
        "gen_loss_rb_se": state["rb_se"],
        # the i.i.d. posterior draws that would estimate the mean of L_gen as well (the posterior
        # variance of L_gen over the squared standard error): the figure SMC's ESS and rejection's
        # accepted count are compared with
        "ess_gen_loss": float(draws["gen"].var()) / state["rb_se"] ** 2 if state["rb_se"] > 0 else math.inf,
        "hidden_draws": state["evaluations"],
        "kish_ess": state.get("kish_ess", ess),  # of the hidden-layer weights, not capped
        "screened": state.get("screened", 0),
        "pareto_k": state.get("pareto_k", math.nan),  # importance sampling's weights only
    }
    if eps == 0:
        extra["log_density"] = state["log_volume"]
        extra["log_density_se"] = state["log_volume_se"]
        extra["log_volume"], extra["log_volume_se"] = -math.inf, 0.0
    else:
        extra["log_volume"], extra["log_volume_se"] = state["log_volume"], state["log_volume_se"]
    for key in ("log_volume_runs", "run_weights", "temperatures", "effort"):
        if key in state:
            extra[key] = state[key]
    return GuessCheckResult(
        eps=eps,
        accepted=int(draws["gen"].numel()),
        evaluations=state["evaluations"],
        accepted_gen_loss=draws["gen"].to(dtype),
        accepted_train_loss=draws["train"].to(dtype),
        accepted_W=draws["W"].to(problem.device, dtype) if keep_samples else None,
        prior_gen_loss_mean=state["prior_gen"][0],
        prior_gen_loss_se=state["prior_gen"][1],
        wall_time=wall_time,
        reached_target=True,
        sampler="marginal",
        extra=extra,
    )


__all__ = ["kish_ess", "log_mean_exp", "marginal_sample", "systematic_resample"]
