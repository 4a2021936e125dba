"""SMC's layer moves with and without :class:`factorkit.fit.smc.ForwardCache`, the paper's way.

A pCN move of one layer changes that layer only, so the population's layer weights and partial
products ``p_j = W_j s(p_{j-1})`` can be kept and a move evaluated from its layer on (about half a
forward pass over a scan, and one layer's prior map instead of all). The cache runs the same
operations on the same inputs as the whole forward pass, so the runs are the same to the last bit:
this checks that (log V, the posterior mean of ``L_gen`` and the evaluation count of every row
must be equal) and times both ways in one process, one torch thread, alternating which goes first.

Cells: G&C rows of the paper's depth figures at their published thresholds, as ``study paper``
runs them (``run_gc``: the ``auto`` sampler, which takes SMC there), seeds 0-3; the deep leaky
ReLU cells are most of each figure's G&C time. Printed per cell: seconds each way, the ratio,
and whether every row matched.

Run: ``python benchmarks/bench_forward_cache.py [--seeds 0-3] [--cells depth:10:leaky_relu ...]``.
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch
from bench_directions import seeds_of  # the script's folder is on sys.path

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import run_gc
from factorkit.fit import smc

CELLS = [
    "depth:10:leaky_relu",
    "depth:8:tanh",
    "depth:4:linear",
    "depth_uniform:10:leaky_relu",
    "depth_uniform:7:tanh",
    "depth_completion:9:leaky_relu",
    "depth_unnormalized:9:leaky_relu",
    "depth_rank2:8:leaky_relu",
]


def rows_of(cell, seeds: list[int], cached: bool) -> tuple[float, list[tuple]]:
    smc.FORWARD_CACHE = cached
    try:
        start = time.perf_counter()
        rows = [run_gc(SimpleNamespace(cell=cell, seeds=[seed]), "bench", "cpu")[0] for seed in seeds]
        seconds = time.perf_counter() - start
    finally:
        smc.FORWARD_CACHE = True
    return seconds, [(r["log_volume"], r["gen_loss"], r["evaluations"], r["sampler"]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=CELLS, help="figure:depth:activation")
    parser.add_argument("--seeds", default="0-3")
    args = parser.parse_args()
    seeds = seeds_of(args.seeds)
    torch.set_num_threads(1)
    print("| cell | samplers | whole forward s | cached s | speed-up | rows equal |")
    print("|---|---|---|---|---|---|")
    totals = [0.0, 0.0]
    for index, name in enumerate(args.cells):
        figure, depth, activation = name.split(":")
        cell = paper_cell(figure, depth=int(depth), activation=activation)
        order = (False, True) if index % 2 == 0 else (True, False)
        results = {cached: rows_of(cell, seeds, cached) for cached in order}
        (plain, plain_rows), (cached, cached_rows) = results[False], results[True]
        totals[0] += plain
        totals[1] += cached
        samplers = ",".join(sorted({row[3] for row in cached_rows}))
        equal = "yes" if plain_rows == cached_rows else "NO"
        print(f"| {name} | {samplers} | {plain:.2f} | {cached:.2f} | {plain / cached:.2f}x | {equal} |")
    print(f"| all | | {totals[0]:.2f} | {totals[1]:.2f} | {totals[0] / totals[1]:.2f}x | |")


if __name__ == "__main__":
    main()
