"""Every factorization method on real data that ships inside installed packages, against its anchor.

Nothing is downloaded: scikit-learn's bundled sets and gensim's ``test_data`` corpora. Each
section runs factorkit's defaults against the anchor's defaults, then both tuned (the tuning grid
is printed beside each row). Run one section or all:

    python benchmarks/real_data.py boolean [--elbmf-python DIR]
    python benchmarks/real_data.py nmf

``--elbmf-python DIR``: a checkout of the Elbmf authors' reference (github.com/sdall/elbmf-python,
its ``src/elbmf.py``), run beside factorkit on the same data; it is not a dependency.

Data (all binary tables are 0/1 presence):

* ``lee``: gensim's ``lee_background.cor``, 300 documents x the terms in at least 5 of them;
* ``head500``: gensim's ``head500.noblanks.cor`` split into 200-token documents, terms in >= 40;
* ``digits``: scikit-learn's ``load_digits`` (1,797 x 64), pixels >= 8 for the Boolean table.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import time
from pathlib import Path

import numpy as np


def gensim_file(name: str) -> Path:
    from gensim.test.utils import datapath

    return Path(datapath(name))


def presence(documents: list[list[str]], min_df: int = 5) -> tuple[np.ndarray, list[str]]:
    """Documents x terms 0/1 table of the terms in at least ``min_df`` documents."""
    counts: dict[str, int] = {}
    for doc in documents:
        for term in set(doc):
            counts[term] = counts.get(term, 0) + 1
    vocabulary = sorted(t for t, c in counts.items() if c >= min_df)
    index = {t: i for i, t in enumerate(vocabulary)}
    table = np.zeros((len(documents), len(vocabulary)), dtype=bool)
    for row, doc in enumerate(documents):
        for term in set(doc):
            if term in index:
                table[row, index[term]] = True
    return table, vocabulary


def tokens(line: str) -> list[str]:
    return re.findall(r"[a-z]+", line.lower())


def lee_documents() -> list[list[str]]:
    lines = gensim_file("lee_background.cor").read_text(encoding="utf-8", errors="replace").splitlines()
    return [tokens(line) for line in lines if line.strip()]


def head500_documents(size: int = 100) -> list[list[str]]:
    words = tokens(gensim_file("head500.noblanks.cor").read_text(encoding="utf-8", errors="replace"))
    return [words[i : i + size] for i in range(0, len(words) - size + 1, size)]


def binary_tables() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    return {
        "lee": presence(lee_documents())[0],
        "head500": presence(head500_documents(200), min_df=40)[0],
        "digits>=8": load_digits().data >= 8,
    }


def boolean_scores(X: np.ndarray, R: np.ndarray) -> tuple[int, float]:
    """Boolean (Hamming) error and the F1 of the reconstruction's ones against X's."""
    error = int((R != X).sum())
    hits = int((R & X).sum())
    precision = hits / max(int(R.sum()), 1)
    recall = hits / max(int(X.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return error, f1


def load_elbmf_python(directory: Path):
    spec = importlib.util.spec_from_file_location("elbmf_reference", directory / "src" / "elbmf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.elbmf


def nmf_thresholded(X: np.ndarray, k: int, tuned: bool) -> np.ndarray:
    """scikit-learn NMF, then U and V thresholded (0.5 by default; tuned: a grid, best Boolean error)."""
    from sklearn.decomposition import NMF as SkNMF

    from factorkit.problems.boolean import boolean_product

    model = SkNMF(n_components=k, init="nndsvda", max_iter=1000, random_state=0)
    U = model.fit_transform(X.astype(float))
    V = model.components_
    # scale so that both factors have unit max per component (the threshold then means the same for each)
    scale = np.maximum(U.max(0), 1e-12)
    U, V = U / scale, V * scale[:, None]
    vmax = np.maximum(V.max(1, keepdims=True), 1e-12)
    V = V / vmax
    U = U * vmax.T
    grid = (
        [(0.5, 0.5)]
        if not tuned
        else [(a, b) for a in np.linspace(0.1, 0.9, 9) for b in np.linspace(0.1, 0.9, 9)]
    )
    best = None
    for a, b in grid:
        R = boolean_product(U >= a, V >= b)
        error = int((R != X).sum())
        if best is None or error < best[0]:
            best = (error, R)
    return best[1]


def run_boolean(args) -> None:
    import torch

    from factorkit.methods.boolean import BooleanMF, asso, polish_boolean
    from factorkit.problems.boolean import boolean_product

    torch.set_num_threads(args.threads)
    elbmf_reference = load_elbmf_python(args.elbmf_python) if args.elbmf_python else None
    print("| data | k | method | setting | Boolean error | F1 | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, X in binary_tables().items():
        k = args.k
        rows = []

        def record(method: str, setting: str, start: float, R: np.ndarray, X=X, rows=rows) -> None:
            error, f1 = boolean_scores(X, R)
            rows.append((method, setting, error, f1, time.perf_counter() - start))

        start = time.perf_counter()
        model = BooleanMF(n_components=k, random_state=0)
        record("factorkit BooleanMF", "defaults", start, model.inverse_transform(model.fit_transform(X)))
        start = time.perf_counter()
        model = BooleanMF(n_components=k, random_state=0, polish=False)
        record("factorkit BooleanMF", "polish=False (the default before)", start,
               model.inverse_transform(model.fit_transform(X)))  # fmt: skip
        start = time.perf_counter()
        best = None
        for rate in (1.005, 1.01, 1.02, 1.05):
            for l1 in (0.0, 0.01, 0.1):
                candidate = BooleanMF(
                    n_components=k, random_state=0, regularization_rate=rate, l1_reg=l1, n_init=4
                )
                U = candidate.fit_transform(X)
                if best is None or candidate.reconstruction_err_ < best[0].reconstruction_err_:
                    best = (candidate, U)
        setting = f"tuned (rate {best[0].regularization_rate}, l1 {best[0].l1_reg}, n_init 4)"
        record("factorkit BooleanMF", setting, start, best[0].inverse_transform(best[1]))
        start = time.perf_counter()
        record("Asso", "thresholds 0.1..0.9 (its default)", start, boolean_product(*asso(X, k)))
        start = time.perf_counter()
        record(
            "Asso + polish_boolean", "extra baseline", start, boolean_product(*polish_boolean(X, *asso(X, k)))
        )
        if elbmf_reference is not None:
            data = torch.tensor(X, dtype=torch.float32)
            torch.manual_seed(0)
            start = time.perf_counter()
            U, V = elbmf_reference(data, k)
            record("elbmf-python", "defaults", start, boolean_product(U.numpy() > 0.5, V.numpy() > 0.5))
            start = time.perf_counter()
            best = None
            for base in (1.005, 1.01, 1.02, 1.05):
                torch.manual_seed(0)
                U, V = elbmf_reference(data, k, regularization_rate=lambda t, b=base: b**t)
                R = boolean_product(U.numpy() > 0.5, V.numpy() > 0.5)
                if best is None or (R != X).sum() < (best[1] != X).sum():
                    best = (base, R)
            record("elbmf-python", f"tuned (rate {best[0]})", start, best[1])
        start = time.perf_counter()
        record("NMF + thresholds", "0.5", start, nmf_thresholded(X, k, tuned=False))
        start = time.perf_counter()
        record("NMF + thresholds", "tuned (9 x 9 grid)", start, nmf_thresholded(X, k, tuned=True))
        for method, setting, error, f1, seconds in rows:
            print(f"| {name} {X.shape[0]}x{X.shape[1]} | {k} | {method} | {setting} | {error} | {f1:.3f} | "
                  f"{seconds:.1f} |")  # fmt: skip
        sys.stdout.flush()


def _split(shape, fraction: float, seed: int) -> np.ndarray:
    """True where observed: ``fraction`` of the entries hidden at random, every row and column kept."""
    rng = np.random.default_rng(seed)
    observed = rng.random(shape) >= fraction
    observed[np.arange(shape[0]), rng.integers(shape[1], size=shape[0])] = True
    observed[rng.integers(shape[0], size=shape[1]), np.arange(shape[1])] = True
    return observed


def nonnegative_tables() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits, load_sample_images
    from sklearn.feature_extraction.image import extract_patches_2d
    from sklearn.feature_extraction.text import TfidfVectorizer

    lee = [" ".join(doc) for doc in lee_documents()]
    tfidf = TfidfVectorizer(min_df=5).fit_transform(lee).toarray()
    gray = [image.mean(2) / 255.0 for image in load_sample_images().images]
    patches = np.concatenate(
        [
            extract_patches_2d(g, (8, 8), max_patches=2500, random_state=i).reshape(-1, 64)
            for i, g in enumerate(gray)
        ]
    )
    return {"digits": load_digits().data, "lee tf-idf": tfidf, "image patches": patches}


def run_nmf(args) -> None:
    """factorkit NMF against scikit-learn NMF, defaults and tuned; relative error, time, held-out RMSE."""
    import warnings

    import torch
    from sklearn.decomposition import NMF as SkNMF

    from factorkit.methods.nmf import NMF

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    print("| data | k | method | setting | rel. error | seconds | held-out RMSE (10% masked) |")
    print("|---|---|---|---|---|---|---|")
    for name, X in nonnegative_tables().items():
        k = args.k
        observed = _split(X.shape, 0.1, 0)
        norm = np.linalg.norm(X)
        column_means = np.nanmean(np.where(observed, X, np.nan), 0)
        filled = np.where(observed, X, column_means)

        def held_out(R, observed=observed, X=X) -> float:
            return float(np.sqrt(np.mean((R - X)[~observed] ** 2)))

        runs = [
            ("factorkit NMF", "defaults", lambda k=k: NMF(n_components=k, random_state=0)),
            ("factorkit NMF", "mu", lambda k=k: NMF(n_components=k, solver="mu", random_state=0)),
            ("factorkit NMF", "alternating (ReLU decoding)",
             lambda k=k: NMF(n_components=k, solver="alternating", random_state=0)),
            ("factorkit NMF", "tuned (max_iter 2000, tol 1e-6)",
             lambda k=k: NMF(n_components=k, max_iter=2000, tol=1e-6, random_state=0)),
            ("scikit-learn NMF", "defaults (cd)", lambda k=k: SkNMF(n_components=k, random_state=0)),
            ("scikit-learn NMF", "mu", lambda k=k: SkNMF(n_components=k, solver="mu", random_state=0)),
            ("scikit-learn NMF", "tuned (cd, nndsvda, max_iter 2000, tol 1e-6)",
             lambda k=k: SkNMF(n_components=k, init="nndsvda", max_iter=2000, tol=1e-6, random_state=0)),
        ]  # fmt: skip
        for method, setting, make in runs:
            start = time.perf_counter()
            model = make()
            W = model.fit_transform(X)
            seconds = time.perf_counter() - start
            error = float(np.linalg.norm(X - W @ model.components_) / norm)
            # held-out: factorkit fits the observed entries only (mask=); scikit-learn (and factorkit's
            # 'alternating', which decodes whole samples) take no mask: they fit the table with the
            # held-out entries filled by their column means
            if method.startswith("factorkit") and "alternating" not in setting:
                masked = make()
                R = masked.fit_transform(X, mask=observed) @ masked.components_
            else:
                masked = make()
                R = masked.fit_transform(filled) @ masked.components_
            data = f"{name} {X.shape[0]}x{X.shape[1]}"
            print(
                f"| {data} | {k} | {method} | {setting} | {error:.4f} | {seconds:.2f} | {held_out(R):.4f} |"
            )
            sys.stdout.flush()


def _low_rank_fill(filled: np.ndarray, k: int, method: str) -> np.ndarray:
    """Rank-k reconstruction of a mean-filled table by truncated SVD, PCA or FactorAnalysis."""
    from sklearn.decomposition import PCA, FactorAnalysis, TruncatedSVD

    if method == "svd":
        model = TruncatedSVD(n_components=k, random_state=0)
        return model.fit_transform(filled) @ model.components_
    model = PCA(n_components=k) if method == "pca" else FactorAnalysis(n_components=k, random_state=0)
    scores = model.fit_transform(filled)
    return scores @ model.components_ + model.mean_


def run_ebmf(args) -> None:
    """EBMF / cEBMF against truncated SVD, PCA and FactorAnalysis: held-out entry RMSE, rank chosen."""
    import warnings

    from sklearn.datasets import load_digits, load_wine

    from factorkit.methods.ebmf import EBMF, CovariateEBMF

    warnings.simplefilter("ignore")
    print("| data | method | setting | held-out RMSE (10% masked) | rank | seconds |")
    print("|---|---|---|---|---|---|")
    tables = {"digits": load_digits(return_X_y=True), "wine": load_wine(return_X_y=True)}
    for name, (X, classes) in tables.items():
        # digits: pixel intensities on one scale, centred; wine: 13 measurements in different units,
        # standardized (standardizing digits would blow rare pixels up to |z| > 10)
        X = X - X.mean(0)
        if name == "wine":
            X = X / X.std(0)
        covariates = np.eye(classes.max() + 1)[classes]  # class one-hot: row covariates for cEBMF
        observed = _split(X.shape, 0.1, 0)
        means = np.nanmean(np.where(observed, X, np.nan), 0)
        filled = np.where(observed, X, means)
        zeroed = np.where(observed, X, 0.0)

        def rmse(R, observed=observed, X=X) -> float:
            return float(np.sqrt(np.mean((R - X)[~observed] ** 2)))

        rows = []
        start = time.perf_counter()
        model = EBMF(random_state=0).fit(zeroed, mask=observed)
        rows.append(
            (
                "factorkit EBMF",
                "defaults",
                rmse(model.fitted()),
                model.n_components_,
                time.perf_counter() - start,
            )
        )
        start = time.perf_counter()
        model = CovariateEBMF(random_state=0).fit(zeroed, mask=observed, row_covariates=covariates)
        seconds = time.perf_counter() - start
        rows.append(("factorkit cEBMF", "defaults, class one-hot covariates", rmse(model.fitted()),
                     model.n_components_, seconds))  # fmt: skip
        start = time.perf_counter()
        model = EBMF(n_components=20, random_state=0).fit(zeroed, mask=observed)
        seconds = time.perf_counter() - start
        rows.append(("factorkit EBMF", "n_components 20", rmse(model.fitted()), model.n_components_, seconds))
        rows.append(("column means", "(the fill every anchor starts from)", rmse(filled), 0, 0.0))
        # anchors: defaults (TruncatedSVD: 2 components; PCA and FactorAnalysis: all, which reproduce the
        # filled table), then the rank chosen on a validation split of the observed entries
        inner = observed & _split(X.shape, 0.1, 1)
        inner_filled = np.where(inner, X, np.nanmean(np.where(inner, X, np.nan), 0))
        validation = observed & ~inner
        ranks = [k for k in (1, 2, 3, 5, 8, 12, 16, 24, 32) if k < min(X.shape)]
        anchors = (
            ("svd", "TruncatedSVD", 2),
            ("pca", "PCA", min(X.shape)),
            ("fa", "FactorAnalysis", X.shape[1]),
        )
        for method, label, default_k in anchors:
            start = time.perf_counter()
            error = rmse(_low_rank_fill(filled, default_k, method))
            rows.append((f"scikit-learn {label}", "defaults", error, default_k, time.perf_counter() - start))
            start = time.perf_counter()
            errors = {}
            for k in ranks:
                errors[k] = np.sqrt(np.mean((_low_rank_fill(inner_filled, k, method) - X)[validation] ** 2))
            best = min(errors, key=errors.get)
            error = rmse(_low_rank_fill(filled, best, method))
            rows.append(
                (f"scikit-learn {label}", "rank by validation", error, best, time.perf_counter() - start)
            )
        for method, setting, error, rank, seconds in rows:
            data = f"{name} {X.shape[0]}x{X.shape[1]}"
            print(f"| {data} | {method} | {setting} | {error:.4f} | {rank} | {seconds:.1f} |")
        sys.stdout.flush()


def run_qwem(args) -> None:
    """QWEM against gensim's Word2Vec on gensim's lee and head500 corpora, defaults and tuned."""
    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence

    from factorkit.methods.embeddings import QWEM, KeyedVectors

    def scores(words, vectors) -> tuple[float, int, float]:
        keyed = KeyedVectors(words, vectors)
        analogies = keyed.evaluate_analogies(gensim_file("questions-words.txt"))
        similarity = keyed.evaluate_similarity(gensim_file("wordsim353.tsv"))["spearman"]
        return analogies["accuracy"], analogies["total"], similarity

    print("| corpus | method | setting | wordsim353 Spearman | analogy accuracy (questions) | seconds |")
    print("|---|---|---|---|---|---|")
    for name in ("lee_background.cor", "head500.noblanks.cor"):
        corpus = str(gensim_file(name))
        rows = []
        for setting, options in (("defaults", {}), ("sg=1, 20 epochs", {"sg": 1, "epochs": 20}),
                                 ("sg=0, 20 epochs", {"epochs": 20})):  # fmt: skip
            start = time.perf_counter()
            model = Word2Vec(LineSentence(corpus), seed=0, workers=args.threads, **options)
            seconds = time.perf_counter() - start
            rows.append(
                ("gensim Word2Vec", setting, *scores(list(model.wv.index_to_key), model.wv.vectors), seconds)
            )
        for setting, options in (("defaults", {}), ("dim 50", {"dim": 50}), ("dim 200", {"dim": 200})):
            start = time.perf_counter()
            model = QWEM(**options).fit(corpus)
            seconds = time.perf_counter() - start
            rows.append(("factorkit QWEM", setting, *scores(model.words_, model.embeddings_), seconds))
        for method, setting, accuracy, questions, similarity, seconds in rows:
            analogy = f"{accuracy:.3f} ({questions})"
            print(f"| {name} | {method} | {setting} | {similarity:.3f} | {analogy} | {seconds:.1f} |")
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("section", choices=["boolean", "nmf", "ebmf", "qwem"])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--elbmf-python", type=Path, default=None)
    args = parser.parse_args()
    {"boolean": run_boolean, "nmf": run_nmf, "ebmf": run_ebmf, "qwem": run_qwem}[args.section](args)


if __name__ == "__main__":
    main()
