"""NMF with defaults against scikit-learn's NMF with defaults, on real data (issue 18).

Both estimators are built with nothing but ``n_components`` and fitted the way a user would:
``fit_transform(X)``, then ``transform(X)`` again. Reported per data set and rank: the final
reconstruction error ``||X - W H||_F`` of each (and factorkit's relative to scikit-learn's), the
wall time of ``fit_transform`` (best of 3, same process, same threads), the iterations, and how far
``transform(X)`` lands from the ``W`` of ``fit_transform(X)`` (``||W_t - W||_F / ||W||_F``: a
stopping rule that stops early leaves the two far apart).

Data (nothing downloaded): scikit-learn's ``load_digits`` (1797 x 64) at ranks 10, 16 and 32, and
the TF-IDF matrix of gensim's bundled ``lee_background.cor`` (300 documents, scikit-learn's
``TfidfVectorizer`` with ``min_df=2``; sparse) at ranks 10 and 20.

Run: ``python benchmarks/bench_nmf_defaults.py`` (needs the ``bench`` extra: gensim).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import NMF as SkNMF
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer

from factorkit.methods.nmf import NMF


def lee_tfidf():
    from gensim.test.utils import datapath

    with open(datapath("lee_background.cor"), encoding="utf-8") as handle:
        documents = [line for line in handle if line.strip()]
    return TfidfVectorizer(min_df=2).fit_transform(documents)


def run(model_class, X, k):
    best, model, W = float("inf"), None, None
    for _ in range(3):
        model = model_class(n_components=k)
        start = time.perf_counter()
        W = model.fit_transform(X)
        best = min(best, time.perf_counter() - start)
    again = model.transform(X)
    drift = float(np.linalg.norm(again - W) / max(np.linalg.norm(W), 1e-300))
    return model.reconstruction_err_, best, model.n_iter_, drift


def main() -> None:
    warnings.simplefilter("ignore", ConvergenceWarning)
    digits = load_digits().data
    cases = [("digits", digits, 10), ("digits", digits, 16), ("digits", digits, 32)]
    try:
        tfidf = lee_tfidf()
        cases += [("lee TF-IDF (sparse)", tfidf, 10), ("lee TF-IDF (sparse)", tfidf, 20)]
    except ImportError:
        print("gensim not installed: the lee_background rows are skipped")
    print(
        "| data | k | scikit-learn error | factorkit error | ratio | scikit-learn s | factorkit s | "
        "speed-up | iterations (sk / fk) | transform drift (sk / fk) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, X, k in cases:
        sk_error, sk_time, sk_iter, sk_drift = run(SkNMF, X, k)
        fk_error, fk_time, fk_iter, fk_drift = run(NMF, X, k)
        print(
            f"| {name} | {k} | {sk_error:.2f} | {fk_error:.2f} | {fk_error / sk_error:.4f} | {sk_time:.3f} | "
            f"{fk_time:.3f} | {sk_time / fk_time:.2f}x | {sk_iter} / {fk_iter} | "
            f"{sk_drift:.3f} / {fk_drift:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
