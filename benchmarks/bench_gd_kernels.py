"""Two GD-step kernels on the paper run's own GD batches (``factorkit study paper``), before and after.

* ``norms``: group RMSprop's per-member squared gradient norm (``population_axis=True``): one
  concatenation of the flattened gradients, a square and a sum (before) against one batched dot
  product per parameter where the layers are wide (``BMM_ELEMENTS``; the concatenation stays
  for many small layers).
* ``backward``: :class:`~factorkit.models.MemberActivations`' derivative: every activation's
  derivative on the whole population and a selection each (before) against the population split
  into its runs of one activation (from ``SLICED_BACKWARD_ELEMENTS``).

Every GD job of the paper (``gd_jobs`` over all figures' GD cells, as the runner batches them),
one torch thread as in a study's pool worker, ``--steps`` steps each way, interleaved, best of
``--repeats``; each job's seconds a step times its own steps give the paper's GD core-seconds
each way. ``same W``: whether the two ways' end-to-end matrices are bit for bit equal (the
backward's split is an exact selection either way; the norms' sums change order, so they differ
in the last bits).

Run: ``python benchmarks/bench_gd_kernels.py [--steps 400] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_gd_by_hand import paper_gd_cells  # a sibling: the script's folder is on the path

import factorkit.models.deep as deep
import factorkit.optim.group_rmsprop as group_rmsprop
from factorkit.experiments.run.jobs import gd_batch
from factorkit.experiments.run.plan import gd_jobs
from factorkit.fit.gd import train_gd


def concatenated_norms(grads: list[torch.Tensor]) -> torch.Tensor:
    """The kernel before: one concatenation, square and sum for every population."""
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads], 1).square().sum(1)


NORMS, BACKWARD = group_rmsprop._member_squared_norms, deep.SLICED_BACKWARD_ELEMENTS  # the kernels now


def settings(after: bool) -> None:
    group_rmsprop._member_squared_norms = NORMS if after else concatenated_norms
    deep.SLICED_BACKWARD_ELEMENTS = BACKWARD if after else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| job | members | width | depth | steps | before ms/step | after ms/step | speed-up | same W |")
    print("|---|---|---|---|---|---|---|---|---|")
    total = {False: 0.0, True: 0.0}
    try:
        for index, job in enumerate(gd_jobs(paper_gd_cells())):
            best, results = {}, {}
            for repeat in range(args.repeats):
                for after in (False, True) if repeat % 2 == 0 else (True, False):
                    settings(after)
                    members, arguments = gd_batch(job, "cpu")
                    problem, model = arguments.pop("problem"), arguments.pop("model")
                    full = arguments["max_steps"]
                    arguments.update(max_steps=args.steps, eps_train=None)
                    start = time.perf_counter()
                    results[after] = train_gd(problem, model, **arguments)
                    seconds = (time.perf_counter() - start) / args.steps
                    best[after] = min(best.get(after, float("inf")), seconds)
            for after in (False, True):
                total[after] += best[after] * full
            same = bool(torch.equal(results[False].W, results[True].W))
            times = f"{1e3 * best[False]:.3f} | {1e3 * best[True]:.3f} | {best[False] / best[True]:.2f}x"
            print(f"| {index} | {len(members)} | {model.width} | {model.depth} | {full} | {times} | {same} |",
                  flush=True)  # fmt: skip
    finally:
        settings(True)
    print(f"\nthe paper's GD at each job's steps: {total[False]:.0f} -> {total[True]:.0f} core-seconds "
          f"({total[False] / total[True]:.3f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
