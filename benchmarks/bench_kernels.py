"""NumPy's kernels against torch's on the paper run's small tensors (``factorkit._kernels``).

    python benchmarks/bench_kernels.py [--repeats 3] [--steps 300]

One torch thread (a study's pool worker), everything in this process, each pair interleaved and
the best of ``--repeats`` kept; the baseline is torch's own kernels (``torch_kernels()``):

1. the kernels alone: a layer's product ``W H`` and the backward pass's ``W^T G`` (a transposed
   left factor) and ``G H^T`` (a transposed right factor, which ``batched_product`` leaves to
   torch: NumPy is called directly there to show why), ``tanh``, and the accepted rows of a pCN step;
2. SMC: four runs of 500 particles (``subset_simulation``) on depth-figure cells;
3. G&C prior draws: the ``auto`` sampler's rejection pilot (``2^16`` draws) on width-figure cells;
4. GD: every GD batch of ``study paper`` as the runner builds it (``--steps`` steps), and the
   paper's GD core-minutes each way (seconds per step times the batch's steps).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from factorkit import _kernels
from factorkit._kernels import batched_product, copy_rows, tanh, torch_kernels
from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit.auto import PILOT_DRAWS
from factorkit.fit.gd import train_gd
from factorkit.fit.guess_check import guess_and_check
from factorkit.fit.smc import subset_simulation

WAYS = ("torch", "numpy")


def repeat(function, calls: int):
    """``function`` called ``calls`` times, its results dropped as they come (kept, their fresh
    pages would be timed)."""

    def run():
        for _ in range(calls):
            function()

    return run


def best_pair(function, repeats: int) -> dict[str, float]:
    """Best seconds of ``function()`` with torch's kernels and with the NumPy routes, interleaved."""
    best = dict.fromkeys(WAYS, float("inf"))
    for _ in range(repeats):
        for way in WAYS:
            start = time.perf_counter()
            if way == "torch":
                with torch_kernels():
                    function()
            else:
                function()
            best[way] = min(best[way], time.perf_counter() - start)
    return best


# the deep models' products: depth-figure SMC populations, width-figure GD batches, a wide hidden layer
PRODUCT_SHAPES = [(500, 5, 5, 5), (4000, 5, 5, 5), (216, 5, 20, 5), (72, 5, 160, 5), (64, 160, 160, 5)]


def kernels(repeats: int) -> None:
    print("| kernel | shape | dtype | torch us | NumPy route us | speed-up |")
    print("|---|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    calls = 200
    for dtype in (torch.float32, torch.float64):
        for batch, m, k, n in PRODUCT_SHAPES:
            # the forward product W H of a layer and its two backward products: W^T G (a transposed
            # a) and G H^T (a transposed b), G the gradient in the product (m x n)
            weight = torch.randn(batch, m, k, generator=g, dtype=dtype)
            hidden = torch.randn(batch, k, n, generator=g, dtype=dtype)
            gradient = torch.randn(batch, m, n, generator=g, dtype=dtype)
            layouts = {
                "forward W H": (weight, hidden),
                "backward W^T G": (weight.mT, gradient),
                "backward G H^T, NumPy forced": (gradient, hidden.mT),
            }
            for name, (x, y) in layouts.items():
                # batched_product keeps torch for a transposed b: NumPy is called directly there,
                # to show why (the NumPy column of that row is not a route the library takes)
                product = _forced_numpy if "forced" in name else batched_product
                times = best_pair(repeat(lambda x=x, y=y, f=product: f(x, y), calls), repeats)
                _row(f"product, {name}", f"{batch} x ({m}, {k}, {n})", dtype, times, calls)
        for shape in [(500, 5, 5), (4000, 5, 5), (72, 160, 5)]:
            x = torch.randn(*shape, generator=g, dtype=dtype)
            times = best_pair(repeat(lambda x=x: tanh(x), calls), repeats)
            _row("tanh", " x ".join(map(str, shape)), dtype, times, calls)
        target, source = torch.randn(4000, 5, 5, dtype=dtype), torch.randn(4000, 5, 5, dtype=dtype)
        rows = torch.rand(4000, generator=g) < 0.3
        times = best_pair(repeat(lambda t=target, s=source, r=rows: copy_rows(t, s, r), calls), repeats)
        _row("accepted rows", "4000 x 5 x 5, 30%", dtype, times, calls)


def _forced_numpy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """NumPy's stacked matmul whatever the layout (torch's bmm inside ``torch_kernels()``)."""
    if not _kernels.NUMPY_KERNELS:
        return torch.bmm(a, b)
    return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))


