"""GD steps at the paper's sizes are dispatch-bound: the previous version's operations against now.

``before``: a bare training loop (no loss history, no validation) with the previous version's
operations: ``W_{j+1} @ s(...)`` through ``matmul`` and GroupRMSprop with one square/sum and one
update per parameter. ``now``: the whole of :func:`train_gd` (``bmm``
products, one concatenated norm, one fused ``_foreach_addcmul_`` update). Both run the same
population (the paper's depth cells: k = 5, 16 seeds, float32, lr 1e-2) in this process on one
torch thread, as a study's pool worker does; the final weights of both agree to float32 rounding
(the largest relative difference is printed).

Run: ``python benchmarks/bench_gd_dispatch.py [--steps 2000]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from factorkit.fit.gd import initial_weights, train_gd
from factorkit.models import DeepFactorization
from factorkit.problems import ProblemBatch, make_sensing_problem


def before(problem, model, start, lr, steps):
    params = [w.clone().requires_grad_() for w in start]
    square_avg = torch.zeros(params[0].shape[0], dtype=params[0].dtype)
    for step in range(1, steps + 1):
        product = params[0]
        for weight in params[1:]:
            product = weight @ model.act(product)
        train, _ = problem.losses(product)
        for p in params:
            p.grad = None
        train.sum().backward()
        with torch.no_grad():
            squared = sum(p.grad.square().flatten(1).sum(1) for p in params)
            square_avg.mul_(0.99).add_(squared, alpha=0.01)
            size = lr / ((square_avg / (1 - 0.99**step)).sqrt() + 1e-6)
            for p in params:
                p.sub_(size.reshape(-1, 1, 1) * p.grad)
    return [p.detach() for p in params]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(16))
    problem = ProblemBatch.of([make_sensing_problem(5, 5, 1, 15, seed=s, dtype="float32") for s in seeds])
    print(
        "| depth | activation | before (ms/step) | now (ms/step) | speed-up | rel. diff float32 | float64 |"
    )
    print("|---|---|---|---|---|---|---|")
    for depth, activation in [(2, "tanh"), (6, "tanh"), (10, "tanh"), (10, "leaky_relu"), (10, "linear")]:
        model = DeepFactorization(5, 5, 5, depth, activation)
        start = [w.float() for w in initial_weights(model, seeds, 0.1, "torch_linear")]
        before(problem, model, start, 1e-2, 20)  # warm up both
        train_gd(problem, model, seeds=seeds, initial=start, lr=1e-2, max_steps=20, optimizer="group_rmsprop",
                 progress=False)  # fmt: skip
        t = time.perf_counter()
        old = before(problem, model, start, 1e-2, args.steps)
        t_before = (time.perf_counter() - t) / args.steps
        t = time.perf_counter()
        new = train_gd(problem, model, seeds=seeds, initial=start, lr=1e-2, max_steps=args.steps,
                       optimizer="group_rmsprop", progress=False).weights  # fmt: skip
        t_now = (time.perf_counter() - t) / args.steps
        diff = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(new, old, strict=True))
        # the same in float64 over 200 steps: what is left is summation order, not the algorithm
        start64 = [w.double() for w in start]
        problem64 = ProblemBatch.of(
            [make_sensing_problem(5, 5, 1, 15, seed=s, dtype="float64") for s in seeds]
        )
        old64 = before(problem64, model, start64, 1e-2, 200)
        new64 = train_gd(problem64, model, seeds=seeds, initial=start64, lr=1e-2, max_steps=200,
                         optimizer="group_rmsprop", progress=False).weights  # fmt: skip
        diff64 = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(new64, old64, strict=True))
        print(f"| {depth} | {activation} | {t_before * 1e3:.3f} | {t_now * 1e3:.3f} | "
              f"{t_before / t_now:.2f}x | {diff:.1e} | {diff64:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
