"""The singular-value move's decomposition: :func:`factorkit.fit.weights.singular_pairs` (the
smaller Gram matrix's eigen-decomposition, an SVD only where the picked value is below
``SINGULAR_RTOL`` of the largest) against ``torch.linalg.svd``, on 500 standard normal latents
of the shapes the marginal samplers move (a width-5 net's ``5 x 5`` layers, a width-160 net's
first layer ``160 x 5`` and a middle one ``20 x 20``), one thread, interleaved, best of five
rounds of 20. Printed: milliseconds each way, the ratio, the share of draws the SVD still
decides, and the largest difference of the picked pair's ``l r^T`` (relative to the matrix's largest
singular value).

Run: ``python benchmarks/bench_singular_pairs.py``.
"""

from __future__ import annotations

import math

import torch
from bench_marginal_density import best  # the script's folder is on sys.path

from factorkit.fit.weights import SINGULAR_RTOL, singular_pairs


def main() -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    print("| shape | SVD ms | singular_pairs ms | speed-up | by SVD | max difference of l r^T |")
    print("|---|---|---|---|---|---|")
    for shape in [(5, 5), (160, 5), (20, 20)]:
        u = torch.randn(500, *shape, generator=generator, dtype=torch.float64)
        pick = torch.randint(min(shape), (500,), generator=generator)
        at = torch.arange(500)

        def by_svd():
            left, sv, right = torch.linalg.svd(u, full_matrices=False)  # noqa: B023
            return sv, left[at, :, pick], right[at, pick, :]  # noqa: B023

        sv, left, right = by_svd()
        _, ours_left, ours_right = singular_pairs(u, pick)
        difference = (
            ours_left[:, :, None] * ours_right[:, None, :] - left[:, :, None] * right[:, None, :]
        ).abs()
        relative = float((difference.amax((1, 2)) / sv[:, 0]).max())
        poor = float((sv[at, pick] <= SINGULAR_RTOL * sv[:, 0]).double().mean())
        t_svd, t_ours = math.inf, math.inf
        for _ in range(5):
            t_svd = min(t_svd, best(by_svd))
            t_ours = min(t_ours, best(lambda: singular_pairs(u, pick)))  # noqa: B023
        name = f"{shape[0]} x {shape[1]}"
        print(
            f"| {name} | {t_svd:.2f} | {t_ours:.2f} | {t_svd / t_ours:.1f}x | {poor:.1%} | {relative:.1e} |"
        )


if __name__ == "__main__":
    main()
