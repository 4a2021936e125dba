"""Two overheads of a GD step on the paper run's own GD batches (``factorkit study paper``).

* ``torch.optim``'s wrapper: every ``optimizer.step()`` runs inside a profiler range and the step
  hooks' loops; :func:`factorkit.fit.gd.train_gd` calls GroupRMSprop's update directly where no
  hook or schedule needs the wrapper (``factorkit.fit.gd.BARE_STEP``).
* the selection of each member's activation derivative in a mixed batch: ``torch.lerp`` with
  0/1 weights instead of ``torch.where`` (``factorkit.models.deep.SELECT_BY_LERP``).

Every GD job of the paper (``gd_jobs`` over all figures' GD cells, as the runner batches them) is
run ``--steps`` steps with both off (the baseline, as before) and both on, one torch thread as in a
study's pool worker, interleaved, best of ``--repeats``; each job's final weights must be equal to
the last bit both ways (the same operations on the same values: the selection is exact for finite
values, the update the same function). Each job's seconds per step times its steps give the
paper's GD core-minutes each way.

Last, the dispatch of :func:`factorkit._kernels.batched_product` (about 30 calls a step of the
paper's deep nets): ``numpy_path``'s checks written out for one or two tensors against the
general form over any number of tensors it had before (re-stated here as the baseline), on a
``144 x 5 x 5`` product whose left factor requires a gradient, under ``no_grad`` as the
written-out backward pass runs it; both return the same values.

Run: ``python benchmarks/bench_gd_step.py [--steps 300] [--repeats 3]``.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from bench_gd_by_hand import paper_gd_batches, timing_arguments  # the script's folder is on sys.path

from factorkit import _kernels
from factorkit.fit import gd
from factorkit.fit.gd import train_gd
from factorkit.models import deep

WAYS = ("before", "now")


@contextlib.contextmanager
def way(name: str):
    saved = gd.BARE_STEP, deep.SELECT_BY_LERP
    gd.BARE_STEP = deep.SELECT_BY_LERP = name == "now"
    try:
        yield
    finally:
        gd.BARE_STEP, deep.SELECT_BY_LERP = saved


def general_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``batched_product`` as it was: the general ``numpy_path`` check, ``detach`` always."""
    first = a
    routed = (
        _kernels.NUMPY_KERNELS
        and first.device.type == "cpu"
        and first.dtype in (torch.float32, torch.float64)
        and all(t.dtype == first.dtype and t.device.type == "cpu" for t in (a, b))
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in (a, b)))
    )
    if a.shape[0] >= _kernels.SMALL_PRODUCT_BATCH and not _kernels._transposed(b) and routed:
        return torch.from_numpy(np.matmul(a.detach().numpy(), b.detach().numpy()))
    return torch.bmm(a, b)


def dispatch() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(144, 5, 5, generator=generator).requires_grad_()
    b = torch.randn(144, 5, 5, generator=generator)
    best = {}
    with torch.no_grad():
        assert torch.equal(general_product(a, b), _kernels.batched_product(a, b))
        for _ in range(5):
            for name, product in (("general", general_product), ("now", _kernels.batched_product)):
                start = time.perf_counter()
                for _ in range(20_000):
                    product(a, b)
                best[name] = min(best.get(name, float("inf")), (time.perf_counter() - start) / 20_000)
    print(
        f"\nbatched_product on 144 x 5 x 5: general checks {best['general'] * 1e6:.2f} us, "
        f"written out {best['now'] * 1e6:.2f} us a call"
    )


def main() -> None:
    args = timing_arguments()
    totals = dict.fromkeys(WAYS, 0.0)
    print(
        "| members | width | depths | activations | steps | before ms/step | now ms/step | speed-up | equal |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for job, members, problem, model, arguments in paper_gd_batches():
        settings = {**arguments, "max_steps": args.steps, "eps_train": None}
        best, final = dict.fromkeys(WAYS, float("inf")), {}
        for name in WAYS:  # warm-up: one-off costs out of the timing
            with way(name):
                train_gd(problem, model, **{**settings, "max_steps": 3})
        for _ in range(args.repeats):
            for name in WAYS:
                with way(name):
                    start = time.perf_counter()
                    result = train_gd(problem, model, **settings)
                    best[name] = min(best[name], (time.perf_counter() - start) / args.steps)
                final[name] = result.weights
        equal = all(torch.equal(a, b) for a, b in zip(final["before"], final["now"], strict=True))
        steps = job.cell.params["steps"]
        for name in WAYS:
            totals[name] += best[name] * steps
        depths = getattr(model, "depths", None)
        shown = f"{min(depths)}-{max(depths)}" if depths else str(model.depth)
        names = getattr(model.activation, "names", [model.activation])
        print(
            f"| {len(members)} | {model.width} | {shown} | {len(set(names))} | {steps} | "
            f"{best['before'] * 1e3:.3f} | {best['now'] * 1e3:.3f} | {best['before'] / best['now']:.2f}x "
            f"| {'yes' if equal else 'NO'} |",
            flush=True,
        )
    print(
        f"\nthe paper's GD, core-minutes: before {totals['before'] / 60:.2f}, now {totals['now'] / 60:.2f} "
        f"({totals['before'] / totals['now']:.2f}x)"
    )
    dispatch()


if __name__ == "__main__":
    main()
