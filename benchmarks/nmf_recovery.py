"""Li-Liang-Risteski alternating NMF on its own generative model (not a timing).

D = 50 features, k = 8, weights non-zero with probability 0.3 (uniform on [0.5, 1]),
A_0 = A*(Sigma_0 + E_0) (Sigma_0 uniform on [0.8, 1.2], ||E_0|| = 0.1), eta = 0.5, 30 iterations.
Prints the final feature error (max column error, matched up to permutation and scale) and the
median contraction of ||A_t - A_30|| per step, for several sample sizes and noise levels.

Run: ``python benchmarks/nmf_recovery.py`` (about 20 s).
"""

from __future__ import annotations

import numpy as np

from factorkit.methods.nmf import NMF
from factorkit.problems.nmf import feature_recovery_error, make_nmf_data, paper_initialization

CASES = [
    (5000, 0, 0),
    (20000, 0, 0),
    (80000, 0, 0),
    (20000, 0.1, 0),
    (20000, 0.3, 0),
    (20000, 0, 0.1),
    (20000, 0, 0.3),
]


def main() -> None:
    print("| N | adversarial | unbiased | init error | final error | contraction per step |")
    print("|---|---|---|---|---|---|")
    for n, adversarial, unbiased in CASES:
        data = make_nmf_data(n, 50, 8, seed=0, adversarial=adversarial, unbiased=unbiased)
        A0 = paper_initialization(data.A, seed=1)
        path = []
        NMF(
            8,
            solver="alternating",
            init=A0.T,
            max_iter=30,
            tol=0,
            step=0.5,
            callback=lambda i, H, path=path: path.append(H.T),
        ).fit(data.Y)
        distance = np.array([np.linalg.norm(A - path[-1]) for A in path[:15]])
        start, final = feature_recovery_error(data.A, A0)[0], feature_recovery_error(data.A, path[-1])[0]
        contraction = np.median(distance[1:] / distance[:-1])
        print(f"| {n} | {adversarial} | {unbiased} | {start:.3f} | {final:.4f} | {contraction:.2f} |")


if __name__ == "__main__":
    main()
