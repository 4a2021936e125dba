"""Batched GD: P seeds as one population vs P sequential single-seed runs, in one process.

Both train the same P initialisations for the same number of steps (no early stop) and give
the same weights (tests/test_gd.py checks equality); only the wall time differs.

Run: ``python benchmarks/bench_gd.py [--population 64] [--steps 500]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from factorkit.fit.gd import train_gd
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--optimizer", default="group_rmsprop")
    args = parser.parse_args()
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    seeds = list(range(args.population))
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, P = {args.population}, "
        f"{args.steps} steps, {args.optimizer}, float64"
    )
    print("| model | batched s | sequential s | speed-up |")
    print("|---|---|---|---|")
    for width, depth, activation in [(5, 2, "linear"), (40, 2, "linear"), (5, 6, "tanh")]:
        model = DeepFactorization(5, 5, width, depth, activation)
        kwargs = dict(
            init_scale=1e-3, lr=1e-3, max_steps=args.steps, optimizer=args.optimizer, progress=False
        )
        train_gd(problem, model, seeds=seeds[:2], **{**kwargs, "max_steps": 5})  # warm-up
        start = time.perf_counter()
        batched = train_gd(problem, model, seeds=seeds, **kwargs)
        batched_time = time.perf_counter() - start
        start = time.perf_counter()
        singles = [train_gd(problem, model, seeds=[seed], **kwargs) for seed in seeds]
        sequential_time = time.perf_counter() - start
        torch.testing.assert_close(torch.cat([s.W for s in singles]), batched.W)
        print(
            f"| k={width}, d={depth}, {activation} | {batched_time:.2f} | {sequential_time:.2f} | "
            f"{sequential_time / batched_time:.1f}x |"
        )


if __name__ == "__main__":
    main()
