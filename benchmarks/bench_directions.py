"""Directions per hidden draw in the normalized eps = 0 sampler: fewer, cheaper and noisier.

    python benchmarks/bench_directions.py [--counts 16 64] [--seeds 0-7] [--cells 2:linear ...] [--out FILE]
    python benchmarks/bench_directions.py --summarize FILE [FILE ...]

:class:`factorkit.fit.normalized.Directions` estimates each hidden draw's direction integral
without bias from ``count`` directions (``normalized.DIRECTIONS``, 64); tempered SMC over the
hidden latents and the directions' latents is then exact whatever the count, but a noisier
estimate mixes worse and a larger count costs more per evaluation. This runs the depth figure's
``eps = 0`` rows (normalized Gaussian prior, width 5; ``study paper --zero-depth``'s cells, as
its runner runs them: the effort check included) for every cell, seed and count, one thread,
alternating the counts seed by seed, and writes a JSON line per row to ``--out``. The summary,
per cell and count: seconds, the ESS per second, rows that moved with the effort, and against the
largest count the mean over seeds of the paired differences of ``log p(h = y)`` and of the
posterior mean of ``L_gen`` with their standard errors across seeds (each seed is its own problem:
a difference near zero says the counts agree, whatever the problems' spread). Run two processes
with different ``--cells`` on two cores and summarize both files together.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from types import SimpleNamespace

import numpy as np
import torch

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import run_gc
from factorkit.fit import normalized

CELLS = ["2:linear", "2:tanh", "2:leaky_relu", "3:linear"]


def seeds_of(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def run(cells: list[str], counts: list[int], seeds: list[int], out: str) -> None:
    torch.set_num_threads(1)
    with open(out, "a") as sink:
        for cell_name in cells:
            depth, activation = cell_name.split(":")
            cell = paper_cell("depth", zero_depth=True, depth=int(depth), activation=activation, eps=0.0)
            for seed in seeds:
                for count in counts if seed % 2 == 0 else counts[::-1]:
                    normalized.DIRECTIONS = count
                    start = time.perf_counter()
                    (row,) = run_gc(SimpleNamespace(cell=cell, seeds=[seed]), "bench", "cpu")
                    effort = row["effort"] if isinstance(row["effort"], dict) else json.loads(row["effort"])
                    record = {
                        "cell": cell_name, "seed": seed, "count": count,
                        "seconds": time.perf_counter() - start,
                        "ess": row["ess"], "log_density": row["log_density"], "gen_loss": row["gen_loss"],
                        "moved": not effort["converged"], "evaluations": row["evaluations"],
                    }  # fmt: skip
                    sink.write(json.dumps(record) + "\n")
                    sink.flush()
                    print(record, flush=True)


def summarize(files: list[str]) -> None:
    rows = [json.loads(line) for name in files for line in open(name) if line.strip()]
    print("| cell | directions | rows | seconds | ESS per s | moved | d log p (se) | d L_gen (se) |")
    print("|---|---|---|---|---|---|---|---|")
    for cell in dict.fromkeys(r["cell"] for r in rows):
        mine = [r for r in rows if r["cell"] == cell]
        counts = sorted({r["count"] for r in mine})
        reference = {r["seed"]: r for r in mine if r["count"] == counts[-1]}
        for count in counts:
            these = [r for r in mine if r["count"] == count and r["seed"] in reference]
            seconds = sum(r["seconds"] for r in these)
            ess = sum(r["ess"] for r in these)
            cells = [f"| {cell} | {count} | {len(these)} | {seconds:.0f} | {ess / seconds:.1f} "]
            cells.append(f"| {sum(r['moved'] for r in these)} ")
            for key in ("log_density", "gen_loss"):
                diff = np.array([r[key] - reference[r["seed"]][key] for r in these])
                se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else float("nan")
                cells.append(f"| {diff.mean():+.4f} ({se:.4f}) ")
            print("".join(cells) + "|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seeds", default="0-7")
    parser.add_argument("--cells", nargs="+", default=CELLS, help="depth:activation")
    parser.add_argument("--out", default="bench_directions.jsonl")
    parser.add_argument("--summarize", nargs="+", metavar="FILE")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    run(args.cells, sorted(args.counts), seeds_of(args.seeds), args.out)
    summarize([args.out])


if __name__ == "__main__":
    main()
