"""G&C prior draws evaluated per second: factorkit vs two baselines, in one process.

Baselines (each computes L_train and L_gen of every draw, like factorkit does):

* ``numpy_loop``: a straightforward per-sample NumPy loop (draw the layers, multiply, loss as
  ``sum(A * W)`` over the stacked measurements and complement basis);
* ``broadcast``: a direct vectorised torch implementation that forms the
  ``(batch, n, m, m')`` product of measurements and candidates and sums it (the approach of the
  paper's public code), with the same prior draws and chunk size as factorkit.

Run: ``python benchmarks/bench_guess_check.py [--widths 5 40 160] [--draws 400000]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from factorkit.fit.guess_check import Prior, default_chunk_size, guess_and_check
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem

EPS = 0.05


def best_rate(function, draws: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return draws / min(times)


def numpy_loop(problem, model, draws: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    A = problem.A.double().numpy()
    y = problem.y.double().numpy()
    B = problem.complement.double().numpy()
    yb = np.tensordot(B, problem.W_star.double().numpy(), axes=([1, 2], [0, 1]))
    shapes = model.layer_shapes()
    scales = Prior().scales(model)
    accepted = 0
    for _ in range(draws):
        W = rng.standard_normal(shapes[0]) * scales[0]
        for (rows, cols), scale in zip(shapes[1:], scales[1:], strict=True):
            W = (rng.standard_normal((rows, cols)) * scale) @ W
        train = np.mean(((A * W).sum(axis=(1, 2)) - y) ** 2)
        np.mean(((B * W).sum(axis=(1, 2)) - yb) ** 2)  # L_gen, as the other two compute it
        accepted += train < EPS
    return accepted


def broadcast(problem, model, draws: int, chunk: int, seed: int) -> int:
    generator = torch.Generator().manual_seed(seed)
    prior = Prior()
    A, y = problem.A, problem.y
    B = problem.complement
    yb = (B * problem.W_star).sum((1, 2))
    accepted = 0
    done = 0
    with torch.no_grad():
        while done < draws:
            count = min(chunk, draws - done)
            W = prior.sample(model, count, generator, problem.dtype)
            train = ((A.unsqueeze(0) * W.unsqueeze(1)).sum((-1, -2)) - y).square().mean(1)
            ((B.unsqueeze(0) * W.unsqueeze(1)).sum((-1, -2)) - yb).square().mean(1)
            accepted += int((train < EPS).sum())
            done += count
    return accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[5, 40, 160])
    parser.add_argument("--draws", type=int, default=400_000)
    parser.add_argument("--loop-draws", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float32")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, m = m' = 5, n = 15, d = 2, linear")
    print("| width | factorkit draws/s | numpy loop draws/s | broadcast draws/s | vs loop | vs broadcast |")
    print("|---|---|---|---|---|---|")
    for width in args.widths:
        model = DeepFactorization(5, 5, width, 2)
        chunk = default_chunk_size(model, problem.device)
        ours = best_rate(
            lambda model=model: guess_and_check(
                problem, model, eps=EPS, max_evaluations=args.draws, keep_samples=False, progress=False
            ),
            args.draws,
            args.repeats,
        )
        loop = best_rate(
            lambda model=model: numpy_loop(problem, model, args.loop_draws, 0), args.loop_draws, 1
        )
        wide = best_rate(
            lambda model=model, chunk=chunk: broadcast(problem, model, args.draws, chunk, 0),
            args.draws,
            args.repeats,
        )
        print(
            f"| {width} | {ours:,.0f} | {loop:,.0f} | {wide:,.0f} | {ours / loop:.0f}x | {ours / wide:.1f}x |"
        )


if __name__ == "__main__":
    main()
