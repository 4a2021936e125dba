"""SMC's step count per level and level fraction on the depth figures' cells (issue 29, a search).

Subset simulation at the paper's depth-figure thresholds (k = 5, normalized Gaussian prior, seed
0's problem) with ``mcmc_steps`` in 3, 5, 10 and ``p0`` in 0.1, 0.25, 32 runs of 500 particles
each (the ESS from the runs' spread: about +-25% at 32 runs), one torch thread. Printed: levels,
loss evaluations, ESS, ESS per run, ESS per 1e5 evaluations and the mean L_gen; the study's
defaults are ``mcmc_steps = 10``, ``p0 = 0.1``.

``--held-out``: the default against ``(3, 0.25)``, ``(5, 0.25)`` and ``(10, 0.25)`` on eight cells of five
figures and an SMC seed the first table did not see; the last column is the mean L_gen with
its standard error from the 32 runs' spread (the settings must agree within it: fewer moves mix
less, and a bias the spread cannot show would appear as disagreement).

Run: ``python benchmarks/bench_smc_knobs.py [--held-out]``.
"""

from __future__ import annotations

import argparse

import torch

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit.smc import subset_simulation

CELLS = [("depth", 2, "linear"), ("depth", 6, "tanh"), ("depth", 10, "leaky_relu")]
# --held-out: cells and a seed the first table did not see, the default against two candidates
HELD_OUT = [
    ("depth", 4, "tanh"),
    ("depth", 8, "leaky_relu"),
    ("depth_uniform", 9, "leaky_relu"),
    ("depth_rank2", 9, "tanh"),
    ("depth_completion", 7, "leaky_relu"),
    ("depth_unnormalized", 8, "leaky_relu"),
    ("depth_completion", 3, "linear"),
    ("depth_uniform", 6, "tanh"),
]
SETTINGS = [(steps, p0) for steps in (3, 5, 10) for p0 in (0.1, 0.25)]
HELD_OUT_SETTINGS = [(10, 0.1), (3, 0.25), (5, 0.25), (10, 0.25)]
RUNS, PARTICLES = 32, 500


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--held-out", action="store_true", help="the held-out cells, SMC seed 2")
    args = parser.parse_args()
    cells, settings, seed = (HELD_OUT, HELD_OUT_SETTINGS, 2) if args.held_out else (CELLS, SETTINGS, 1)
    torch.set_num_threads(1)
    print("| figure | depth | activation | mcmc_steps | p0 | levels | evaluations | ESS | ESS per run "
          "| ESS per 1e5 evaluations | mean L_gen (se) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for figure, depth, activation in cells:
        cell = paper_cell(figure, depth=depth, activation=activation)
        problem, model, prior = gc_setup(cell.params, 0, "cpu")
        for steps, p0 in settings:
            result = subset_simulation(
                problem, model, eps=cell.params["eps"], prior=prior, n_particles=PARTICLES, runs=RUNS,
                mcmc_steps=steps, p0=p0, seed=seed, keep_samples=False,
            )  # fmt: skip
            ess, gen = result.extra["ess"], result.accepted_gen_loss.double()
            # se of the pooled mean from the runs' spread (the ESS's own definition)
            means = gen.reshape(RUNS, -1).mean(1)
            se = float(means.std() / RUNS**0.5)
            print(f"| {figure} | {depth} | {activation} | {steps} | {p0} | {result.extra['levels']} | "
                  f"{result.evaluations:,} | {ess:.0f} | {ess / RUNS:.1f} | "
                  f"{1e5 * ess / result.evaluations:.1f} | {float(gen.mean()):.4f} ({se:.4f}) |")  # fmt: skip


if __name__ == "__main__":
    main()
