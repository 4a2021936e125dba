"""One activation per member by slices against masks, on the paper run's GD batches (issue 29).

A GD batch of the paper run mixes activations (linear, tanh, leaky ReLU: one per member,
:class:`~factorkit.models.MemberActivations`). ``masks`` applies every activation to the whole
population and selects each member's by a mask (the kernel before; its backward is two more
full selections per activation); ``slices`` splits the population, ordered by activation, into
its runs of one activation and concatenates; ``both`` splits the backward pass as well (from
``SLICED_BACKWARD_ELEMENTS``: the wide batches). The study's own batches of the
named figures (``gd_batch``: members, starts, problems), ``--steps`` group-RMSprop steps, float64,
one torch thread as in a pool worker, best of three (alternating which goes first); the last
column says whether the two runs' end-to-end matrices are bit for bit the same (each member's
arithmetic is its own either way). Batches of one activation, or too small to split
(``SLICED_ELEMENTS``), run the same kernel both ways: their rows (``same kernel``) show the
machine's own spread.

Run: ``python benchmarks/bench_member_activations.py [--figures width,width_rank2] [--steps 500]``.
"""

from __future__ import annotations

import argparse
import time

import torch

import factorkit.models.deep as deep
from factorkit.experiments.paper import paper_configs
from factorkit.experiments.run.jobs import gd_batch
from factorkit.experiments.run.plan import gd_jobs
from factorkit.fit.gd import train_gd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--figures", default="width,width_rank2,depth")
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    columns = (
        "figure | members | width | depth | kernel | masks ms/step | slices ms/step | both ms/step | "
        "slices / masks | both / slices | same W"
    )
    print(f"| {columns} |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    sliced, backward = deep.SLICED_RUNS, deep.SLICED_BACKWARD_ELEMENTS
    # masks: every activation on the whole population (SLICED_RUNS 0); slices: the forward pass
    # split, the backward by masks; both: the backward split too (from SLICED_BACKWARD_ELEMENTS)
    kernels = (("masks", 0, backward), ("slices", sliced, float("inf")), ("both", sliced, backward))
    for figure in args.figures.split(","):
        (config,) = paper_configs(figures=[figure])
        cells = [(cell, config.seeds) for cell in config.cells() if cell.method == "gd"]
        for job in gd_jobs(cells):
            best, results = {}, {}
            for repeat in range(3):
                for name, runs, elements in kernels if repeat % 2 == 0 else kernels[::-1]:
                    deep.SLICED_RUNS, deep.SLICED_BACKWARD_ELEMENTS = runs, elements
                    members, arguments = gd_batch(job, "cpu")
                    problem, model = arguments.pop("problem"), arguments.pop("model")
                    arguments["max_steps"] = args.steps
                    start = time.perf_counter()
                    results[name] = train_gd(problem, model, **arguments)
                    seconds = (time.perf_counter() - start) / args.steps
                    best[name] = min(best.get(name, float("inf")), seconds)
            deep.SLICED_RUNS, deep.SLICED_BACKWARD_ELEMENTS = sliced, backward
            same = all(torch.equal(results["masks"].W, results[name].W) for name in ("slices", "both"))
            times = " | ".join(f"{1e3 * best[name]:.2f}" for name, _, _ in kernels)
            ratios = f"{best['masks'] / best['slices']:.2f}x | {best['slices'] / best['both']:.2f}x"
            mixed = len({cell.params["activation"] for cell, _ in members}) > 1 or model.depth > min(
                cell.params["depth"] for cell, _ in members
            )
            size = len(members) * model.width * model.m2
            kernel = "same kernel" if not mixed or size < deep.SLICED_ELEMENTS else "split"
            kernel += ", backward split" if mixed and size >= backward else ""
            shape = f"{len(members)} | {model.width} | {model.depth} | {kernel}"
            print(f"| {figure} | {shape} | {times} | {ratios} | {same} |", flush=True)


if __name__ == "__main__":
    main()
