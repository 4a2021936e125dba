"""NMF: time to scikit-learn's error, factorkit HALS vs ``sklearn.decomposition.NMF(solver='cd')``.

Both start from the same NNDSVDa point (``initialize_nmf``, passed to scikit-learn as
``init='custom'``). scikit-learn runs with its default ``tol=1e-4``; its final error E is the
target. factorkit's HALS (its default sweeps per product, plain with ``inner_sweeps=1``, two with
``inner_sweeps=2``) is run with
the number of iterations they need to reach E, found from one traced run, and that whole
``fit`` call is timed again (best of 5, like scikit-learn's). Same process, same threads, float64.

Data: scikit-learn's digits (1797 x 64, k = 10) and a 2000 x 1000 synthetic matrix (rank-20
non-negative product plus 10% uniform noise, k = 20).

Run: ``python benchmarks/bench_nmf.py``.
"""

from __future__ import annotations

import functools
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import NMF as SkNMF
from sklearn.exceptions import ConvergenceWarning

from factorkit.methods.nmf import NMF, initialize_nmf


def best_of(fn, repeats: int = 5):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _fit_hals(X, k, W0, H0, iterations, kwargs):
    return NMF(k, solver="hals", init=(W0, H0), max_iter=iterations, tol=0, **kwargs).fit(X)


def datasets():
    yield "digits 1797x64, k=10", load_digits().data, 10
    rng = np.random.default_rng(0)
    X = rng.random((2000, 20)) @ rng.random((20, 1000)) + 0.1 * rng.random((2000, 1000))
    yield "synthetic 2000x1000, k=20", X, 20


def main() -> None:
    warnings.simplefilter("ignore", ConvergenceWarning)
    print("| data | sklearn cd: error, time | factorkit | iterations | time to that error | speed-up |")
    print("|---|---|---|---|---|---|")
    for name, X, k in datasets():
        W0, H0 = initialize_nmf(X, k)

        def sklearn_fit(k=k, X=X, W0=W0, H0=H0):
            return SkNMF(k, solver="cd", init="custom").fit(X, W=W0.copy(), H=H0.copy())

        t_sk, sk = best_of(sklearn_fit)
        target = sk.reconstruction_err_
        variants = (
            ("hals", {}),
            ("hals, inner_sweeps=1", {"inner_sweeps": 1}),
            ("hals, inner_sweeps=2", {"inner_sweeps": 2}),
        )
        for label, kwargs in variants:
            trace = NMF(k, solver="hals", init=(W0, H0), max_iter=5000, tol=0, **kwargs)
            trace.fit(X)
            needed = next((i + 1 for i, h in enumerate(trace.history_) if h["error"] <= target), None)
            if needed is None:
                print(f"| {name} | {target:.6g}, {t_sk:.3f} s | {label} | > 5000 | never | - |")
                continue
            t_ours, ours = best_of(functools.partial(_fit_hals, X, k, W0, H0, needed, kwargs))
            assert ours.reconstruction_err_ <= target
            print(
                f"| {name} | {target:.6g}, {t_sk:.3f} s ({sk.n_iter_} it) | {label} | {needed} | "
                f"{t_ours:.3f} s | {t_sk / t_ours:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
