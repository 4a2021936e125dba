"""GD by hand against autograd on the paper run's own GD batches (``factorkit study paper``).

Every GD job of the paper (``gd_jobs`` over all figures' GD cells, as the runner batches them:
mixed widths, depths and activations) is timed three ways in this process, one torch thread as
in a study's pool worker, interleaved and best of ``--repeats``:

* ``autograd``: the whole net through autograd (the model as if it had no backward pass);
* ``layers``: the model's written-out backward pass (``DeepFactorization.backward``), the loss's
  gradient in ``W`` still by autograd (the problem as if it had no ``losses_and_gradient``);
* ``by hand``: both written out, what :func:`factorkit.fit.train_gd` runs now.

Each job's seconds per step times its steps give the paper's GD core-minutes per way (the
planner's one-off costs aside). The ways compute the same gradients to rounding
(``tests/test_deep.py``, ``tests/test_gd.py``).

Run: ``python benchmarks/bench_gd_by_hand.py [--steps 300] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from factorkit.experiments.paper import paper_configs
from factorkit.experiments.run.jobs import gd_batch
from factorkit.experiments.run.plan import gd_jobs
from factorkit.fit.gd import train_gd
from factorkit.models.deep import DeepFactorization
from factorkit.problems.sensing import ProblemBatch

WAYS = ("autograd", "layers", "by hand")


@contextlib.contextmanager
def way(name: str):
    """Hide the written-out parts a way does without (class attributes, restored after)."""
    saved = DeepFactorization.has_backward, ProblemBatch.losses_and_gradient
    if name == "autograd":
        DeepFactorization.has_backward = lambda self: False
    if name != "by hand":
        ProblemBatch.losses_and_gradient = None
    try:
        yield
    finally:
        DeepFactorization.has_backward, ProblemBatch.losses_and_gradient = saved


def paper_gd_cells() -> list:
    """Every figure's GD cells with their seeds, a run two figures share counted once."""
    seen, cells = set(), []
    for config in paper_configs():
        for cell in config.cells():
            if cell.method != "gd":
                continue
            seeds = tuple(s for s in config.seeds if cell.key(s) not in seen)
            seen |= {cell.key(s) for s in seeds}
            if seeds:
                cells.append((cell, seeds))
    return cells


def paper_gd_batches():
    """Every GD job of the paper as the runner batches it: ``(job, members, problem, model,
    train_gd's other arguments)``."""
    for job in gd_jobs(paper_gd_cells()):
        members, arguments = gd_batch(job, "cpu")
        yield job, members, arguments.pop("problem"), arguments.pop("model"), arguments


def timing_arguments() -> argparse.Namespace:
    """``--steps`` and ``--repeats`` of the GD step benchmarks (one torch thread, as a pool worker)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    torch.set_num_threads(1)
    return parser.parse_args()


def main() -> None:
    args = timing_arguments()
    totals = dict.fromkeys(WAYS, 0.0)
    print("| members | width | depths | steps | autograd ms/step | layers | by hand | by hand speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for job, members, problem, model, arguments in paper_gd_batches():
        best = dict.fromkeys(WAYS, float("inf"))
        for name in WAYS:  # warm-up: one-off costs out of the timing
            with way(name):
                train_gd(problem, model, **{**arguments, "max_steps": 3, "eps_train": None})
        for _ in range(args.repeats):
            for name in WAYS:
                with way(name):
                    start = time.perf_counter()
                    train_gd(problem, model, **{**arguments, "max_steps": args.steps, "eps_train": None})
                    best[name] = min(best[name], (time.perf_counter() - start) / args.steps)
        steps = job.cell.params["steps"]
        for name in WAYS:
            totals[name] += best[name] * steps
        depths = getattr(model, "depths", None)
        shown = f"{min(depths)}-{max(depths)}" if depths else str(model.depth)
        print(
            f"| {len(members)} | {model.width} | {shown} | {steps} | "
            + " | ".join(f"{best[name] * 1e3:.3f}" for name in WAYS)
            + f" | {best['autograd'] / best['by hand']:.2f}x |",
            flush=True,
        )
    minutes = ", ".join(f"{name} {totals[name] / 60:.2f}" for name in WAYS)
    print(f"\nthe paper's GD, core-minutes: {minutes} ({totals['autograd'] / totals['by hand']:.2f}x)")


if __name__ == "__main__":
    main()
