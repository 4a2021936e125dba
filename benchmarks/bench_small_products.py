"""Many small batched products on the CPU: ``torch.bmm`` against NumPy's stacked matmul, the path
``factorkit.models.deep.batched_product`` takes below ``SMALL_PRODUCT`` multiply-adds a product.

    python benchmarks/bench_small_products.py

Prints microseconds per call of each and their ratio, in one process, on one thread.
"""

from __future__ import annotations

import time

import numpy as np
import torch

SHAPES = [
    (500, 5, 5, 5),
    (32768, 5, 5, 5),
    (8192, 5, 10, 5),
    (500, 5, 5, 160),
    (500, 160, 160, 5),
    (4096, 20, 20, 20),
]


def per_call(function, repeats: int = 100) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats * 1e6


def main() -> None:
    from factorkit.models.deep import SMALL_PRODUCT

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print("| dtype | batch x (m, k, n) | torch.bmm us | NumPy matmul us | ratio | batched_product takes |")
    print("|---|---|---|---|---|---|")
    for dtype in (np.float32, np.float64):
        for batch, m, k, n in SHAPES:
            a = torch.from_numpy(rng.normal(size=(batch, m, k)).astype(dtype))
            b = torch.from_numpy(rng.normal(size=(batch, k, n)).astype(dtype))
            slow = per_call(lambda a=a, b=b: torch.bmm(a, b))
            fast = per_call(lambda a=a, b=b: torch.from_numpy(np.matmul(a.numpy(), b.numpy())))
            path = "NumPy" if m * k * n < SMALL_PRODUCT else "torch"
            shape = f"{batch} x ({m}, {k}, {n})"
            print(f"| {dtype.__name__} | {shape} | {slow:.0f} | {fast:.0f} | {slow / fast:.2f} | {path} |")


if __name__ == "__main__":
    main()
