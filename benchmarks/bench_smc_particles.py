"""SMC's particle count on the paper's deep normalized-prior cells: ESS per second and the
posterior mean of L_gen at N = 500 (32 runs) against N = 2000 (16 runs), seed 0's problem,
one population of runs (``smc._runs``), one thread. Prints one row per (cell, N): seconds per
run, ESS per run and per second (the ESS from the spread of the runs' means), and the mean of
the runs' means with its standard error, so a difference between N = 500 and N = 2000 can be
read against its noise.

Run: ``python benchmarks/bench_smc_particles.py [--seed 11]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit import smc

CELLS = [
    ("depth", 3, "leaky_relu"),
    ("depth", 6, "leaky_relu"),
    ("depth", 7, "leaky_relu"),
    ("depth", 9, "leaky_relu"),
    ("depth", 6, "tanh"),
    ("depth", 9, "tanh"),
    ("depth_uniform", 9, "leaky_relu"),
]
POPULATIONS = [(500, 32), (2000, 16)]  # (particles, runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        "| figure | depth | activation | N | runs | s per run | ESS per run | ESS per s | mean L_gen (se) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for figure, depth, activation in CELLS:
        cell = paper_cell(figure, depth=depth, activation=activation)
        problem, model, prior = gc_setup(cell.params, 0, "cpu")
        for particles, runs in POPULATIONS:
            settings = {"n_particles": particles, "p0": 0.1, "mcmc_steps": 10, "max_levels": 500,
                        "target_acceptance": 0.3, "max_evaluations": 10**9}  # fmt: skip
            start = time.perf_counter()
            results = smc._runs(problem, model, prior, cell.params["eps"], runs, settings,
                                torch.Generator().manual_seed(args.seed), problem.dtype)  # fmt: skip
            seconds = time.perf_counter() - start
            ess = smc.effective_sample_size([r["gen"] for r in results], 0)
            means = torch.stack([r["gen"].double().mean() for r in results])
            mean, se = float(means.mean()), float(means.std() / runs**0.5)
            print(f"| {figure} | {depth} | {activation} | {particles} | {runs} | {seconds / runs:.3f} | "
                  f"{ess / runs:.1f} | {ess / seconds:.0f} | {mean:.4f} ({se:.4f}) |")  # fmt: skip


if __name__ == "__main__":
    main()
