"""Boolean MF on planted tiles: Elbmf (factorkit, plain PyTorch) vs Asso and NMF + thresholds.

Same data for all (1000 x 500, k = 10 planted tiles, density 0.1 and 0.3, clean and with 10%
additive and destructive noise), one process, float32 CPU:

* ``factorkit``: :class:`factorkit.methods.BooleanMF` with the reference implementation's
  settings (regularization rate 1.02, l1 0.01, l2 0.02 on ``||X - UV||^2``, i.e. 0.005 / 0.01
  in factorkit's ``1/2 ||X - UV||^2`` convention), PALM, 1000 iterations at most;
* ``plain torch``: a straightforward PyTorch transcription of the same iteration (residual
  ``UV - X`` formed every step, the prox written out), run for as many iterations as factorkit
  took, so both reach the same loss;
* ``Asso``: the greedy association-based method of Miettinen et al. (2008), best of thresholds
  0.1..0.9 on the Boolean error;
* ``NMF + thresholds``: scikit-learn's NMF (``init='nndsvd'``, ``max_iter=500``), then the
  best pair of thresholds for W and H (grid of 10 x 10 quantile-spaced values, chosen on the
  Boolean error itself: an optimistic baseline).

Run: ``pip install -e ".[bench]" && python benchmarks/bench_boolean.py``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.decomposition import NMF

from factorkit.methods import BooleanMF
from factorkit.methods.boolean import asso
from factorkit.problems.boolean import boolean_product, planted_tiles

L1, L2, RATE = 0.005, 0.01, 1.02


def plain_torch(X: np.ndarray, k: int, iterations: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    data = torch.from_numpy(X.astype(np.float32))
    generator = torch.Generator().manual_seed(seed)
    U = torch.rand(X.shape[0], k, generator=generator)
    V = torch.rand(k, X.shape[1], generator=generator)

    def prox(x, step, lam):
        shrink = 1 + 2 * step * lam
        zero = torch.clamp(torch.sign(x) * torch.clamp(x.abs() - step * L1, min=0) / shrink, 0, 1)
        one = torch.clamp(
            1 + torch.sign(x - 1) * torch.clamp((x - 1).abs() - step * L1, min=0) / shrink, 0, 1
        )
        return torch.where(x <= 0.5, zero, one)

    for t in range(1, iterations + 1):
        lam = L2 * RATE**t
        step = 1 / (1.1 * float(torch.linalg.matrix_norm(V @ V.T)))
        U = prox(U - step * (U @ V - data) @ V.T, step, lam)
        step = 1 / (1.1 * float(torch.linalg.matrix_norm(U.T @ U)))
        V = prox(V - step * U.T @ (U @ V - data), step, lam)
    return (U >= 0.5).numpy(), (V >= 0.5).numpy()


def nmf_thresholded(X: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    model = NMF(n_components=k, init="nndsvd", max_iter=500, random_state=seed)
    W = model.fit_transform(X.astype(np.float32))
    H = model.components_
    best = None
    for tw in np.quantile(W, np.linspace(0.5, 0.99, 10)):
        for th in np.quantile(H, np.linspace(0.5, 0.99, 10)):
            error = int((boolean_product(W > tw, H > th) != X).sum())
            if best is None or error < best[0]:
                best = (error, W > tw, H > th)
    return best[1], best[2]


def main() -> None:
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; 1000 x 500, k = 10")
    print("| data | method | seconds | iterations | Boolean error | error rate | speed-up of factorkit |")
    print("|---|---|---|---|---|---|---|")
    cases = (
        ("density 0.1, clean", 0.1, 0.0),
        ("density 0.1, 10% noise", 0.1, 0.1),
        ("density 0.3, clean", 0.3, 0.0),
        ("density 0.3, 10% noise", 0.3, 0.1),
    )
    for label, density, noise in cases:
        data = planted_tiles(1000, 500, 10, density=density, additive=noise, destructive=noise, seed=0)
        BooleanMF(10, l1_reg=L1, l2_reg=L2, max_iter=5).fit(data.X)  # warm-up
        start = time.perf_counter()
        model = BooleanMF(10, l1_reg=L1, l2_reg=L2, regularization_rate=RATE, random_state=0)
        U = model.fit_transform(data.X)
        ours = time.perf_counter() - start
        rows = [("factorkit", ours, model.n_iter_, model.reconstruction_err_)]
        start = time.perf_counter()
        U_plain, V_plain = plain_torch(data.X, 10, model.n_iter_, 0)
        rows.append(
            (
                "plain torch",
                time.perf_counter() - start,
                model.n_iter_,
                int((boolean_product(U_plain, V_plain) != data.X).sum()),
            )
        )
        start = time.perf_counter()
        W, H = nmf_thresholded(data.X, 10, 0)
        rows.append(
            (
                "NMF + thresholds",
                time.perf_counter() - start,
                500,
                int((boolean_product(W, H) != data.X).sum()),
            )
        )
        start = time.perf_counter()
        U_asso, V_asso = asso(data.X, 10)
        rows.append(
            (
                "Asso (best of 9 thresholds)",
                time.perf_counter() - start,
                10,
                int((boolean_product(U_asso, V_asso) != data.X).sum()),
            )
        )
        assert model.reconstruction_err_ == int((boolean_product(U, model.components_) != data.X).sum())
        for name, seconds, iterations, error in rows:
            print(
                f"| {label} (noise rate {data.noise_rate:.3f}) | {name} | {seconds:.2f} | {iterations} "
                f"| {error} | {error / data.X.size:.4f} | {seconds / ours:.1f}x |"
            )


if __name__ == "__main__":
    main()
