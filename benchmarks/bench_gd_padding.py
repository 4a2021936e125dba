"""GD over a width sweep: one zero-padded batch against one batch per width (issue 19).

The paper's width panel (k in 5..160, d = 2, 8 seeds, GroupRMSprop, lr 1e-4, from the
``torch_linear`` start at scale 1e-3) for ``--steps`` steps, float64, on the study's problems:
``per width`` trains each width's 8 seeds as one batch (the runner before this change), ``padded``
trains all 48 nets as one population of width 160 (the runner now). Both in this process, one
torch thread as in a pool worker; the largest L_gen difference between the two is printed.

Run: ``python benchmarks/bench_gd_padding.py [--steps 2000]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from factorkit.fit.gd import train_gd
from factorkit.models import DeepFactorization
from factorkit.problems import ProblemBatch, make_sensing_problem

WIDTHS = [5, 10, 20, 40, 80, 160]


def starts(width, seeds, pad_to):
    model = DeepFactorization(5, 5, width, 2, "tanh")
    weights = [
        model.pad(model.init_weights(1, 1e-3, torch.Generator().manual_seed(s), init="torch_linear"), pad_to)
        for s in seeds
    ]
    return [torch.cat([w[layer] for w in weights]).double() for layer in range(2)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(8))
    problems = [make_sensing_problem(5, 5, 1, 15, seed=s, dtype="float64") for s in seeds]
    options = {"lr": 1e-4, "max_steps": args.steps, "optimizer": "group_rmsprop", "progress": False}

    start = time.perf_counter()
    separate = []
    for width in WIDTHS:
        result = train_gd(ProblemBatch.of(problems), DeepFactorization(5, 5, width, 2, "tanh"), seeds=seeds,
                          initial=starts(width, seeds, width), **options)  # fmt: skip
        separate.append(result.gen_loss)
    t_separate = time.perf_counter() - start

    start = time.perf_counter()
    initial = [torch.cat(parts) for parts in zip(*(starts(w, seeds, 160) for w in WIDTHS), strict=True)]
    padded = train_gd(ProblemBatch.of(problems * len(WIDTHS)), DeepFactorization(5, 5, 160, 2, "tanh"),
                      seeds=list(range(len(initial[0]))), initial=initial, **options)  # fmt: skip
    t_padded = time.perf_counter() - start
    gap = float(((padded.gen_loss - torch.cat(separate)).abs() / torch.cat(separate).abs()).max())
    print("| steps | per width s | padded s | speed-up | max relative L_gen difference |")
    print("|---|---|---|---|---|")
    print(f"| {args.steps} | {t_separate:.2f} | {t_padded:.2f} | {t_separate / t_padded:.2f}x | {gap:.1e} |")


if __name__ == "__main__":
    main()
