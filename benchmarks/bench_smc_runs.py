"""Subset simulation's independent runs moved as one population against one run at a time.

The paper's depth figures' SMC cells (k = 5, published thresholds, 8 runs of 500 particles,
p0 = 0.1, 10 pCN steps a level, seed 0's problem): ``one at a time`` calls the run routine once
per run, ``together`` once for all 8 (each run keeps its own levels, resampling and step size).
Both in this process, on one thread as in a pool worker, best of three; same evaluations.

Run: ``python benchmarks/bench_smc_runs.py``.
"""

from __future__ import annotations

import time

import torch

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit.smc import _runs

CELLS = [
    ("depth", 2, "linear"),
    ("depth", 4, "tanh"),
    ("depth", 7, "leaky_relu"),
    ("depth_uniform", 10, "leaky_relu"),
    ("depth_rank2", 9, "tanh"),
]


def main() -> None:
    torch.set_num_threads(1)
    print("| figure | depth | activation | one at a time s | together s | speed-up |")
    print("|---|---|---|---|---|---|")
    for figure, depth, activation in CELLS:
        cell = paper_cell(figure, depth=depth, activation=activation)
        problem, model, prior = gc_setup(cell.params, 0, "cpu")
        settings = {"n_particles": 500, "p0": 0.1, "mcmc_steps": 10, "max_levels": 500,
                    "target_acceptance": 0.3, "max_evaluations": 10**9}  # fmt: skip
        eps = cell.params["eps"]
        best = {"alone": float("inf"), "together": float("inf")}
        for repeat in range(3):
            for name, batches in (("alone", [1] * 8), ("together", [8])):
                generator = torch.Generator().manual_seed(repeat)
                start = time.perf_counter()
                for count in batches:
                    _runs(problem, model, prior, eps, count, settings, generator, problem.dtype)
                best[name] = min(best[name], time.perf_counter() - start)
        ratio = best["alone"] / best["together"]
        times = f"{best['alone']:.2f} | {best['together']:.2f}"
        print(f"| {figure} | {depth} | {activation} | {times} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
