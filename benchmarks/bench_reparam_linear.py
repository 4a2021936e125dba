"""Linear reparametrized draws: plane-wise products vs batched matrix products, same numbers.

``factorkit.fit.reparam.sample_end_to_end`` computes ``W = s_d Z R`` with ``R = s_{d-1} B_{d-1}
... s_1 B_1`` (Bartlett factors, upper triangular) on planes over the draws: every entry's values
are one contiguous vector, so the ``m' x m'`` products are ``m'`` to ``m'(m'+1)/2`` long vector
multiply-adds per layer. Baseline: the same random numbers (``bartlett_factor``, drawn in the same
order) multiplied as batched ``(count, m', m')`` matrix products, as the sampler did before.
Both in this process, interleaved, best of 15, float32, chunk size as G&C uses; the draws are
asserted equal (to float32 rounding).

Run: ``python benchmarks/bench_reparam_linear.py`` (about 20 s).
"""

from __future__ import annotations

import time

import torch

from factorkit.fit.guess_check import default_chunk_size
from factorkit.fit.reparam import bartlett_factor, sample_end_to_end
from factorkit.models import DeepFactorization


def batched_products(model, scales, count, generator, dtype):
    factor = scales[0] * bartlett_factor(count, model.m2, model.width, generator, dtype)
    for scale in scales[1:-1]:
        factor = scale * (bartlett_factor(count, model.m2, model.width, generator, dtype) @ factor)
    z = torch.randn(count, model.m, model.m2, generator=generator, dtype=dtype)
    return scales[-1] * (z @ factor)


def main() -> None:
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, m = m' = 5, float32")
    print("| depth | width | draws per chunk | batched products /s | planes /s | speed-up |")
    print("|---|---|---|---|---|---|")
    for depth in (2, 3, 6):
        for width in (40, 160):
            model = DeepFactorization(5, 5, width=width, depth=depth)
            scales = [1 / cols**0.5 for _, cols in model.layer_shapes()]
            count = default_chunk_size(model, torch.device("cpu"), "reparam")
            best = {"batched": float("inf"), "planes": float("inf")}
            for repeat in range(15):
                for name, draw in (("batched", batched_products), ("planes", sample_end_to_end)):
                    generator = torch.Generator().manual_seed(repeat)
                    start = time.perf_counter()
                    draw(model, scales, count, generator, torch.float32)
                    best[name] = min(best[name], time.perf_counter() - start)
            reference = batched_products(
                model, scales, count, torch.Generator().manual_seed(0), torch.float32
            )
            ours = sample_end_to_end(model, scales, count, torch.Generator().manual_seed(0), torch.float32)
            torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
            print(
                f"| {depth} | {width} | {count} | {count / best['batched']:,.0f} | "
                f"{count / best['planes']:,.0f} | {best['batched'] / best['planes']:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
