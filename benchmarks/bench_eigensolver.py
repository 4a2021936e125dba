"""factorkit's float32 block Lanczos against ARPACK on QWEM target matrices of several shapes.

Target matrices ``S + c 1 1^T`` (c = -2) from gensim's bundled ``head500.noblanks.cor`` at
several windows, minimum counts, vocabulary caps and dimensions ``d``. Baseline: ARPACK
(``scipy.sparse.linalg.eigsh``, float64, ncv = 3d, tol 1e-10) on the same operator in this
process. Prints time, products, the Lanczos result's float64 residual and the largest eigenvalue
difference relative to ``lambda_1``.

Run: ``python benchmarks/bench_eigensolver.py`` (about 1 min; needs gensim for the corpus file).
"""

from __future__ import annotations

import time

import numpy as np
from gensim.test.utils import datapath

from factorkit.linalg import top_eigenpairs
from factorkit.methods.embeddings import CorpusStatistics

CASES = [  # window, min_count, max_vocab, d, psi
    (5, 5, None, 10, 5.0),
    (5, 5, None, 50, 5.0),
    (5, 5, None, 100, 5.0),
    (5, 5, None, 200, 5.0),
    (2, 3, None, 100, 1.0),
    (10, 5, 3000, 100, 5.0),
    (5, 1, None, 100, 5.0),
]


def main() -> None:
    corpus = datapath("head500.noblanks.cor")
    print(
        "| V | non-zeros | window | d | Lanczos | ARPACK | x ARPACK | products (L / A) | residual "
        "| max dlambda/lambda_1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for window, min_count, max_vocab, d, psi in CASES:
        stats = CorpusStatistics(min_count, max_vocab, window).fit(corpus, progress=False)
        S, c = stats.target(psi)
        start = time.perf_counter()
        ours = top_eigenpairs(S, d, c, solver="lanczos", check_input=False)
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        arpack = top_eigenpairs(S, d, c, solver="arpack", tol=1e-10, check_input=False)
        t_arpack = time.perf_counter() - start
        gap = np.abs(ours.values - arpack.values).max() / arpack.values[0]
        print(
            f"| {S.shape[0]} | {S.nnz} | {window} | {d} | {t_ours:.2f} s | {t_arpack:.2f} s | "
            f"{t_arpack / t_ours:.1f} | {ours.matvecs} / {arpack.matvecs} | {ours.residual:.1e} "
            f"({ours.solver}) | {gap:.1e} |"
        )


if __name__ == "__main__":
    main()