def _row(kernel: str, shape: str, dtype, times: dict, calls: int) -> None:
    torch_us, numpy_us = (times[w] / calls * 1e6 for w in WAYS)
    name = str(dtype).removeprefix("torch.")
    print(f"| {kernel} | {shape} | {name} | {torch_us:.1f} | {numpy_us:.1f} | {torch_us / numpy_us:.2f}x |")


SMC_CELLS = [
    ("depth", {"depth": 2, "activation": "tanh"}),
    ("depth", {"depth": 10, "activation": "tanh"}),
    ("depth", {"depth": 6, "activation": "leaky_relu"}),
    ("depth", {"depth": 10, "activation": "leaky_relu"}),
    ("depth_uniform", {"depth": 10, "activation": "leaky_relu"}),
    ("width_uniform", {"width": 160, "activation": "tanh"}),
]
PILOT_CELLS = [
    ("width", {"width": 160, "activation": "tanh"}),
    ("width", {"width": 160, "activation": "leaky_relu"}),
    ("width", {"width": 40, "activation": "tanh"}),
    ("width_uniform", {"width": 160, "activation": "tanh"}),
]


def samplers(repeats: int) -> None:
    print("| sampler | figure | cell | torch s | NumPy routes s | speed-up |")
    print("|---|---|---|---|---|---|")
    warnings.simplefilter("ignore")
    for figure, settings in SMC_CELLS:
        params = paper_cell(figure, **settings).params
        problem, model, prior = gc_setup(params, 0, "cpu")

        def smc(problem=problem, model=model, prior=prior, eps=params["eps"]):
            subset_simulation(problem, model, eps=eps, prior=prior, n_particles=500, runs=4, seed=1)

        _sampler_row("SMC, 4 x 500", figure, settings, best_pair(smc, repeats))
    for figure, settings in PILOT_CELLS:
        params = paper_cell(figure, **settings).params
        problem, model, prior = gc_setup(params, 0, "cpu")

        def pilot(problem=problem, model=model, prior=prior, eps=params["eps"]):
            guess_and_check(problem, model, eps=eps, prior=prior, max_evaluations=PILOT_DRAWS, seed=7,
                            keep_samples=False, progress=False)  # fmt: skip

        _sampler_row("rejection pilot", figure, settings, best_pair(pilot, repeats))


def _sampler_row(name: str, figure: str, settings: dict, times: dict) -> None:
    cell = ", ".join(f"{k} {v}" for k, v in settings.items())
    print(f"| {name} | {figure} | {cell} | {times['torch']:.2f} | {times['numpy']:.2f} | "
          f"{times['torch'] / times['numpy']:.2f}x |")  # fmt: skip


def gd(repeats: int, steps: int) -> None:
    from bench_gd_by_hand import paper_gd_batches

    print("| members | width | depths | steps | torch ms/step | NumPy routes ms/step | speed-up |")
    print("|---|---|---|---|---|---|---|")
    totals = dict.fromkeys(WAYS, 0.0)
    for job, members, problem, model, arguments in paper_gd_batches():
        options = {**arguments, "eps_train": None, "progress": False}
        train_gd(problem, model, **{**options, "max_steps": 3})  # one-off costs out of the timing
        times = best_pair(lambda: train_gd(problem, model, **{**options, "max_steps": steps}), repeats)  # noqa: B023
        per_step = {way: times[way] / steps for way in WAYS}
        paper_steps = job.cell.params["steps"]
        for way in WAYS:
            totals[way] += per_step[way] * paper_steps / 60
        depths = getattr(model, "depths", None)
        depth_text = f"{min(depths)}-{max(depths)}" if depths else str(model.depth)
        milliseconds = " | ".join(f"{per_step[way] * 1e3:.3f}" for way in WAYS)
        ratio = per_step["torch"] / per_step["numpy"]
        shape = f"{len(members)} | {model.width} | {depth_text} | {paper_steps}"
        print(f"| {shape} | {milliseconds} | {ratio:.2f}x |", flush=True)
    print(f"\nthe paper's GD, core-minutes: torch {totals['torch']:.2f}, NumPy routes {totals['numpy']:.2f} "
          f"({totals['torch'] / totals['numpy']:.2f}x)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--only", choices=("kernels", "samplers", "gd"), default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.only in (None, "kernels"):
        kernels(args.repeats)
        print()
    if args.only in (None, "samplers"):
        samplers(args.repeats)
        print()
    if args.only in (None, "gd"):
        gd(args.repeats, args.steps)


if __name__ == "__main__":
    main()
