"""Subset simulation: exact samples of the G&C posterior and the prior volume at tiny thresholds.

Rejection needs ``1 / V(eps)`` draws per sample, ``V(eps) = P_prior(L_train < eps)``. Subset
simulation (Au & Beck, "Estimation of small failure probabilities in high dimensions by subset
simulation", Prob. Eng. Mech. 16, 2001; as sequential Monte Carlo: Cerou, Del Moral, Furon &
Guyader, "Sequential Monte Carlo for rare event estimation", Stat. Comput. 22, 2012) walks down
an adaptive ladder ``eps_1 > eps_2 > ... > eps``:

1. draw ``N`` particles from the prior;
2. set ``eps_t`` to the ``p0``-quantile of their losses (or ``eps`` once that is lower), keep
   the particles below it (a fraction ``f_t``), and resample ``N`` from them;
3. move every particle with ``K`` preconditioned Crank-Nicolson steps
   ``u' = sqrt(1 - beta^2) u + beta xi`` on the standard-normal latent weights, accepted iff
   ``L_train(u') < eps_t``. The proposal is reversible w.r.t. the Gaussian prior, so the kernel
   leaves the prior restricted to ``{L_train < eps_t}`` invariant (Cotter, Roberts, Stuart &
   White, Stat. Sci. 28, 2013); ``beta`` adapts to a target acceptance rate between steps. By
   default a step moves one layer, the layers in turn, each with its own ``beta``
   (``moves='layers'``: each block move is exact, so the scan is; ``'joint'`` moves all at once);
4. repeat from 2 until ``eps_t = eps``.

The final population samples ``P(w | L_train(w) < eps)`` and ``prod_t f_t`` estimates ``V(eps)``
(unbiased for fixed levels; the adaptive levels add a bias of order ``1/N``). Independent runs
give the standard error of ``log V`` and an effective sample size. Normalized priors run the
chain on the unnormalized Gaussian weights and apply the constraint after normalization (a
deterministic map), which keeps every step exact; uniform priors likewise run it on Gaussian
latents ``u`` mapped to ``s erf(u / sqrt 2)``, exactly ``U(-s, s)``.

The independent runs move as one population (run ``r`` holds its own block of rows, levels,
resampling and step size): the same arithmetic as separate runs in fewer, larger operations.

Why this rather than nested sampling as the default: both use the same constrained-prior move,
but subset simulation spends its budget only on the levels between the prior and ``eps`` (about
``log V / log p0`` of them, each of ``N K`` evaluations), gives i.i.d.-across-runs error bars
directly, and its population at the target is the sample a study needs; nested sampling's
strength, the whole ``eps -> V(eps)`` curve, is also available here from the recorded levels
(``levels``: each threshold with its cumulative ``log V``).
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch

from factorkit._kernels import batched_product, copy_rows
from factorkit._memory import check_memory
from factorkit._validation import check_choice, check_float, check_int, make_generator
from factorkit.fit._pooling import log_mean_exp, log_mean_se, pooled_index
from factorkit.fit.prior import Prior, resolve_prior
from factorkit.fit.result import GuessCheckResult
from factorkit.models.deep import DeepFactorization
from factorkit.problems.sensing import SensingProblem

P0 = 0.25
"""Default level fraction: a quarter of each level's particles kept (four copies of each survivor
for the pCN steps to spread, not ten). Against 0.1 on sixteen cells (deep cells of every depth
figure of the paper and four cells outside it: other sizes, widths, priors, completion, noise):
as many or more effective samples per second on every one (1.0-1.9x), and on the fourteen with a
reference run of four times the pCN steps, the posterior mean of ``L_gen`` within 1.8 standard
errors of it, where 0.1 is off by 2-5% on six of them (1.9-3.3 standard errors; deep leaky ReLU
and tanh: incomplete mixing within a level) (``benchmarks/README.md``, "The bias at the paper's
settings" and "The default level fraction")."""
MOVE_KINDS = ("joint", "layers")
MOVES = "layers"
"""Default pCN kernel of :func:`subset_simulation` (``moves``): one layer a step in turn, each with
its own step size (:func:`pcn_layer_moves`). Against every layer at once with one step size, on
seventeen cells of the paper's six depth figures (depths 2-10, every activation and prior, 128
runs a kernel, the pooled mean's ESS per second): 1.2-2.8x, at about the same ESS per evaluation
and at half the cost per evaluation on deep nets (normal draws for one layer, not all); the
ten-step means of the default sit within 1.8 standard errors of forty steps' on the four cells
checked (``benchmarks/bench_smc_layer_moves.py``; ``benchmarks/README.md``, "One layer
a move")."""
MIN_ACCEPTANCE = 0.05
# the min_ess extension stops at this many times the initial runs (at least REFERENCE_RUNS)
# unless max_runs says otherwise
MAX_RUNS_FACTOR = 16
REFERENCE_RUNS = 8
"""Runs whose ESS estimate (7 degrees of freedom) the ESS target is read against as it stands:
with fewer, :func:`ess_goal` raises the bar to the same risk of stopping short; runs are added at
most this many at a time, and the extension's cap is :data:`MAX_RUNS_FACTOR` times this at least."""


def _latent_to_W(model, prior, latent):
    return prior.finish(model.end_to_end(prior.from_normal(model, latent)))


FORWARD_CACHE = True
"""Whether SMC's layer moves evaluate through :class:`ForwardCache` (``False``: a whole forward pass
a move, the same numbers: ``benchmarks/bench_forward_cache.py``'s baseline)."""


class ForwardCache:
    """The population's layer weights and partial products ``p_1 = W_1``, ``p_j = W_j s(p_{j-1})``
    (``j < d``; ``p_d = W`` is computed for the loss, not kept) for its current latents, so that a
    move of one layer recomputes that layer's
    weights and the products from it on: over a scan about half of a forward pass, and one layer's
    prior map (the uniform prior's ``erf``) instead of all. The same operations on the same inputs
    as ``prior.from_normal`` and ``model.end_to_end`` (``benchmarks/bench_forward_cache.py``).
    :meth:`propose` evaluates a new latent for one layer, :meth:`commit` keeps it on the accepted
    rows, :meth:`select` follows a resampling."""

    def __init__(self, model: DeepFactorization, prior: Prior, latent: list[torch.Tensor]):
        self.model, self.prior = model, prior
        self.activations = model.boundary_activations()
        self.weights = prior.from_normal(model, latent)
        self.products = self._chain(0, self.weights[0])[:-1]  # p_d is read by no move: not kept

    def _chain(self, layer: int, weight: torch.Tensor) -> list[torch.Tensor]:
        """The partial products from ``layer`` on, with ``weight`` in that layer's place."""
        if layer == 0:
            product = weight
        else:
            product = batched_product(weight, self.activations[layer - 1](self.products[layer - 1]))
        chain = [product]
        for index in range(layer + 1, len(self.weights)):
            product = batched_product(self.weights[index], self.activations[index - 1](product))
            chain.append(product)
        return chain

    def propose(self, layer: int, u: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """The end-to-end matrices (before ``prior.finish``) with layer ``layer``'s latent set to
        ``u``, and what :meth:`commit` needs to keep them."""
        weight = self.prior.layer_from_normal(self.model, layer, u)
        chain = self._chain(layer, weight)
        return chain[-1], (layer, weight, chain)

    def commit(self, pending: tuple, accept: torch.Tensor) -> None:
        """Keep :meth:`propose`'s layer and products on the rows where ``accept`` holds."""
        layer, weight, chain = pending
        copy_rows(self.weights[layer], weight, accept)
        for index in range(max(layer, 1), len(self.products)):  # p_1 is W_1 itself, copied above
            copy_rows(self.products[index], chain[index - layer], accept)

    def select(self, index: torch.Tensor) -> None:
        """Follow the population to its rows ``index`` (a resampling, runs leaving)."""
        self.weights = [w.index_select(0, index) for w in self.weights]
        self.products = [p.index_select(0, index) for p in self.products]
        if self.products:
            self.products[0] = self.weights[0]  # p_1 is W_1 itself


def stratified_resample(alive: torch.Tensor, n_particles: int, generator) -> torch.Tensor:
    """Indices of a new population from the survivors ``alive``: each ``n // k`` times, the
    remaining ``n mod k`` places to survivors drawn at random without replacement."""
    repeats = alive.repeat(n_particles // alive.numel())
    order = torch.randperm(alive.numel(), generator=generator, device=alive.device)
    return torch.cat([repeats, alive[order[: n_particles - repeats.numel()]]])


def _pcn_step(latent, blocks, value, accepts, betas, target_acceptance: float, generator, groups: int):
    """One pCN move of the latents numbered ``blocks`` (the others held), one step size a group
    (``betas``: ``groups`` values, float64), in place on ``latent``. Returns the particles' values,
    the groups' acceptance rates and their adapted steps."""
    size = latent[0].shape[0] // groups
    if groups == 1:  # one step for all: scalars
        step, keep = float(betas[0]), math.sqrt(1 - float(betas[0]) ** 2)
    else:
        step = betas.to(latent[0].device, latent[0].dtype).repeat_interleave(size).reshape(-1, 1, 1)
        keep = (1 - step.square()).sqrt()
    proposal = list(latent)
    for block in blocks:
        u = latent[block]
        proposal[block] = (
            torch.randn(u.shape, generator=generator, device=u.device, dtype=u.dtype)
            .mul_(step)
            .add_(keep * u)
        )
    accept, proposal_value = accepts(proposal, value)
    for block in blocks:
        copy_rows(latent[block], proposal[block], accept)
    value = torch.where(accept, proposal_value, value)
    rates = accept.reshape(groups, size).double().mean(1).cpu()
    return value, rates, (betas * torch.exp(3.0 * (rates - target_acceptance))).clamp(1e-8, 0.999)


def pcn_moves(latent, value, accepts, beta, steps: int, target_acceptance: float, generator, groups: int = 1):
    """``steps`` preconditioned Crank-Nicolson moves ``sqrt(1 - beta^2) u + beta xi`` of Gaussian
    latents (invariant for the standard normal prior), each kept where ``accepts(proposal)`` says so.

    ``accepts(proposal, value) -> (mask, proposal_value)``: a constrained target accepts inside its
    set, a smooth one by a Metropolis test. ``value`` (per particle) follows the accepted
    proposals. The step ``beta`` adapts by Robbins-Monro on its log towards ``target_acceptance``
    (the kernel is exact for any beta); the gain of 3 shrinks beta 2.5x per step at zero
    acceptance, fast enough to follow a constrained set that contracts by a constant factor per
    level. ``groups`` independent populations of equal size (consecutive rows) may move at once,
    each with its own step: ``beta`` is then a tensor of ``groups`` values. Returns the moved
    latents, their values, the adapted beta (a float for a float) and the mean acceptance rate
    (one per group as a tensor, or a float).
    """
    scalar = not isinstance(beta, torch.Tensor)
    betas = torch.as_tensor([beta] if scalar else beta, dtype=torch.float64)
    accepted_total = torch.zeros(groups, dtype=torch.float64)
    latent = [u.clone() for u in latent]  # moved in place below
    every = range(len(latent))
    for _ in range(steps):
        value, rates, betas = _pcn_step(
            latent, every, value, accepts, betas, target_acceptance, generator, groups
        )
        accepted_total += rates
    rate = accepted_total / max(steps, 1)
    if scalar:
        return latent, value, float(betas[0]), float(rate[0])
    return latent, value, betas, rate


def pcn_layer_moves(
    latent,
    value,
    accepts,
    betas,
    steps: int,
    target_acceptance: float,
    generator,
    groups: int = 1,
    start: int = 0,
    by_layer: bool = False,
):
    """``steps`` pCN moves of one layer each, the layers in turn from ``start`` (a systematic scan),
    each layer with its own step: ``betas`` is a ``(groups, layers)`` tensor. Every move is the
    pCN kernel of :func:`pcn_moves` on one block of the latents (the others held), invariant for
    the standard normal prior restricted to the accepted set, so the scan is too. A layer's step
    adapts only from its own moves' acceptance: one step for all layers must suit the most
    sensitive one, here each layer moves as far as its own constraint allows. A move draws normals
    for one layer only, so it costs less than a joint one. ``by_layer``: ``accepts`` takes the
    moved layer's index as a third argument (:class:`ForwardCache` evaluates from it on). Returns
    the moved latents, their values, the adapted steps and the mean acceptance rate per group.
    """
    layers = len(latent)
    betas = torch.as_tensor(betas, dtype=torch.float64).reshape(groups, layers).clone()
    accepted_total = torch.zeros(groups, dtype=torch.float64)
    latent = [u.clone() for u in latent]  # moved in place below
    for index in range(steps):
        layer = (start + index) % layers
        test = (lambda proposal, value, layer=layer: accepts(proposal, value, layer)) if by_layer else accepts
        value, rates, betas[:, layer] = _pcn_step(
            latent, (layer,), value, test, betas[:, layer], target_acceptance, generator, groups
        )
        accepted_total += rates
    return latent, value, betas, accepted_total / max(steps, 1)


def _runs(problem, model, prior, eps, count, settings: dict, generator, dtype) -> list[dict]:
    """``count`` independent subset-simulation runs moved as one population (run ``r`` holds
    rows ``r N .. (r + 1) N - 1``), each with its own levels, resampling and pCN step; a run leaves
    the population when it stops. One population of ``count N`` costs less per evaluation than
    ``count`` of ``N`` (fewer, larger operations). Returns each run's final state and levels."""
    n_particles = settings["n_particles"]
    device = problem.device

    def end_to_end(latent):
        return _latent_to_W(model, prior, latent)

    latent = [
        torch.randn(count * n_particles, r, c, generator=generator, device=device, dtype=dtype)
        for r, c in model.layer_shapes()
    ]
    train, prior_gen = problem.losses(end_to_end(latent))  # a prior sample: random-guess L_gen
    runs = [
        {"levels": [], "log_volume": 0.0, "evaluations": n_particles, "message": "",
         "prior_gen": prior_gen[_block(r, n_particles)]}
        for r in range(count)
    ]  # fmt: skip
    active = list(range(count))  # the runs in the population, in row order
    layerwise = settings.get("moves", MOVES) == "layers"
    cache = ForwardCache(model, prior, latent) if layerwise and FORWARD_CACHE else None
    layers = len(latent)
    betas = torch.full((count, layers) if layerwise else (count,), 0.5, dtype=torch.float64)
    sweep = 0  # where the layer scan goes on at the next level
    while active:
        moving, rows, thresholds = _next_levels(runs, active, train, eps, settings, generator)
        for slot, run_index in enumerate(active):
            if runs[run_index]["message"]:  # stopped at this level: its population as it is
                _finish(runs[run_index], problem, end_to_end, [u[_block(slot, n_particles)] for u in latent])
        if not moving:
            break
        index = torch.cat(rows)
        latent, train = [u.index_select(0, index) for u in latent], train[index]
        if cache is not None:
            cache.select(index)
        level = torch.tensor(thresholds, dtype=train.dtype, device=device).repeat_interleave(n_particles)

        def below(proposal, _value, layer=None, level=level):
            if layer is None:
                proposal_train = problem.train_loss(end_to_end(proposal))  # L_gen is not needed here
                return proposal_train < level, proposal_train
            W, pending = cache.propose(layer, proposal[layer])
            proposal_train = problem.train_loss(prior.finish(W))
            accept = proposal_train < level
            cache.commit(pending, accept)
            return accept, proposal_train

        moved = [active[slot] for slot in moving]
        if layerwise:
            latent, train, betas[moved], acceptance = pcn_layer_moves(
                latent, train, below, betas[moved], settings["mcmc_steps"], settings["target_acceptance"],
                generator, groups=len(moved), start=sweep, by_layer=cache is not None,
            )  # fmt: skip
            sweep = (sweep + settings["mcmc_steps"]) % layers
        else:
            latent, train, betas[moved], acceptance = pcn_moves(
                latent, train, below, betas[moved], settings["mcmc_steps"], settings["target_acceptance"],
                generator, groups=len(moved),
            )  # fmt: skip
        going = _after_moves(runs, moved, thresholds, acceptance, betas, eps, settings)
        for position, run_index in enumerate(moved):
            if run_index not in going:
                _finish(
                    runs[run_index], problem, end_to_end, [u[_block(position, n_particles)] for u in latent]
                )
        if going:
            kept = [position for position, run_index in enumerate(moved) if run_index in going]
            index = torch.cat([torch.arange(n_particles, device=device) + p * n_particles for p in kept])
            latent, train = [u.index_select(0, index) for u in latent], train[index]
            if cache is not None:
                cache.select(index)
        active = [run_index for run_index in moved if run_index in going]
    return runs


def _next_levels(runs, active, train, eps, settings, generator):
    """Each active run's next level (the ``p0``-quantile of its losses, or ``eps`` once below it):
    its survivors resampled into the rows of the next population, or a message that stops it
    (ties at the quantile, a threshold that no longer decreases). Returns the slots that move on,
    their resampled rows (into ``train``'s population) and their thresholds."""
    n_particles = settings["n_particles"]
    keep = max(1, min(n_particles - 1, round(settings["p0"] * n_particles)))
    ordered = torch.sort(train.reshape(len(active), n_particles), dim=1).values[:, keep].tolist()
    moving, rows, thresholds = [], [], []
    for slot, run_index in enumerate(active):
        run = runs[run_index]
        threshold = eps if ordered[slot] <= eps else ordered[slot]
        alive = (train[_block(slot, n_particles)] < threshold).nonzero().squeeze(1)
        if alive.numel() == 0:  # only possible with ties at the quantile
            run["message"] = f"no particle below the level {threshold:.4g}: ties in L_train"
        elif run["levels"] and threshold >= run["levels"][-1]["threshold"]:
            run["message"] = f"the threshold stopped decreasing at {threshold:.4g}"
        if run["message"]:
            continue
        fraction = alive.numel() / n_particles
        run["log_volume"] += math.log(fraction)
        run["levels"].append({"threshold": threshold, "fraction": fraction, "log_volume": run["log_volume"]})
        rows.append(slot * n_particles + stratified_resample(alive, n_particles, generator))
        moving.append(slot)
        thresholds.append(threshold)
    return moving, rows, thresholds


def _after_moves(runs, moved, thresholds, acceptance, betas, eps, settings) -> set[int]:
    """Record the pCN moves of each moved run's level; the runs that go on (not at ``eps``, within
    their evaluation budget and level count: the others get their message)."""
    going = set()
    for position, run_index in enumerate(moved):
        run, threshold = runs[run_index], thresholds[position]
        run["evaluations"] += settings["n_particles"] * settings["mcmc_steps"]
        beta = betas[run_index]
        run["levels"][-1].update(acceptance=float(acceptance[position]),
                                 beta=float(beta) if beta.dim() == 0 else beta.tolist())  # fmt: skip
        if threshold <= eps:
            continue
        log_volume = run["log_volume"]
        if run["evaluations"] >= settings["max_evaluations"]:
            run["message"] = (
                f"evaluation budget {settings['max_evaluations']} spent at threshold {threshold:.4g} "
                f"(log V there = {log_volume:.3f}), above eps = {eps:.4g}"
            )
        elif len(run["levels"]) >= settings["max_levels"]:
            run["message"] = (
                f"max_levels = {settings['max_levels']} reached at threshold {threshold:.4g} "
                f"(log V = {log_volume:.3f})"
            )
        else:
            going.add(run_index)
    return going


def _block(slot: int, size: int) -> slice:
    return slice(slot * size, (slot + 1) * size)


def _finish(run: dict, problem, end_to_end, latent) -> None:
    """A run's final population: its matrices, both losses, its distinct particles."""
    W = end_to_end(latent)
    train, gen = problem.losses(W)
    run.update(W=W, train=train, gen=gen, reached=not run["message"],
               distinct=int(torch.unique(train).numel()))  # fmt: skip
    # resampled copies that no MCMC step moved are still duplicates


def subset_simulation(
    problem: SensingProblem,
    model: DeepFactorization,
    *,
    eps: float,
    prior,
    n_particles: int = 2000,
    p0: float = P0,
    mcmc_steps: int = 10,
    target_acceptance: float = 0.3,
    runs: int = 4,
    max_evaluations: int = 50_000_000,
    max_levels: int = 500,
    seed: int | torch.Generator = 0,
    keep_samples: bool = True,
    min_ess: float | None = None,
    max_runs: int | None = None,
    total_evaluations: int | None = None,
    moves: str = MOVES,
):
    """Sample ``P(w | L_train(w) < eps)`` under ``prior`` and estimate ``log V(eps)``.

    Parameters
    ----------
    problem, model, eps, prior
        As for :func:`factorkit.fit.guess_and_check`: any of the four priors (uniform layers are
        ``s erf(u / sqrt 2)`` of Gaussian latents ``u``, see :meth:`Prior.from_normal`).
    n_particles : int
        Population size ``N`` of each run.
    p0 : float
        Fraction of the population kept at each level, in (0, 1) (default :data:`P0`, 0.25).
    mcmc_steps : int
        pCN steps per particle and level (each moves one layer with ``moves='layers'``).
    target_acceptance : float
        Acceptance rate the step size ``beta`` adapts to.
    runs : int
        Independent runs to start with; their spread gives ``log_volume_se`` and the effective
        sample size.
    max_evaluations : int
        Budget of loss evaluations per run; a run that spends it stops and says where it got.
    max_levels : int
        Most levels per run.
    seed : int or torch.Generator
    keep_samples : bool
        Keep the final populations' end-to-end matrices.
    min_ess : float, optional
        Add runs while the effective sample size is below ``min_ess`` (raised where fewer than
        8 runs make its estimate noisy: :func:`ess_goal`; as many as the ESS per run says are
        missing, at most ``max(runs, 8)`` at a time: :func:`runs_to_add`), up to ``max_runs``
        runs (default ``16 * max(runs, 8)``) and ``total_evaluations`` evaluations in all
        (default unbounded). Every run is independent, so the pooled sample stays exact; only
        when to stop depends on the ESS seen so far.
    max_runs, total_evaluations : int, optional
        Bounds of the ``min_ess`` extension.
    moves : {'joint', 'layers'}
        The pCN kernel (:data:`MOVES`): ``'joint'`` moves every layer at once with one step size
        (:func:`pcn_moves`), ``'layers'`` one layer a step in turn, each with its own step size
        (:func:`pcn_layer_moves`). Both are exact; they differ in how fast they mix.

    Returns
    -------
    GuessCheckResult
        ``sampler='smc'``; ``accepted`` counts the pooled final particles (correlated: see
        ``extra['ess']``; resampled to the runs' weights, :func:`_pooled`), ``extra`` holds
        ``log_volume`` (``log mean V_r`` over the runs), ``log_volume_se``, ``log_volume_runs``,
        ``run_weights`` (each run's ``V_r`` over their sum), ``ess``, ``levels``, ``level_log``
        (per run: threshold, fraction, cumulative log V, acceptance, beta) and ``distinct``
        (distinct final particles per run).
    """
    eps = check_float("eps", eps, positive=True)
    p0 = check_float("p0", p0)
    if not 0 < p0 < 1:
        raise ValueError(f"p0 must be in (0, 1), got {p0}")
    n_particles = check_int("n_particles", n_particles, minimum=2)
    mcmc_steps = check_int("mcmc_steps", mcmc_steps)
    target_acceptance = check_float("target_acceptance", target_acceptance)
    if not 0 < target_acceptance < 1:
        raise ValueError(f"target_acceptance must be in (0, 1), got {target_acceptance}")
    runs = check_int("runs", runs)
    check_choice("moves", moves, MOVE_KINDS)
    max_evaluations = check_int("max_evaluations", max_evaluations)
    max_levels = check_int("max_levels", max_levels)
    if min_ess is not None:
        min_ess = check_float("min_ess", min_ess, positive=True)
    chunk, cap = extension_bounds(runs)
    max_runs = cap if max_runs is None else check_int("max_runs", max_runs)
    if total_evaluations is not None:
        total_evaluations = check_int("total_evaluations", total_evaluations)
    prior = resolve_prior(prior, problem)
    model.check_fits(problem.shape)
    itemsize = torch.finfo(problem.dtype).bits // 8
    # latent weights, a proposal and the end-to-end products of a population, a few copies alive
    per_particle = 3 * (model.n_parameters() + 2 * model.m * model.m2) + problem.operator.shape[1]
    check_memory(f"SMC with {runs} runs of {n_particles} particles (k = {model.width}, d = {model.depth})",
                 2 * runs * n_particles * per_particle * itemsize)  # fmt: skip
    generator = make_generator(seed, problem.device)

    start = time.perf_counter()

    settings = {"n_particles": n_particles, "p0": p0, "mcmc_steps": mcmc_steps, "max_levels": max_levels,
                "target_acceptance": target_acceptance, "max_evaluations": max_evaluations,
                "moves": moves}  # fmt: skip

    def more(count: int) -> list[dict]:
        return _runs(problem, model, prior, eps, count, settings, generator, problem.dtype)

    results = more(runs)
    while min_ess is not None and all(r["reached"] for r in results):
        ess = effective_sample_size([r["gen"] for r in results], results[0]["distinct"], run_weights(results))
        count = runs_to_add(ess, len(results), min_ess, chunk, max_runs)
        spent = sum(r["evaluations"] for r in results)
        if not count or (
            total_evaluations is not None
            and spent * (len(results) + count) / len(results) > total_evaluations
        ):
            break
        results += more(count)
    return _pooled(results, problem, eps, n_particles, keep_samples, time.perf_counter() - start, generator)


def run_weights(results: list[dict]) -> torch.Tensor:
    """Each run's share of the pool: its normalizing constant ``exp(log_volume)`` over their sum."""
    return torch.softmax(torch.tensor([r["log_volume"] for r in results], dtype=torch.float64), 0)


def extension_bounds(runs: int) -> tuple[int, int]:
    """Runs :func:`runs_to_add` may add at a time, and in all, to ``runs`` first runs: ``max(runs,
    8)`` and :data:`MAX_RUNS_FACTOR` times that (the same whatever a smaller first batch)."""
    chunk = max(runs, REFERENCE_RUNS)
    return chunk, MAX_RUNS_FACTOR * chunk


def ess_goal(target: float, runs: int) -> float:
    """The ESS estimate from ``runs`` independent runs that counts as reaching ``target``.

    :func:`effective_sample_size` divides the within-run variance by the spread of the runs'
    means, whose estimate has ``runs - 1`` degrees of freedom: where the true ESS is half the
    target, the estimate still reaches it with probability ``P(chi2_{R-1} <= (R - 1) / 2)``, 0.165
    at :data:`REFERENCE_RUNS` (8), the risk every study has run with. With fewer runs the goal is
    raised until that risk is the same (``target * (R - 1) / (2 q)``, ``q`` the chi-square
    quantile at 0.165: 1.75x the target at 4 runs, 1.38x at 5); with more it stays ``target``."""
    if runs >= REFERENCE_RUNS:
        return float(target)
    from scipy.stats import chi2

    dof = max(runs - 1, 1)
    risk = chi2.cdf((REFERENCE_RUNS - 1) / 2, REFERENCE_RUNS - 1)
    return float(target) * max(1.0, dof / (2 * chi2.ppf(risk, dof)))


def runs_to_add(ess: float, done: int, target: float, chunk: int, cap: int) -> int:
    """How many independent runs to add to ``done`` runs whose pooled effective sample size is
    ``ess``, towards ``target``: 0 once the estimate reaches :func:`ess_goal` (the target, raised
    where fewer than :data:`REFERENCE_RUNS` runs make the estimate noisier) or ``cap`` is reached;
    else the fewest whose projected ESS (``ess / done`` a run) passes the goal at their count by
    10% (the estimate is noisy), at most ``chunk`` at a time and ``cap`` in all. Adding what is
    missing rather than ``chunk`` every time saves the overshoot of the last chunk (the paper
    run's SMC cells had ended at a median ESS of 265-350 for a target of 200)."""
    if done >= cap or ess >= ess_goal(target, done):
        return 0
    if ess <= 0:
        return max(1, min(chunk, cap - done))
    total = done + 1
    while total < cap and ess / done * total < 1.1 * ess_goal(target, total):
        total += 1
    return max(1, min(total - done, chunk, cap - done))


def projected_runs(ess_per_run: float, target: float, first: int, cap: int) -> int:
    """The runs :func:`runs_to_add` ends at, ``first`` to start, where every run adds
    ``ess_per_run`` (the planner's expectation; ``cap`` where a run adds nothing)."""
    if ess_per_run <= 0:
        return cap
    done = first
    while count := runs_to_add(ess_per_run * done, done, target, extension_bounds(first)[0], cap):
        done += count
    return done


def _mixing_warnings(results: list[dict], n_particles: int) -> list[str]:
    """Signs of poor mixing: a low pCN acceptance, a final population of few distinct particles."""
    mixing = []
    low = min((lv["acceptance"] for r in results for lv in r["levels"]), default=1.0)
    if low < MIN_ACCEPTANCE:
        mixing.append(f"pCN acceptance fell to {low:.3f} at some level: chains mixed poorly")
    fewest = min(r["distinct"] for r in results)
    if fewest < n_particles // 2:
        mixing.append(f"a run's final population holds only {fewest} distinct of {n_particles} particles")
    return mixing


def _pooled(results: list[dict], problem, eps: float, n_particles: int, keep_samples: bool, wall_time: float,
            generator):  # fmt: skip
    """The runs pooled into one :class:`GuessCheckResult` by their normalizing constants, as the
    marginal samplers' tempered runs are (:func:`~factorkit.fit.weights.tempered_runs`): ``log V``
    is ``log mean V_r`` with the delta method's standard error, the ESS the ratio estimator's
    (:func:`effective_sample_size` with the runs' weights), and the final populations resampled to
    the runs' weights (systematic, ``generator``: :func:`~factorkit.fit._pooling.pooled_index`), so
    the draws' mean is the ratio estimator's.
    Each run's ``V_r`` is an (asymptotically) unbiased estimate and its particles' mean of
    ``L_gen`` is not: at the paper's deep cells the plain mean of the runs' means kept a bias
    the pooling by ``V_r`` takes away (``benchmarks/bench_smc_particles.py``'s last column: depth 6
    tanh at ``p0 = 0.1``, 1024 runs, 0.0174 -> 0.0170, the converged value)."""
    runs = len(results)
    reached = all(r["reached"] for r in results)
    log_volumes = [r["log_volume"] for r in results]
    log_volume, log_volume_se = log_mean_exp(log_volumes), log_mean_se(log_volumes)
    weights = run_weights(results)
    ess = (
        effective_sample_size([r["gen"] for r in results], results[0]["distinct"], weights)
        if reached
        else 0.0
    )
    messages = [r["message"] for r in results if r["message"]]
    mixing = _mixing_warnings(results, n_particles)
    for text in messages + mixing:
        warnings.warn(text, RuntimeWarning, stacklevel=3)
    prior_gen = torch.cat([r["prior_gen"] for r in results]).double()
    empty = torch.zeros(0, dtype=problem.dtype, device=problem.device)
    gen = torch.cat([r["gen"] for r in results]) if reached else empty
    samples = torch.cat([r["W"] for r in results]) if reached else empty.reshape(0, *problem.shape)
    train = torch.cat([r["train"] for r in results]) if reached else empty
    if reached and runs > 1:
        index = pooled_index(np.array([r["gen"].numel() for r in results]), weights.numpy(), generator)
        index = index.to(gen.device)
        gen, train, samples = gen[index], train[index], samples[index]
    return GuessCheckResult(
        eps=eps,
        accepted=int(gen.numel()),
        evaluations=sum(r["evaluations"] for r in results),
        accepted_gen_loss=gen,
        accepted_train_loss=train,
        accepted_W=samples if keep_samples else None,
        prior_gen_loss_mean=float(prior_gen.mean()),
        prior_gen_loss_se=float(prior_gen.std() / math.sqrt(prior_gen.numel())),
        wall_time=wall_time,
        reached_target=reached,
        sampler="smc",
        extra={
            "log_volume": log_volume,
            "log_volume_se": log_volume_se,
            "log_volume_runs": log_volumes,
            "run_weights": weights.tolist(),
            "ess": ess,
            "levels": len(results[0]["levels"]),
            "level_log": [r["levels"] for r in results],
            "distinct": [r["distinct"] for r in results],
            "message": "; ".join(messages),
            "warnings": mixing,
        },
    )


def effective_sample_size(groups: list[torch.Tensor], distinct: int, run_weights=None) -> float:
    """ESS of the pooled mean of ``L_gen`` from the spread of independent runs' means.

    ``ESS = sigma^2 / Var(pooled mean)`` with ``sigma^2`` the pooled within-run variance and
    ``Var(pooled mean) = R / (R - 1) sum_r v_r^2 (m_r - m)^2`` over the runs' means ``m_r``, pooled
    as ``m = sum_r v_r m_r`` with normalized ``run_weights`` ``v_r`` (default equal: then
    ``sigma^2 R / Var(run mean)``; weighted by the runs' normalizing constants, the delta method's
    variance of the ratio estimator). Weighted, it is capped at the equal-weight figure times
    Kish's share of the runs the weights leave, ``(sum v)^2 / sum v^2 / R``: where one run carries
    nearly all the weight the delta method sees no spread at all, and the pool is worth one run.
    With one run, the count of distinct final particles stands in (an upper bound).
    """
    if len(groups) < 2:
        return float(distinct)
    runs, total = len(groups), sum(g.numel() for g in groups)
    means = torch.stack([g.double().mean() for g in groups])
    variances = torch.stack([g.double().var() for g in groups])
    within, between = variances.mean(), means.var()
    plain = float(total) if float(between) == 0.0 else float(min(within / between * runs, total))
    if run_weights is None:
        return plain
    v = torch.as_tensor(run_weights, dtype=torch.float64)
    within = (v * variances).sum()
    spread = runs / (runs - 1) * (v.square() * (means - (v * means).sum()).square()).sum()
    weighted = float(total) if float(spread) == 0.0 else float(min(within / spread, total))
    share = float(v.sum() ** 2 / v.square().sum()) / runs
    return min(weighted, plain * share)
