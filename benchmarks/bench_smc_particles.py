"""SMC's particle count on the paper's deep normalized-prior cells: ESS per second and the
posterior mean of L_gen at N = 500 (32 runs) against N = 2000 (16 runs), seed 0's problem,
one population of runs (``smc._runs``), one thread. Prints one row per (cell, N): seconds per
run, ESS per run and per second (the ESS from the spread of the runs' means), and the mean of
the runs' means with its standard error, so a difference between N = 500 and N = 2000 can be
read against its noise; last, the runs' means pooled by their normalizing constants (the marginal
samplers' pooling) with the delta method's standard error, and the ESS per second of that pooled
mean (``smc.effective_sample_size`` with the runs' weights: what ``subset_simulation`` reports).

Run: ``python benchmarks/bench_smc_particles.py [--seed 11]``. The bias check of one cell, with
many runs so the standard errors are small (a bias from too few particles or too few pCN steps
a level shrinks as either grows; ``--mcmc-steps`` and ``--p0`` tell which):
``python benchmarks/bench_smc_particles.py --cells depth:6:tanh --populations 500x1024,2000x256,8000x64``
(runs are made in groups of at most 64, one population each, so memory stays bounded).
Cells outside the paper: ``--set m=8,m2=8,n=30,width=20,eps=0.01`` changes those settings of every
cell named by ``--cells`` (the problem is then built from them, seed 0).
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
    parser.add_argument("--cells", help="figure:depth:activation, comma-separated (default: the seven)")
    parser.add_argument("--populations", help="NxRUNS, comma-separated (default: 500x32,2000x16)")
    parser.add_argument("--mcmc-steps", type=int, default=10, help="pCN steps per level (default 10)")
    parser.add_argument("--p0", type=float, default=0.1, help="fraction kept per level (default 0.1)")
    parser.add_argument("--set", default="", help="KEY=VALUE settings of every cell, comma-separated")
    args = parser.parse_args()
    cells = CELLS
    if args.cells:
        cells = [(f, int(d), a) for f, d, a in (item.split(":") for item in args.cells.split(","))]
    populations = POPULATIONS
    if args.populations:
        populations = [tuple(int(v) for v in item.split("x")) for item in args.populations.split(",")]
    changes = dict(_setting(item) for item in args.set.split(",") if item)
    torch.set_num_threads(1)
    print(
        "| figure | depth | activation | N | runs | s per run | ESS per run | ESS per s | mean L_gen (se) "
        "| pooled by Z (se) | pooled ESS per s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for figure, depth, activation in cells:
        # a cell outside the paper starts from the figure's first cell of that activation
        cell = paper_cell(figure, activation=activation, **({} if changes else {"depth": depth}))
        params = {**cell.params, "depth": depth, **changes}
        problem, model, prior = gc_setup(params, 0, "cpu")
        for particles, runs in populations:
            settings = {"n_particles": particles, "p0": args.p0, "mcmc_steps": args.mcmc_steps,
                        "max_levels": 500, "target_acceptance": 0.3, "max_evaluations": 10**9}  # fmt: skip
            start = time.perf_counter()
            generator, results = torch.Generator().manual_seed(args.seed), []
            for group in range(0, runs, 64):
                results += smc._runs(problem, model, prior, params["eps"], min(64, runs - group),
                                     settings, generator, problem.dtype)  # fmt: skip
            seconds = time.perf_counter() - start
            ess = smc.effective_sample_size([r["gen"] for r in results], 0)
            means = torch.stack([r["gen"].double().mean() for r in results])
            mean, se = float(means.mean()), float(means.std() / runs**0.5)
            log_volumes = [r["log_volume"] for r in results]
            by_z, by_z_se = _pooled_by_constants(means, log_volumes)
            pooled_ess = smc.effective_sample_size([r["gen"] for r in results], 0, smc.run_weights(results))
            print(f"| {figure} | {depth} | {activation} | {particles} | {runs} | {seconds / runs:.3f} | "
                  f"{ess / runs:.1f} | {ess / seconds:.0f} | {mean:.4f} ({se:.4f}) | "
                  f"{by_z:.4f} ({by_z_se:.4f}) | {pooled_ess / seconds:.0f} |")  # fmt: skip


def _pooled_by_constants(means: torch.Tensor, log_volumes: list[float]) -> tuple[float, float]:
    """The runs' means pooled by their normalizing constants (the ratio estimator the marginal
    samplers' tempered runs use, ``factorkit.fit.weights.tempered_runs``) and its delta-method
    standard error: whether that pooling removes a run-level bias the plain mean keeps."""
    logs = torch.tensor(log_volumes, dtype=torch.float64)
    v = torch.softmax(logs, 0)
    pooled = float((v * means).sum())
    runs = len(log_volumes)
    return pooled, float((runs / (runs - 1) * (v.square() * (means - pooled).square()).sum()).sqrt())


def _setting(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` with the value as an int, a float or a string, in that order."""
    key, _, text = item.partition("=")
    for kind in (int, float):
        try:
            return key, kind(text)
        except ValueError:
            pass
    return key, text


if __name__ == "__main__":
    main()
