"""The capped path's end: the jump from its last cap to the uncapped weight, or the excess tempered.

    python benchmarks/bench_excess_end.py pole [--q 0.75] [--seeds 40] [--runs 16] [--particles 400]
        [--steps 10] [--paths ...] [--excess-tail 4]
    python benchmarks/bench_excess_end.py cells [--cells gaussian:2:linear:2:22 ...] [--steps 10]
        [--seeds 16] [--particles 500] [--ends jump excess] [--excess-tail 4]

Where the weight's tail index ``alpha`` is 2 or less, the capped path's last step (from
``prior * min(w, e^c)`` to ``prior * w``) has incremental weights of infinite variance, and a finite
population underweights the mass above its last cap however long its moves are; the excess levels
(:class:`factorkit.fit.weights.Excess`) temper ``w / min(w, e^c)`` in steps whose increments keep
a tail index of :data:`~factorkit.fit.weights.EXCESS_TAIL`. Both ends are run on the same problems
as many times as asked: the answers' mean over the repetitions shows the bias an answer carries,
where one run's error bar shows only its spread. ``--excess-tail``: the excess levels' bound
(:data:`~factorkit.fit.weights.EXCESS_TAIL`; 2.22 is the first version's 0.9 of the finite-variance
step).

``pole``: ``tests/test_weights.py``'s pole test repeated with the seeds 0, 1, ... ``--seeds - 1``:
the prior ``x ~ N(0, 1)``, the weight ``w = |x|^-q`` (tail index ``1 / q``) with a known
normalizing constant and posterior (``x^2 ~ Gamma((1 - q) / 2, scale 2)``), ``--runs`` runs of
:func:`~factorkit.fit.weights.temper` pooled by their constants. For each path (the power path
and the capped path with its jump, with pCN moves alone as the test runs them and with half the
moves scaling ``|x|``, :func:`~factorkit.fit.weights.singular_value_moves` on ``x`` as a ``1 x 1``
matrix, as on the hidden layers; the capped path with the excess levels, with those) the table
gives the standardized errors of ``log Z`` and of the posterior mean of ``x^2`` and posterior share
of ``x^2 < 1e-4`` against the exact values: their mean over the seeds (0 where the estimate is
unbiased), standard deviation (1 where its error bar holds) and range.

``cells``: :func:`factorkit.fit.marginal_sampler.marginal_sample` at ``eps = 0`` on ``path='capped'``
(``method='smc'``, 8 runs, ``check_effort=False``, as ``bench_effort.py`` runs its cells; the cell
format is its own), once per seed 0, 1, ... ``--seeds - 1`` for each end (``--ends``; ``jump`` is
:data:`~factorkit.fit.weights.EXCESS_END` off): the mean over the seeds of ``log p(h = y)`` and of
the posterior mean of ``L_gen``, each with its standard error over the seeds, their spread (one
seed's standard deviation), the mean evaluations and the seconds. One thread.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from scipy import stats

from factorkit.fit import weights
from factorkit.fit.marginal_sampler import marginal_sample
from factorkit.fit.prior import resolve_prior
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem

ENDS = {"jump": False, "excess": True}


def mean_se(values) -> tuple[float, float, float]:
    """Mean, its standard error and the standard deviation of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    spread = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return float(values.mean()), spread / math.sqrt(values.size), spread


def pole_exact(q: float) -> dict:
    """The pole's ``log Z``, posterior mean of ``x^2`` and posterior share of ``x^2 < 1e-4``."""
    return {
        "log Z": -q / 2 * math.log(2) + math.lgamma((1 - q) / 2) - 0.5 * math.log(math.pi),
        "E[x^2]": 1 - q,
        "P(x^2 < 1e-4)": float(stats.gamma.cdf(1e-4, (1 - q) / 2, scale=2)),
    }


POLE_PATHS = {  # name: (temper's path, told the tail index, scale moves)
    "power, pCN": ("power", False, False),
    "capped with the jump, pCN": ("capped", False, False),
    "power": ("power", False, True),
    "capped with the jump": ("capped", False, True),
    "capped with the excess": ("capped", True, True),
}


def pole_repetition(q: float, name: str, seed: int, runs: int, particles: int, steps: int) -> dict:
    """One repetition of ``tests/test_weights.py``'s pole test along ``POLE_PATHS[name]``: ``runs``
    runs of ``particles`` from ``torch.Generator().manual_seed(seed)``, pooled by their constants;
    the standardized errors of ``log Z`` (the runs' spread) and of the two posterior figures (the
    ratio estimator's), the levels and evaluations a run."""
    path, told, scale = POLE_PATHS[name]
    exact = pole_exact(q)
    generator = torch.Generator().manual_seed(seed)
    log_volumes, means, shares, levels, evaluations = [], [], [], 0, 0
    for _ in range(runs):
        start = [torch.randn(particles, 1, 1, generator=generator, dtype=torch.float64)]
        if not scale:
            start = [start[0][:, :, 0]]
        latent, _, log_volume, run_levels, spent = weights.temper(
            lambda u, _floor: -q * u[0].flatten(1)[:, 0].abs().log(), start, particles, steps, 0.3, generator,
            nothing="none", screen=False, matrices=int(scale), path=path, tail_alpha=1 / q if told else None,
        )  # fmt: skip
        squares = latent[0].flatten(1)[:, 0].square()
        log_volumes.append(log_volume)
        means.append(float(squares.mean()))
        shares.append(float((squares < 1e-4).double().mean()))
        levels += len(run_levels)
        evaluations += spent
    log_volumes = np.array(log_volumes)
    share = np.exp(log_volumes - log_volumes.max())
    share /= share.sum()
    spread = np.exp(log_volumes - weights.log_mean_exp(log_volumes))
    out = {
        "log Z": (weights.log_mean_exp(log_volumes) - exact["log Z"]) / (spread.std(ddof=1) / math.sqrt(runs))
    }
    for key, values in (("E[x^2]", means), ("P(x^2 < 1e-4)", shares)):
        values = np.array(values)
        pooled = float((share * values).sum())
        out[key] = (pooled - exact[key]) / math.sqrt(float((share**2 * (values - pooled) ** 2).sum()))
    return {**out, "levels": levels / runs, "evaluations": evaluations / runs}


