"""Where ``top_eigenpairs(solver='auto')`` should switch: dense eigh, block Lanczos and ARPACK timed
on QWEM targets of several gensim corpora and dimensions (issue 18).

Each (corpus, d) target ``S + c 1 1^T`` (window 5, min count 5, psi 5) is solved by each method
in this process (best of 2; torch and NumPy at their default threads); the best is marked, and
``auto``'s pick is shown beside it. Dense ``eigh`` is skipped above V = 3000 (48 s at V = 7978).

Run: ``python benchmarks/bench_eigensolver_switch.py`` (a few minutes; needs gensim).
"""

from __future__ import annotations

import time

from gensim.test.utils import datapath

from factorkit.linalg import top_eigenpairs
from factorkit.methods.embeddings import CorpusStatistics

CORPORA = ["lee_background.cor", "head500.noblanks.cor", "crime-and-punishment.txt"]
DIMS = [10, 50, 100, 200]


def timed(S, d, c, solver) -> tuple[float, str]:
    best, used = float("inf"), solver
    for _ in range(2):
        start = time.perf_counter()
        result = top_eigenpairs(S, d, c, solver=solver, check_input=False)
        best, used = min(best, time.perf_counter() - start), result.solver
    return best, used


def main() -> None:
    print("| corpus | V | non-zeros | d | dense s | lanczos s | arpack s | best | auto picks |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in CORPORA:
        stats = CorpusStatistics(5, None, 5).fit(datapath(name), progress=False)
        S, c = stats.target(5.0)
        V = S.shape[0]
        for d in DIMS:
            if d >= V // 4:
                continue
            times = {}
            for solver in ("dense", "lanczos", "arpack"):
                if solver == "dense" and V > 3000:  # O(V^3): 48 s at V = 7978, never the best
                    times[solver] = float("nan")
                    continue
                try:
                    times[solver] = timed(S, d, c, solver)[0]
                except ValueError:  # lanczos' basis larger than the matrix
                    times[solver] = float("nan")
            auto = top_eigenpairs(S, d, c, solver="auto", check_input=False).solver
            best = min((t, s) for s, t in times.items() if t == t)[1]
            print(
                f"| {name} | {V} | {S.nnz} | {d} | {times['dense']:.3f} | {times['lanczos']:.3f} | "
                f"{times['arpack']:.3f} | {best} | {auto} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
