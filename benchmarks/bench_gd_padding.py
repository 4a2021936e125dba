"""GD over a width or depth sweep: one padded batch against one batch per width or depth (issues 19, 29).

The paper's width panel (k in 5..160, d = 2, 8 seeds, GroupRMSprop, lr 1e-4, from the
``torch_linear`` start at scale 1e-3) for ``--steps`` steps, float64, on the study's problems:
``per width`` trains each width's 8 seeds as one batch (the runner before this change), ``padded``
trains all 48 nets as one population of width 160 (the runner now). Both in this process, one
torch thread as in a pool worker; the largest L_gen difference between the two is printed.

``--depth``: the paper's depth panel instead (k = 5, d in 2..10, leaky ReLU, lr 1e-2, float32 as
the paper's runs, 8 seeds): ``per depth`` trains each depth's 8 seeds as one batch, ``padded``
all 72 nets as one population of depth 10 (identity layers, :class:`~factorkit.models.MixedDepths`).
These runs are chaotic at lr 1e-2 (normalized steps oscillate about the interpolating set), so the
last-bit differences of the batched gradient norm (its sum holds the identity layers' zeros) grow;
the table's last column shows the same runs alone from starts one float32 ulp (1.2e-7) larger.

Run: ``python benchmarks/bench_gd_padding.py [--steps 2000] [--depth]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from factorkit.fit.gd import train_gd
from factorkit.models import DeepFactorization, MixedDepths
from factorkit.problems import ProblemBatch, make_sensing_problem

WIDTHS = [5, 10, 20, 40, 80, 160]
DEPTHS = list(range(2, 11))


def starts(width, seeds, pad_to):
    model = DeepFactorization(5, 5, width, 2, "tanh")
    weights = [
        model.pad(model.init_weights(1, 1e-3, torch.Generator().manual_seed(s), init="torch_linear"), pad_to)
        for s in seeds
    ]
    return [torch.cat([w[layer] for w in weights]).double() for layer in range(2)]


def depth_starts(depth, seeds):
    model = DeepFactorization(5, 5, 5, depth, "leaky_relu")
    weights = [
        model.deepen(model.init_weights(1, 0.1, torch.Generator().manual_seed(s), init="torch_linear"), 10)
        for s in seeds
    ]
    return [torch.cat([w[layer] for w in weights]) for layer in range(10)]


def depth_panel(steps: int) -> tuple[float, float, float, float]:
    seeds = list(range(8))
    problems = [make_sensing_problem(5, 5, 1, 15, seed=s) for s in seeds]
    options = {"lr": 1e-2, "max_steps": steps, "optimizer": "group_rmsprop", "progress": False}

    def per_depth(change: float) -> list[torch.Tensor]:
        losses = []
        for depth in DEPTHS:
            own = [
                w * change
                for layer, w in enumerate(depth_starts(depth, seeds))
                if layer < depth - 1 or layer == 9
            ]
            result = train_gd(ProblemBatch.of(problems), DeepFactorization(5, 5, 5, depth, "leaky_relu"),
                              seeds=seeds, initial=own, **options)  # fmt: skip
            losses.append(result.gen_loss)
        return losses

    start = time.perf_counter()
    separate = per_depth(1.0)
    t_separate = time.perf_counter() - start
    start = time.perf_counter()
    initial = [torch.cat(parts) for parts in zip(*(depth_starts(d, seeds) for d in DEPTHS), strict=True)]
    model = MixedDepths(5, 5, 5, 10, "leaky_relu", depths=tuple(d for d in DEPTHS for _ in seeds))
    padded = train_gd(ProblemBatch.of(problems * len(DEPTHS)), model, seeds=list(range(len(initial[0]))),
                      initial=initial, **options)  # fmt: skip
    t_padded = time.perf_counter() - start
    reference = torch.cat(separate)
    gap = float(((padded.gen_loss - reference).abs() / reference.abs()).max())
    nudged = torch.cat(per_depth(1.0 + torch.finfo(torch.float32).eps))  # one ulp
    return t_separate, t_padded, gap, float(((nudged - reference).abs() / reference.abs()).max())


def width_panel(steps: int) -> tuple[float, float, float]:
    seeds = list(range(8))
    problems = [make_sensing_problem(5, 5, 1, 15, seed=s, dtype="float64") for s in seeds]
    options = {"lr": 1e-4, "max_steps": steps, "optimizer": "group_rmsprop", "progress": False}
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
    return t_separate, t_padded, gap, None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--depth", action="store_true", help="the depth panel (identity layers)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t_separate, t_padded, gap, nudged = (depth_panel if args.depth else width_panel)(args.steps)
    axis = "depth" if args.depth else "width"
    extra = ("", "") if nudged is None else (" alone, start x (1 + 1 ulp) |", "---|")
    print(f"| steps | per {axis} s | padded s | speed-up | max relative L_gen difference |{extra[0]}")
    print("|---|---|---|---|---|" + extra[1])
    row = f"| {args.steps} | {t_separate:.2f} | {t_padded:.2f} | {t_separate / t_padded:.2f}x | {gap:.1e} |"
    print(row + ("" if nudged is None else f" {nudged:.1e} |"))


if __name__ == "__main__":
    main()