def pole(q: float, names, seeds: int, runs: int, particles: int, steps: int) -> None:
    """The pole's rows (module docstring): per path, the standardized errors over ``seeds``
    repetitions (mean, standard deviation, the farthest below and above zero)."""
    for name in names:
        start = time.perf_counter()
        reps = [pole_repetition(q, name, seed, runs, particles, steps) for seed in range(seeds)]
        cells = [f"{q:g}", particles, steps, name]
        for key in ("log Z", "E[x^2]", "P(x^2 < 1e-4)"):
            z = np.array([r[key] for r in reps])
            cells.append(f"{z.mean():+.2f} ({z.std(ddof=1):.2f}; {z.min():+.1f} to {z.max():+.1f})")
        levels, evaluations = (np.mean([r[key] for r in reps]) for key in ("levels", "evaluations"))
        cells += [f"{levels:.1f}", f"{evaluations:.3g}", f"{time.perf_counter() - start:.0f}"]
        print("| " + " | ".join(map(str, cells)) + " |", flush=True)


def cells(specs, steps_list, seeds: int, particles: int, ends) -> None:
    """The cells' rows (module docstring)."""
    for spec in specs:
        prior_name, depth, activation, *rest = spec.split(":")
        rank, n = map(int, rest or (1, 15))
        problem = make_sensing_problem(5, 5, rank=rank, n=n, seed=0, dtype="float64")
        model = DeepFactorization(5, 5, 5, int(depth), activation)
        prior = resolve_prior(prior_name, problem)
        for steps in steps_list:
            for end in ends:
                weights.EXCESS_END = ENDS[end]
                densities, gens, evaluations, start = [], [], [], time.perf_counter()
                for seed in range(seeds):
                    result = marginal_sample(
                        problem, model, eps=0.0, prior=prior, method="smc", runs=8, target_ess=1,
                        mcmc_steps=steps, n_particles=particles, check_effort=False, path="capped", seed=seed,
                        keep_samples=False,
                    )  # fmt: skip
                    densities.append(result.extra["log_density"])
                    gens.append(result.extra["gen_loss_rb"])
                    evaluations.append(result.evaluations)
                weights.EXCESS_END = True
                density, gen = mean_se(densities), mean_se(gens)
                row = [spec, steps, particles, end, seeds,
                       f"{density[0]:.3f} +- {density[1]:.3f} ({density[2]:.3f})",
                       f"{gen[0]:.4f} +- {gen[1]:.4f} ({gen[2]:.4f})", f"{np.mean(evaluations):.3g}",
                       f"{time.perf_counter() - start:.0f}"]  # fmt: skip
                print("| " + " | ".join(map(str, row)) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["pole", "cells"])
    parser.add_argument("--q", type=float, default=0.75)
    parser.add_argument("--particles", type=int, default=None, help="default 400 (pole), 500 (cells)")
    parser.add_argument("--runs", type=int, default=16, help="runs a repetition (pole)")
    parser.add_argument("--paths", nargs="+", choices=list(POLE_PATHS), default=list(POLE_PATHS))
    parser.add_argument("--steps", type=int, nargs="+", default=[10])
    parser.add_argument("--cells", nargs="+", default=["gaussian:2:linear:2:22"])
    parser.add_argument("--seeds", type=int, default=None, help="default 40 (pole), 16 (cells)")
    parser.add_argument("--ends", nargs="+", choices=list(ENDS), default=list(ENDS))
    parser.add_argument("--excess-tail", type=float, default=None,
                        help="weights.EXCESS_TAIL (default 4)")  # fmt: skip
    args = parser.parse_args()
    if args.excess_tail is not None:
        weights.EXCESS_TAIL = args.excess_tail
    torch.set_num_threads(1)
    if args.what == "pole":
        print("| q | particles | moves | path | log Z | E[x^2] | P(x^2 < 1e-4) | levels | evaluations a run "
              "| seconds |")  # fmt: skip
        print("|---:|---:|---:|---|---|---|---|---:|---:|---:|")
        for steps in args.steps:
            pole(args.q, args.paths, args.seeds or 40, args.runs, args.particles or 400, steps)
    else:
        print("| cell | moves | particles | end | seeds | log p(h = y) (spread) | L_gen (spread) "
              "| evaluations | seconds |")  # fmt: skip
        print("|---|---:|---:|---|---:|---|---|---:|---:|")
        cells(args.cells, args.steps, args.seeds or 16, args.particles or 500, args.ends)


if __name__ == "__main__":
    main()
