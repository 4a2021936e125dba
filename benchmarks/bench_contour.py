"""The contour integral's layout (:func:`factorkit.fit.ball._contour`): rows a chunk at a time
against every row at once, on the draws that go to the contour in the paper's deep cells.

For each cell (the unnormalized depth figure, seed 0's problem, eps = 0.01) 4,096 hidden-layer
draws are analysed; the 2,000 with the largest Chernoff bounds are the rows the marginal sampler
computes exactly, and of those the ones whose spectrum sends them to the contour are timed
(best of 3, one thread) under each layout: ``rows x block`` (``all`` = every row at once, the
layout before 2026-12-06, blocks of 256 nodes). The log-probabilities of every layout are compared
with the first's (they differ only where a block boundary moves the stopping node: below
``rtol = 1e-12`` relative).

Run: ``python benchmarks/bench_contour.py``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit import ball
from factorkit.fit.hidden import HiddenLayers
from factorkit.fit.marginal import OutputLayerIntegral

CELLS = [("linear", 5), ("linear", 9), ("tanh", 9), ("leaky_relu", 5)]
LAYOUTS = [(None, 256), (None, 128), (64, 128), (128, 128), (256, 128), (128, 256)]


def contour_rows(activation: str, depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lam, c2, t)`` of the rows the marginal sampler sends to the contour on this cell."""
    params = {**paper_cell("depth_unnormalized", activation=activation).params, "depth": depth}
    problem, model, prior = gc_setup(params, 0, "cpu")
    integral = OutputLayerIntegral(problem.to(dtype=torch.float64), model, prior, params["eps"])
    hidden = HiddenLayers(model, prior)
    generator = torch.Generator().manual_seed(0)
    analysis = integral.analyse(hidden.gram(hidden.draw(4096, generator), 4096), floor=np.inf)
    top = np.argsort(-analysis.bound)[:2000]
    positive, centre, c0, rank = ball.split_spectrum(analysis.values[top], analysis.centre[top])
    t = integral.radius2 - c0
    smallest = np.where(positive > 0, positive, np.inf).min(1)
    full = rank == positive.shape[1]  # one rank, as log_ball_probability groups them
    rows = np.flatnonzero(full & (t > 0) & (0.5 * t / smallest > ball.RUBEN_TERMS))
    return positive[rows], centre[rows] ** 2, t[rows]


def timed(lam, c2, t, rows: int | None, block: int) -> tuple[float, np.ndarray]:
    step = rows or lam.shape[0]
    best, out = np.inf, None
    for _ in range(3):
        start = time.perf_counter()
        out = np.concatenate([
            ball._contour_rows(lam[i : i + step], c2[i : i + step], t[i : i + step], 1e-12, block=block)
            for i in range(0, lam.shape[0], step)
        ])  # fmt: skip
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    torch.set_num_threads(1)
    print("| cell | contour rows | layout (rows x block) | seconds | vs all x 256 | largest difference |")
    print("|---|---:|---|---:|---:|---:|")
    for activation, depth in CELLS:
        lam, c2, t = contour_rows(activation, depth)
        base = reference = None
        for rows, block in LAYOUTS:
            seconds, out = timed(lam, c2, t, rows, block)
            if base is None:
                base, reference = seconds, out
            finite = np.isfinite(reference)
            difference = float(np.abs(out[finite] - reference[finite]).max()) if finite.any() else 0.0
            chosen = " (default)" if (rows, block) == (ball.CONTOUR_ROWS, ball.CONTOUR_BLOCK) else ""
            print(f"| {activation} depth {depth} | {lam.shape[0]} | {rows or 'all'} x {block}{chosen} | "
                  f"{seconds:.3f} | {base / seconds:.2f}x | {difference:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
