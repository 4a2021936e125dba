"""An exploration, not a sampler of the library: SMC along capped weights for the normalized prior's
``eps = 0`` posterior, against the tempering the sampler uses.

    python benchmarks/explore_capped_path.py [--depth 3] [--steps 4 10] [--runs 64] [--fraction 0.5]

The normalized sampler tempers the exact weight ``w(F) = p(h = y | F)``: targets ``prior * w^beta``
with ``beta`` from 0 to 1. Where the counted tail index is near 1 the posterior's ``log w`` has an
exponential tail of ``1 / (alpha - 1)`` nats, and tempering keeps it out of sight until ``beta`` is
near 1 (the marginal guide's "Deep eps = 0 posteriors"). This script replaces, for one run of
:func:`~factorkit.fit.marginal_sampler.marginal_sample` (through ``normalized.temper``), the path
by capped weights: targets ``prior * min(w, c)`` with ``c`` rising from the first population's
smallest weight to infinity, each next ``c`` the largest that keeps ``--fraction`` of the ESS
(bisection), then the sampler's own moves (pCN and singular-value moves, Metropolis on the capped
weight). Every target is proper and the incremental weights ``min(w, c') / min(w, c)`` are
exact, so the run is SMC along another path; its first level, ``c`` the smallest of the prior
draws' weights, is biased by the prior's mass below it (about one draw in the population). Above
``c`` each target is flat, so the particles spread over the whole level set, deep strata
included, as the Gaussian prior's noise path flattens them (:mod:`factorkit.fit.noise_path`).

Prints, per ``--steps``: ``log p(h = y)`` and the posterior mean of ``L_gen`` with the runs'
standard errors, the evaluations, the levels of the first runs and the seconds; the paper's
problem (m = m' = 5, rank 1, n = 15, seed 0, float64), width 5, linear, ``method='smc'``,
``check_effort=False``, seed 3, as ``bench_effort.py`` runs its cells (compare with its
``normalized_gaussian:DEPTH:linear`` rows).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from bench_effort import effort_run  # a sibling: the script's folder is on sys.path

from factorkit.fit import normalized, weights
from factorkit.fit.prior import resolve_prior
from factorkit.fit.smc import pcn_moves
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem


def _kept(increment: np.ndarray) -> float:
    return weights.kish_ess(weights.normalized_weights(increment)) / increment.size


def next_cap(log_weight: np.ndarray, cap: float, fraction: float) -> float:
    """The largest cap above ``cap`` whose incremental weights keep ``fraction`` of the ESS
    (infinity once the uncapped weights do)."""
    if _kept(log_weight - np.minimum(log_weight, cap)) >= fraction:
        return math.inf
    low, high = cap, float(log_weight.max())
    for _ in range(60):
        middle = 0.5 * (low + high)
        step = np.minimum(log_weight, middle) - np.minimum(log_weight, cap)
        low, high = (middle, high) if _kept(step) >= fraction else (low, middle)
    return low


def capped_path(keep: float):
    """A stand-in for :func:`~factorkit.fit.weights.temper` (same arguments and returns) that runs
    SMC along capped weights (module docstring), each level keeping ``keep`` of the ESS (the
    tempering's ``fraction`` is ignored); ``levels`` holds each cap as ``beta``."""

    def run(log_weight_of, latent, n_particles, mcmc_steps, target_acceptance, generator, *, nothing, screen,
            matrices=0, fraction=None):  # fmt: skip
        moves = mcmc_steps // 2 if matrices else 0
        raw = log_weight_of(latent, None)
        if not bool(torch.isfinite(raw).any()):
            raise RuntimeError(nothing)
        evaluations, step, spread, levels = n_particles, 0.5, 1.0, []
        cap = float(raw[torch.isfinite(raw)].min())
        log_volume = cap  # the first target, prior * min(w, cap), is the prior times cap
        while True:
            ell = raw.numpy()
            following = next_cap(ell, cap, keep)
            increment = np.minimum(ell, following) - np.minimum(ell, cap)
            increment = np.where(np.isfinite(increment), increment, -np.inf)
            log_volume += weights.log_mean_exp(increment)
            index = weights.systematic_resample(weights.normalized_weights(increment), n_particles, generator)
            index = torch.from_numpy(index)
            latent, raw, cap = [u[index] for u in latent], raw[index], following

            def capped(proposal, floor=None, cap=cap):
                return log_weight_of(proposal, floor).clamp(max=cap)

            def metropolis(proposal, current, capped=capped):
                log_u = torch.rand(n_particles, generator=generator, dtype=torch.float64).log()
                proposed = capped(proposal)
                finite = torch.isfinite(proposed)
                difference = torch.where(finite, proposed - current, torch.full_like(proposed, -math.inf))
                return log_u < difference, proposed

            value = raw.clamp(max=cap)
            latent, value, step, acceptance = pcn_moves(
                latent, value, metropolis, step, mcmc_steps - moves, target_acceptance, generator
            )
            cache = weights.singular_cache()
            for _ in range(moves):
                latent, value, spread, _ = weights.singular_value_moves(
                    latent, value, capped, 1.0, spread, target_acceptance, generator, matrices, cache
                )
            evaluations += n_particles * mcmc_steps
            levels.append({"beta": cap, "log_volume": log_volume, "acceptance": acceptance, "step": step})
            if math.isinf(cap):
                return latent, value, log_volume, levels, evaluations
            if len(levels) >= weights.MAX_TEMPERATURES:
                raise RuntimeError("the capped path did not reach an infinite cap")
            raw = log_weight_of(latent, None)  # the uncapped weights, for the next cap
            evaluations += n_particles

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 10])
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--fraction", type=float, default=0.5, help="ESS share each level keeps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    model = DeepFactorization(5, 5, 5, args.depth, "linear")
    prior = resolve_prior("normalized_gaussian", problem)
    normalized.temper = capped_path(args.fraction)
    print(
        "| depth | steps | log p(h = y) | L_gen (posterior) | evaluations | levels (first runs) | seconds |"
    )
    print("|---:|---:|---|---|---:|---|---:|")
    for steps in args.steps:
        result, density, gen, seconds = effort_run(problem, model, prior, steps, args.runs)
        levels = ", ".join(map(str, result.extra["temperatures"][:4]))
        cells = [args.depth, steps, density, gen, f"{result.evaluations:.3g}", levels, f"{seconds:.0f}"]
        print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()
