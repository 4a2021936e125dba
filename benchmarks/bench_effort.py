"""Deep eps = 0 posteriors: does the marginal samplers' tempered SMC give the same answer with more moves?

    python benchmarks/bench_effort.py [--cells gaussian:2:linear ...] [--steps 10 40 160] [--runs 8]
        [--fraction F] [--path auto|power|capped|noise]

At ``eps = 0`` the hidden layers' weight is a density (``N(y; 0, Sigma(F))``, or the normalized
prior's ``E_v |K|^{-1/2} Q_v^{-D/2}``), unbounded where ``F`` nears a low rank whose outputs meet
``y``; deep posteriors sit there, far in the prior's tails. For each cell (prior, depth, activation,
optionally the rank of ``W*`` and ``n``; otherwise the paper's problem, m = m' = 5, rank 1, n = 15;
seed 0, width 5) this runs :func:`factorkit.fit.marginal_sampler.marginal_sample` as tempered SMC
with ``--runs`` runs of 500 particles at each step count per temperature in ``--steps`` (half of
them singular-value moves where the latents are matrices; ``check_effort=False``: the effort is the
variable here; ``--path``: the runs' targets, default the sampler's own, since 2026-12-07
``'capped'`` where the counted tail index is below 1.5 and ``'power'`` elsewhere; the rows before it
are ``--path power``; since 2026-12-08 the capped path ends with the excess levels,
:class:`~factorkit.fit.weights.Excess`, and its rows before that with the jump), and prints the log
density ``log p(h = y)`` and the posterior mean of ``L_gen``, each with its standard error from the
runs' spread, the weight evaluations and seconds.
``--fraction``: the share of the ESS every temperature and noise level keeps (default the samplers'
own: :data:`factorkit.fit.weights.TEMPER_FRACTION`, 0.5, and
:data:`~factorkit.fit.weights.HEAVY_TEMPER_FRACTION`, 0.8, where
:func:`~factorkit.fit.weights.heavy_fraction` says). Runs that mix give the same answer at every
step count; a column that still moves says the shorter runs are biased, whatever their spread says.
A cell whose ``eps = 0`` posterior does not exist (:func:`factorkit.fit.tail.interpolating_missing`)
prints the reason instead.
"""

from __future__ import annotations

import argparse
import time

import torch

from factorkit.fit import weights
from factorkit.fit.marginal_sampler import marginal_sample
from factorkit.fit.prior import resolve_prior
from factorkit.fit.tail import interpolating_missing
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem

# Gaussian depth 4 linear, recorded here before factorkit.fit.tail, is refused now: its eps = 0
# weight has an infinite mean (tail index 1), which is why its answer kept moving
CELLS = [
    "gaussian:2:linear",
    "gaussian:3:linear",
    "gaussian:6:tanh",
    "normalized_gaussian:2:linear",
]


def effort_run(problem, model, prior, steps: int, runs: int, path: str = "auto"):
    """One row's run: tempered SMC at ``eps = 0`` along ``path``, ``runs`` runs at ``steps`` moves
    a level, no effort check, seed 3. Returns the result, ``log p`` and ``L_gen`` with their
    standard errors as text, and the seconds."""
    start = time.perf_counter()
    result = marginal_sample(problem, model, eps=0.0, prior=prior, method="smc", runs=runs, target_ess=1,
                             mcmc_steps=steps, check_effort=False, path=path, seed=3,
                             keep_samples=False)  # fmt: skip
    extra = result.extra
    density = f"{extra['log_density']:.3f} +- {extra['log_density_se']:.3f}"
    gen = f"{extra['gen_loss_rb']:.4f} +- {extra['gen_loss_rb_se']:.4f}"
    return result, density, gen, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=CELLS, help="prior:depth:activation[:rank:n]")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 40, 160])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--fraction", type=float, default=None,
                        help="ESS share of every temperature and noise level")  # fmt: skip
    parser.add_argument("--path", choices=["auto", "power", "capped", "noise"], default="auto",
                        help="the tempered runs' targets (marginal_sample's path)")  # fmt: skip
    args = parser.parse_args()
    if args.fraction is not None:
        weights.TEMPER_FRACTION = weights.HEAVY_TEMPER_FRACTION = args.fraction
    torch.set_num_threads(1)
    header = ["prior", "depth", "activation", "rank, n", "steps", "log p(h = y)", "L_gen (posterior)"]
    print("| " + " | ".join([*header, "evaluations", "seconds"]) + " |")
    print("|---|---|---|---|---:|---|---|---:|---:|")
    for cell in args.cells:
        prior_name, depth, activation, *rest = cell.split(":")
        rank, n = map(int, rest or (1, 15))
        problem = make_sensing_problem(5, 5, rank=rank, n=n, seed=0, dtype="float64")
        model = DeepFactorization(5, 5, 5, int(depth), activation)
        prior = resolve_prior(prior_name, problem)
        missing = interpolating_missing(problem, model, prior)
        if missing is not None:
            print(f"| {prior_name} | {depth} | {activation} | {rank}, {n} | - | refused: {missing} | | | |",
                  flush=True)  # fmt: skip
            continue
        for steps in args.steps:
            result, density, gen, seconds = effort_run(problem, model, prior, steps, args.runs, args.path)
            cells = [prior_name, depth, activation, f"{rank}, {n}", steps, density, gen,
                     f"{result.evaluations:.3g}", f"{seconds:.0f}"]  # fmt: skip
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()
