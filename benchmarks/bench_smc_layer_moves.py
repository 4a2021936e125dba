"""SMC's pCN kernel: every layer at once with one step size (``moves='joint'``) against one layer
a step in turn, each with its own step size (``moves='layers'``), on the paper's depth-figure
cells (issue 29).

Both kernels are exact; what differs is how fast the pooled estimate settles per second. For
each cell (seed 0's problem at the figure's threshold) and kernel: ``RUNS`` runs of 500 particles
at the study's settings (``p0 = 0.25``, ten pCN steps a level), moved as populations of 64
(``smc._runs``), one torch thread, the same SMC seed for both kernels. Printed per row: seconds
and loss evaluations per run, the pooled mean's ESS per run and per second (the runs' means
pooled by their normalizing constants, ``smc.effective_sample_size`` with the runs' weights:
what ``subset_simulation`` reports), the pooled posterior mean of ``L_gen`` with its standard
error and ``log V``; the last column is ``layers``' ESS per second over ``joint``'s. The two
means must agree within their errors (they estimate the same posterior mean).

Run: ``python benchmarks/bench_smc_layer_moves.py [--runs 256] [--cells depth:9:leaky_relu,...]``;
``--held-out`` runs cells of the other figures, and ``--set`` changes settings of every cell
(e.g. ``--set width=10,m=8,m2=8,n=30,eps=0.01``: cells outside the paper).
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_smc_particles import _pooled_by_constants, _setting  # the script's folder is on sys.path

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit import smc
from factorkit.fit.weights import log_mean_exp

CELLS = [
    ("depth", 2, "linear"),
    ("depth", 4, "tanh"),
    ("depth", 6, "tanh"),
    ("depth", 9, "tanh"),
    ("depth", 3, "leaky_relu"),
    ("depth", 6, "leaky_relu"),
    ("depth", 7, "leaky_relu"),
    ("depth", 9, "leaky_relu"),
    ("depth", 10, "leaky_relu"),
]
HELD_OUT = [
    ("depth_uniform", 9, "leaky_relu"),
    ("depth_uniform", 6, "tanh"),
    ("depth_rank2", 9, "tanh"),
    ("depth_rank2", 8, "leaky_relu"),
    ("depth_completion", 7, "leaky_relu"),
    ("depth_completion", 3, "linear"),
    ("depth_unnormalized", 8, "leaky_relu"),
    ("depth_unnormalized", 5, "tanh"),
]
KERNELS = ("joint", "layers")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=128)
    parser.add_argument("--particles", type=int, default=500)
    parser.add_argument("--mcmc-steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--cells", help="figure:depth:activation, comma-separated")
    parser.add_argument("--held-out", action="store_true", help="the other figures' cells")
    parser.add_argument("--set", default="", help="KEY=VALUE settings of every cell, comma-separated")
    args = parser.parse_args()
    cells = HELD_OUT if args.held_out else CELLS
    if args.cells:
        cells = [(f, int(d), a) for f, d, a in (item.split(":") for item in args.cells.split(","))]
    changes = dict(_setting(item) for item in args.set.split(",") if item)
    torch.set_num_threads(1)
    print("| figure | depth | activation | moves | s per run | evaluations per run | ESS per run "
          "| ESS per s | pooled L_gen (se) | log V | layers / joint |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for figure, depth, activation in cells:
        cell = paper_cell(figure, activation=activation, **({} if changes else {"depth": depth}))
        params = {**cell.params, "depth": depth, **changes}
        problem, model, prior = gc_setup(params, 0, "cpu")
        rates = {}
        for moves in KERNELS:
            settings = {"n_particles": args.particles, "p0": smc.P0, "mcmc_steps": args.mcmc_steps,
                        "max_levels": 500, "target_acceptance": 0.3, "max_evaluations": 10**9,
                        "moves": moves}  # fmt: skip
            generator, results = torch.Generator().manual_seed(args.seed), []
            start = time.perf_counter()
            for group in range(0, args.runs, 64):
                results += smc._runs(problem, model, prior, params["eps"], min(64, args.runs - group),
                                     settings, generator, problem.dtype)  # fmt: skip
            seconds = time.perf_counter() - start
            ess = smc.effective_sample_size([r["gen"] for r in results], 0, smc.run_weights(results))
            means = torch.stack([r["gen"].double().mean() for r in results])
            log_volumes = [r["log_volume"] for r in results]
            pooled, se = _pooled_by_constants(means, log_volumes)
            log_v, runs = log_mean_exp(log_volumes), len(results)
            evaluations = sum(r["evaluations"] for r in results) / runs
            rates[moves] = ess / seconds
            ratio = f"{rates['layers'] / rates['joint']:.2f}" if moves == "layers" else ""
            print(f"| {figure} | {depth} | {activation} | {moves} | {seconds / runs:.3f} | "
                  f"{evaluations:,.0f} | {ess / runs:.1f} | {ess / seconds:.0f} | {pooled:.4f} ({se:.4f}) | "
                  f"{log_v:.2f} | {ratio} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
