"""The paper run's G&C with SMC's level fraction p0 = 0.1 against 0.25, cell by cell (issue 29).

Every G&C cell of the named depth figures (k = 5, depths 2-10, three activations; the paper run's
auto sampler: pilots, then SMC of 8 runs of 500 particles and more runs until an ESS of 200) on
one seed's problem, once with ``p0 = 0.1`` (the default) and once with ``0.25`` (each level keeps
a quarter of the particles: more levels, each resampled from four times as many survivors).
Printed per figure and activation: core-seconds, evaluations, the ESS reached (min, median) and
the mean over cells of each cell's posterior mean L_gen; one torch thread.
``benchmarks/bench_smc_knobs.py --held-out`` measures the same choice in ESS per evaluation.

Run: ``python benchmarks/bench_smc_levels.py [--figures depth,depth_completion] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import torch

from factorkit.experiments.paper import paper_configs
from factorkit.experiments.run.jobs import Job, run_gc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--figures", default="depth,depth_completion")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| figure | activation | p0 | core-s | evaluations | ESS min, median | mean L_gen over cells |")
    print("|---|---|---|---|---|---|---|")
    for figure in args.figures.split(","):
        (config,) = paper_configs(figures=[figure])
        cells = [cell for cell in config.cells() if cell.method == "gc"]
        for activation in sorted({cell.params["activation"] for cell in cells}):
            mine = [cell for cell in cells if cell.params["activation"] == activation]
            for p0 in (0.1, 0.25):
                rows = []
                for cell in mine:
                    changed = replace(cell, settings=tuple(sorted({**cell.params, "p0": p0}.items())))
                    rows += run_gc(Job(changed, (args.seed,)), "bench", "cpu")
                seconds = sum(r["wall_time"] for r in rows)
                ess = [r["ess"] for r in rows]
                gen = statistics.mean(r["gen_loss"] for r in rows)
                evaluations = sum(r["evaluations"] for r in rows)
                print(f"| {figure} | {activation} | {p0} | {seconds:.1f} | {evaluations:,} | "
                      f"{min(ess):.0f}, {statistics.median(ess):.0f} | {gen:.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
