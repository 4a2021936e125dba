"""The paper run's G&C with 8 first runs against 4 (``auto``, the ESS target 200).

``runs`` is what SMC (and the marginal sampler's tempered SMC) starts with; more runs are added
while the ESS estimate from the runs' spread is below the target, raised while fewer than 8 runs
make the estimate noisy (:func:`factorkit.fit.smc.ess_goal`: the same risk of stopping short as
8 runs take). Each cell and seed runs both ways in this process, one torch thread as in a study's
pool worker: seconds, runs, the ESS estimate, and the two posterior means of ``L_gen`` apart in
their combined standard errors (each ``sd / sqrt(ESS)``). Cells: the SMC cells of the paper's
figures (normalized and unnormalized depth, uniform prior, rank 2, completion, a width-5 cell at
the published threshold) and a width-5 ``eps = 0`` cell of the marginal sampler's tempered SMC.

Run: ``python benchmarks/bench_first_runs.py [--seeds 4]``.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import torch

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit.auto import auto_sample

CELLS = [  # figure, activation, changes to the figure's cell
    ("depth", "linear", {"depth": 6}),
    ("depth", "tanh", {"depth": 4}),
    ("depth", "leaky_relu", {"depth": 7}),
    ("depth_rank2", "tanh", {"depth": 5}),
    ("depth_uniform", "linear", {"depth": 8}),
    ("depth_completion", "tanh", {"depth": 9}),
    ("depth_unnormalized", "linear", {"depth": 5}),
    ("width", "tanh", {"width": 5, "eps": 0.02}),
    ("width_rank2", "linear", {"width": 5, "eps": 0.0}),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", RuntimeWarning)
    ways = "8 first: s, runs kept, ESS | 4 first: s, runs kept, ESS"
    print(f"| figure | activation | cell | seed | sampler | {ways} | L_gen apart (se) |")
    print("|---|---|---|---|---|---|---|---|")
    totals = {8: 0.0, 4: 0.0}
    for figure, activation, change in CELLS:
        cell = paper_cell(figure, activation=activation)
        params = {**cell.params, **change}
        for seed in range(args.seeds):
            problem, model, prior = gc_setup(params, seed, "cpu")
            shown, means = [], []
            for runs in (8, 4):
                start = time.perf_counter()
                result = auto_sample(problem, model, eps=params["eps"], prior=prior, target_ess=200,
                                     seed=seed, keep_samples=False, runs=runs, p0=params["p0"],
                                     n_particles=params["particles"])  # fmt: skip
                seconds = time.perf_counter() - start
                totals[runs] += seconds
                ess = result.extra.get("ess", math.nan)
                # the marginal sampler's pooled draws, or SMC's final particles: n_particles a run
                count = len(result.extra.get("log_volume_runs", [])) or result.accepted // params["particles"]
                shown.append(f"{seconds:.2f}, {count}, {ess:.0f}")
                sd = float(result.accepted_gen_loss.double().std())
                means.append((result.gen_loss_mean, sd / math.sqrt(max(ess, 1.0))))
            apart = (means[1][0] - means[0][0]) / math.hypot(means[0][1], means[1][1])
            where = ", ".join(f"{key} {value}" for key, value in change.items())
            row = [figure, activation, where, str(seed), result.sampler, *shown, f"{apart:+.1f}"]
            print("| " + " | ".join(row) + " |", flush=True)
    print(f"\nin all: 8 first {totals[8]:.1f} s, 4 first {totals[4]:.1f} s ({totals[8] / totals[4]:.2f}x)")


if __name__ == "__main__":
    main()
