"""Defaults on problems nobody tuned them on: win / tie / loss against each anchor's defaults.

    python benchmarks/held_out.py METHOD [--slice] [--workers N] [--json OUT]

``METHOD`` is one of ``bsc``, ``boolean``, ``ebmf``, ``nmf``, ``dictionary``, ``qwem``, ``robust``
(``all`` runs every one). Each method has a *family* of problems of the kind it is for, written
down here before its results were looked at and kept fixed since: planted problems varied in the
ways users' problems vary (size, rank, noise, density, amplitude, seeds) and every real matrix
that ships inside installed packages and fits the method (scikit-learn's bundled sets, gensim's
``test_data`` corpora), each built more than one plausible way. factorkit's defaults run against
the anchor's defaults on every problem; the script prints one row per problem, the win / tie /
loss counts and the worst case (the largest relative loss). ``--slice`` runs the first problem of
each group only (what the test suite runs; the whole families are marked slow there).

Scores and anchors (lower is better everywhere but where noted):

* ``bsc``: every bar found (Hungarian matching of atoms to bars, cosine > 0.9); the anchor is the
  single-start run (``n_init=1``, the default before restarts). No implementation of ProSper's
  BSC is installable here; its published bars runs (Henniges et al. 2010) are amplitude 10,
  noise 2, 10 bars, which is one cell of this family.
* ``boolean``: Boolean (Hamming) reconstruction error; anchor Asso (thresholds 0.1..0.9, its
  default) at the same rank.
* ``ebmf``: RMSE on 10% of the entries held out; anchor the column-means model (what an empirical
  Bayes fit must never be worse than).
* ``nmf``: relative Frobenius error; anchor ``sklearn.decomposition.NMF`` defaults at the same rank.
* ``dictionary``: the l1 sparse-coding objective ``0.5 ||X - Z D||^2 / n + alpha ||Z||_1 / n`` of the
  learned atoms, codes by the same exact solver for both; anchor
  ``sklearn.decomposition.DictionaryLearning`` defaults at the same ``alpha``.
* ``qwem``: Spearman correlation on WordSim353 (higher is better); anchor gensim ``Word2Vec``
  defaults (5 epochs, skip-gram off = CBOW, as gensim ships it) on the same corpus.
* ``robust``: relative error of the recovered low-rank matrix under gross outliers; anchor the
  convex program ``min ||W||_* + lam ||A(W) - y||_1`` (``factorkit.fit.nuclear.robust_nuclear_norm``,
  Douglas-Rachford) on the same measurements.

A tie is a difference within :data:`TIE` (relative) of the anchor's score; counts exactly equal
are ties too. Figures: ``docs/guide/real-data.md`` ("Held-out families").
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

TIE = 0.005  # relative difference counted as a tie


@dataclass
class Outcome:
    problem: str
    group: str
    ours: float
    anchor: float
    higher_is_better: bool = False

    @property
    def verdict(self) -> str:
        if self.ours == self.anchor or abs(self.ours - self.anchor) <= TIE * max(abs(self.anchor), 1e-12):
            return "tie"
        better = self.ours > self.anchor if self.higher_is_better else self.ours < self.anchor
        return "win" if better else "loss"

    @property
    def relative_loss(self) -> float:
        """How much worse than the anchor, relative (negative when better)."""
        scale = max(abs(self.anchor), 1e-12)
        gap = (self.anchor - self.ours) if self.higher_is_better else (self.ours - self.anchor)
        return gap / scale


Problem = tuple[str, str, Callable[[], Outcome]]  # (name, group, run)


# ---------------------------------------------------------------------------------------- BSC
def bsc_family() -> Iterator[Problem]:
    """Bars (Foldiak 1990; each bar on with probability 2 / H): 4x4, 5x5 and 6x6 pixels (8, 10,
    12 bars) of 500 samples at amplitude 10; 5x5 also with 2000 samples, and at amplitude 1; noise
    0.1, 0.2 and 0.3 of the amplitude; 20 seeds each: 300 problems."""
    cells = [(size, 500, 10.0) for size in (5, 4, 6)] + [(5, 2000, 10.0), (5, 500, 1.0)]
    for size, n, amplitude in cells:
        for relative in (0.2, 0.1, 0.3):
            for seed in range(20):
                name = f"bars {size}x{size} n={n} A={amplitude:g} noise={relative:g}A seed={seed}"
                group = f"bars {size}x{size} n={n} A={amplitude:g}"
                yield (
                    name,
                    group,
                    lambda s=size, n=n, a=amplitude, r=relative, seed=seed: _bars(s, n, a, r, seed),
                )


def _bars_found(W: np.ndarray, atoms: np.ndarray) -> int:
    from scipy.optimize import linear_sum_assignment

    a = W / np.linalg.norm(W, axis=1, keepdims=True)
    b = atoms / np.maximum(np.linalg.norm(atoms, axis=1, keepdims=True), 1e-12)
    cosine = a @ b.T
    rows, cols = linear_sum_assignment(-cosine)
    return int((cosine[rows, cols] > 0.9).sum())


def _bars(size: int, n: int, amplitude: float, relative: float, seed: int) -> Outcome:
    from factorkit.methods import BinarySparseCoding
    from factorkit.problems.bars import bars

    X, W, _ = bars(size, n, amplitude=amplitude, noise=relative * amplitude, seed=seed)
    H = 2 * size
    ours = BinarySparseCoding(H).fit(X)
    single = BinarySparseCoding(H, n_init=1).fit(X)
    # score: all bars found (1) or not (0); higher is better
    found, found_single = _bars_found(W, ours.components_) == H, _bars_found(W, single.components_) == H
    return Outcome("", "", float(found), float(found_single),
                   higher_is_better=True)  # fmt: skip


# ------------------------------------------------------------------------------------ Boolean
def boolean_tables() -> Iterator[tuple[str, str, Callable[[], np.ndarray]]]:
    """Every binary table here, each built more than one way: ``(name, group, build)``."""
    from real_data import gensim_file, head500_documents, lee_documents, presence, tokens

    def corpus(name: str, split: str) -> list[list[str]]:
        lines = gensim_file(name).read_text(encoding="utf-8", errors="replace").splitlines()
        if split == "words":
            return [tokens(line) for line in lines if line.strip()]
        return [line.lower().split() for line in lines if line.strip()]

    for min_df in (5, 2, 10):
        yield f"lee_background [a-z]+ df>={min_df}", "lee", lambda d=min_df: presence(lee_documents(), d)[0]
    yield (
        "lee_background whitespace df>=5",
        "lee",
        lambda: presence(corpus("lee_background.cor", "space"), 5)[0],
    )
    for name in ("lee.cor", "pang_lee_polarity.cor", "miIslita.cor", "varembed_lee_subcorpus.cor"):
        for min_df in (3, 5):
            yield f"{name} df>={min_df}", name, lambda n=name, d=min_df: presence(corpus(n, "words"), d)[0]
    yield "head500 200-token docs df>=40", "head500", lambda: presence(head500_documents(200), 40)[0]
    yield "head500 100-token docs df>=20", "head500", lambda: presence(head500_documents(100), 20)[0]

    def digits(threshold: int) -> np.ndarray:
        from sklearn.datasets import load_digits

        return load_digits().data >= threshold

    for threshold in (8, 4, 12):
        yield f"digits >= {threshold}", "digits", lambda t=threshold: digits(t)

    def median_split(loader: str, above: bool) -> np.ndarray:
        import sklearn.datasets

        X = getattr(sklearn.datasets, loader)().data
        median = np.median(X, 0)
        return X > median if above else X < median

    for loader in ("load_breast_cancer", "load_wine", "load_iris", "load_diabetes"):
        yield f"{loader[5:]} > column median", loader[5:], lambda n=loader: median_split(n, True)
        yield f"{loader[5:]} < column median", loader[5:], lambda n=loader: median_split(n, False)


def boolean_family() -> Iterator[Problem]:
    """Every table of :func:`boolean_tables` at rank 10 and 5 (rank below half the short side),
    then planted tiles: 200x100 and 500x300, ranks 5 and 10, tile densities 0.05 and 0.15, 0, 1%
    and 5% of the entries flipped, seeds 0-2."""
    for name, group, build in boolean_tables():
        for k in (10, 5):
            yield f"{name} k={k}", group, lambda b=build, k=k: _boolean(b(), k)
    for shape in ((200, 100), (500, 300)):
        for k in (5, 10):
            for density in (0.15, 0.05):
                for flips in (0.01, 0.0, 0.05):
                    for seed in range(3):
                        name = (
                            f"planted {shape[0]}x{shape[1]} k={k} density={density} flips={flips} seed={seed}"
                        )
                        yield name, f"planted {shape[0]}x{shape[1]}", (
                            lambda s=shape, k=k, d=density, f=flips, seed=seed: _boolean(
                                _tiles(s, k, d, f, seed), k
                            )
                        )  # fmt: skip


def _tiles(shape, k: int, density: float, flips: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    U = rng.random((shape[0], k)) < density
    V = rng.random((k, shape[1])) < density
    X = (U.astype(int) @ V.astype(int)) > 0
    return X ^ (rng.random(shape) < flips)


def _boolean(X: np.ndarray, k: int) -> Outcome:
    from factorkit.methods import BooleanMF
    from factorkit.methods.boolean import asso
    from factorkit.problems.boolean import boolean_product

    X = np.asarray(X, dtype=bool)
    keep = X.any(0)  # a term no document holds is no column of a presence table
    X = X[:, keep][X[:, keep].any(1)]
    if min(X.shape) < 2 * k:
        raise _Skip(f"{X.shape} is too small for rank {k}")
    model = BooleanMF(n_components=k)
    ours = int((model.inverse_transform(model.fit_transform(X)) != X).sum())
    anchor = int((boolean_product(*asso(X, k)) != X).sum())
    return Outcome("", "", float(ours), float(anchor))


class _Skip(Exception):
    pass


# --------------------------------------------------------------------------------------- EBMF
def ebmf_tables() -> Iterator[tuple[str, str, Callable[[], np.ndarray]]]:
    """Every real-valued table here, each scaled two ways (columns standardized; centred only)."""
    import sklearn.datasets

    for loader in (
        "load_digits",
        "load_wine",
        "load_iris",
        "load_breast_cancer",
        "load_diabetes",
        "load_linnerud",
    ):
        for scaling in ("standardized", "centred"):
            yield (
                f"{loader[5:]} {scaling}",
                loader[5:],
                lambda n=loader, s=scaling: _scaled(getattr(sklearn.datasets, n)().data, s),
            )


def _scaled(X: np.ndarray, scaling: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    X = X[:, X.std(0) > 0]  # a constant column carries nothing to predict
    X = X - X.mean(0)
    return X / X.std(0) if scaling == "standardized" else X


def ebmf_family() -> Iterator[Problem]:
    """Every table of :func:`ebmf_tables` with 10% of its entries held out (seeds 0-2), then planted
    low-rank plus Gaussian noise: 100x50 and 300x100, ranks 1, 3 and 8, noise 0.1, 1 and 3 times
    the signal's entry scale, seeds 0-2; and pure noise (rank 0). EBMF at its defaults
    (``n_components=10``)."""
    for name, group, build in ebmf_tables():
        for seed in range(3):
            yield f"{name} seed={seed}", group, lambda b=build, seed=seed: _ebmf(b(), seed)
    for shape in ((100, 50), (300, 100)):
        for rank in (3, 1, 8, 0):
            for noise in (1.0, 0.1, 3.0):
                for seed in range(3):
                    name = f"planted {shape[0]}x{shape[1]} rank={rank} noise={noise} seed={seed}"
                    yield name, f"planted {shape[0]}x{shape[1]}", (
                        lambda s=shape, r=rank, z=noise, seed=seed: _ebmf(_low_rank(s, r, z, seed), seed)
                    )  # fmt: skip


def _low_rank(shape, rank: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(shape[0], rank)) @ rng.normal(size=(rank, shape[1])) / math.sqrt(max(rank, 1))
    return signal + noise * rng.normal(size=shape)


def _ebmf(X: np.ndarray, seed: int) -> Outcome:
    from real_data import _split

    from factorkit.methods import EBMF

    observed = _split(X.shape, 0.1, seed)
    if observed.all():  # a small table can keep every entry (its rows and columns are kept whole)
        raise _Skip(f"no entry of {X.shape} held out at seed {seed}")
    means = np.nanmean(np.where(observed, X, np.nan), 0)
    model = EBMF().fit(X, mask=observed)
    R = model.loadings_ @ model.factors_.T
    ours = float(np.sqrt(np.mean((R - X)[~observed] ** 2)))
    anchor = float(np.sqrt(np.mean((means[None, :] - X)[~observed] ** 2)))
    return Outcome("", "", ours, anchor)


# ---------------------------------------------------------------------------------------- NMF
def nmf_tables() -> Iterator[tuple[str, str, Callable[[], np.ndarray]]]:
    """Every non-negative table here, each built more than one way."""
    import sklearn.datasets
    from real_data import lee_documents, presence

    yield "digits", "digits", lambda: sklearn.datasets.load_digits().data
    yield "digits / 16", "digits", lambda: sklearn.datasets.load_digits().data / 16.0
    for loader in ("load_wine", "load_iris", "load_breast_cancer", "load_linnerud"):
        yield f"{loader[5:]} raw", loader[5:], lambda n=loader: getattr(sklearn.datasets, n)().data
        yield f"{loader[5:]} columns / max", loader[5:], (
            lambda n=loader: (lambda X: X / X.max(0))(getattr(sklearn.datasets, n)().data)
        )  # fmt: skip

    def counts(tfidf: bool) -> np.ndarray:
        from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

        documents = [" ".join(doc) for doc in lee_documents()]
        vectorizer = TfidfVectorizer(min_df=5) if tfidf else CountVectorizer(min_df=5)
        return vectorizer.fit_transform(documents).toarray().astype(np.float64)

    yield "lee counts df>=5", "lee", lambda: counts(False)
    yield "lee tf-idf df>=5", "lee", lambda: counts(True)
    yield "lee presence df>=5", "lee", lambda: presence(lee_documents(), 5)[0].astype(np.float64)

    def patches(size: int) -> np.ndarray:
        from sklearn.feature_extraction.image import extract_patches_2d

        gray = [image.mean(2) / 255.0 for image in sklearn.datasets.load_sample_images().images]
        return np.concatenate(
            [extract_patches_2d(g, (size, size), max_patches=1500, random_state=i).reshape(-1, size * size)
             for i, g in enumerate(gray)]
        )  # fmt: skip

    yield "image patches 8x8", "image patches", lambda: patches(8)
    yield "image patches 6x6", "image patches", lambda: patches(6)


def nmf_family() -> Iterator[Problem]:
    """Every table of :func:`nmf_tables` at ranks 5 and 10 (below the short side), then planted
    ``W H`` (exponential factors) plus half-normal noise: 200x100 and 1000x300, ranks 5 and 20,
    noise 0.01, 0.1 and 0.5 of the entry scale, seeds 0-2."""
    for name, group, build in nmf_tables():
        for k in (10, 5):
            yield f"{name} k={k}", group, lambda b=build, k=k: _nmf(b(), k)
    for shape in ((200, 100), (1000, 300)):
        for k in (5, 20):
            for noise in (0.1, 0.01, 0.5):
                for seed in range(3):
                    name = f"planted {shape[0]}x{shape[1]} k={k} noise={noise} seed={seed}"
                    yield name, f"planted {shape[0]}x{shape[1]}", (
                        lambda s=shape, k=k, z=noise, seed=seed: _nmf(_planted_nmf(s, k, z, seed), k)
                    )  # fmt: skip


def _planted_nmf(shape, k: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.exponential(size=(shape[0], k)) @ rng.exponential(size=(k, shape[1])) / k
    return X + noise * X.mean() * np.abs(rng.normal(size=shape))


def _nmf(X: np.ndarray, k: int) -> Outcome:
    from sklearn.decomposition import NMF as SkNMF

    from factorkit.methods import NMF

    X = np.asarray(X, dtype=np.float64)
    if k >= min(X.shape):
        raise _Skip(f"rank {k} is not below the short side of {X.shape}")
    norm = np.linalg.norm(X)
    ours = NMF(k).fit(X).reconstruction_err_ / norm
    anchor = SkNMF(k).fit(X).reconstruction_err_ / norm
    return Outcome("", "", float(ours), float(anchor))


# --------------------------------------------------------------------------------- dictionary
def dictionary_family() -> Iterator[Problem]:
    """Digits (raw and / 16, centred), image patches 8x8 (centred), and planted sparse codes in
    unit atoms (20 and 50 atoms in 16 and 30 dimensions, 3 active per sample, noise 0.01 and
    0.1, seeds 0-2); 10 atoms for the real tables, the planted count for the planted ones;
    ``alpha`` 1 and 0.1 (scikit-learn's default and a smaller one), the same for both."""
    import sklearn.datasets

    def digits(scale: float) -> np.ndarray:
        X = sklearn.datasets.load_digits().data[:600] / scale
        return X - X.mean(0)

    def patches() -> np.ndarray:
        from sklearn.feature_extraction.image import extract_patches_2d

        gray = sklearn.datasets.load_sample_images().images[0].mean(2) / 255.0
        X = extract_patches_2d(gray, (8, 8), max_patches=600, random_state=0).reshape(-1, 64)
        return X - X.mean(0)

    for alpha in (1.0, 0.1):
        yield f"digits (centred) alpha={alpha}", "digits", lambda a=alpha: _dictionary(digits(1.0), 10, a)
        yield (
            f"digits / 16 (centred) alpha={alpha}",
            "digits",
            lambda a=alpha: _dictionary(digits(16.0), 10, a),
        )
        yield f"image patches 8x8 alpha={alpha}", "patches", lambda a=alpha: _dictionary(patches(), 10, a)
        for atoms, dim in ((20, 16), (50, 30)):
            for noise in (0.01, 0.1):
                for seed in range(3):
                    name = f"planted {atoms} atoms in {dim}-D noise={noise} alpha={alpha} seed={seed}"
                    yield name, f"planted {atoms}x{dim}", (
                        lambda K=atoms, D=dim, z=noise, a=alpha, seed=seed: _dictionary(
                            _sparse(K, D, z, seed), K, a
                        )
                    )  # fmt: skip


def _sparse(atoms: int, dim: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(atoms, dim))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    Z = np.zeros((400, atoms))
    for row in Z:
        row[rng.choice(atoms, 3, replace=False)] = rng.normal(size=3) * 3
    return Z @ D + noise * rng.normal(size=(400, dim))


def _l1_objective(X: np.ndarray, D: np.ndarray, alpha: float) -> float:
    from sklearn.decomposition import sparse_encode

    Z = sparse_encode(X, D, algorithm="lasso_cd", alpha=alpha, max_iter=5000)
    return float((0.5 * ((X - Z @ D) ** 2).sum() + alpha * np.abs(Z).sum()) / X.shape[0])


def _dictionary(X: np.ndarray, atoms: int, alpha: float) -> Outcome:
    from sklearn.decomposition import DictionaryLearning as SkDictionaryLearning

    from factorkit.methods import DictionaryLearning

    ours = DictionaryLearning(atoms, alpha=alpha).fit(X).components_
    anchor = SkDictionaryLearning(atoms, alpha=alpha, random_state=0).fit(X).components_
    return Outcome("", "", _l1_objective(X, ours, alpha), _l1_objective(X, anchor, alpha))


# --------------------------------------------------------------------------------------- QWEM
def qwem_family() -> Iterator[Problem]:
    """gensim's corpora large enough to embed (lee_background, the 200-token head500 documents,
    pang_lee_polarity, varembed_lee_subcorpus), at dimensions 50 and 100, windows 5 and 2;
    scored on WordSim353 pairs both vocabularies hold."""
    for corpus in ("lee_background.cor", "head500.noblanks.cor", "pang_lee_polarity.cor"):
        for dim in (50, 100):
            for window in (5, 2):
                yield (
                    f"{corpus} d={dim} window={window}",
                    corpus,
                    lambda c=corpus, d=dim, w=window: _qwem(c, d, w),
                )


def _qwem(corpus: str, dim: int, window: int) -> Outcome:
    from gensim.models import Word2Vec
    from real_data import gensim_file, tokens
    from scipy.stats import spearmanr

    from factorkit.methods import QWEM

    text = gensim_file(corpus).read_text(encoding="utf-8", errors="replace")
    if corpus.startswith("head500"):
        words = tokens(text)
        sentences = [words[i : i + 200] for i in range(0, len(words), 200)]
    else:
        sentences = [tokens(line) for line in text.splitlines() if line.strip()]
    ours = QWEM(dim=dim, window=window).fit(sentences)
    anchor = Word2Vec(sentences, vector_size=dim, window=window, seed=0, workers=1).wv
    pairs = []
    for line in gensim_file("wordsim353.tsv").read_text().splitlines():
        if line.startswith("#"):
            continue
        a, b, score = line.lower().split("\t")[:3]
        if a in ours.index_ and b in ours.index_ and a in anchor and b in anchor:
            pairs.append((a, b, float(score)))
    if len(pairs) < 20:
        raise _Skip(f"only {len(pairs)} WordSim353 pairs in both vocabularies")
    gold = [p[2] for p in pairs]

    def similarity(vectors) -> float:
        return float(spearmanr([vectors(a, b) for a, b, _ in pairs], gold).statistic)

    unit = ours.embeddings_ / np.maximum(np.linalg.norm(ours.embeddings_, axis=1, keepdims=True), 1e-300)
    ours_score = similarity(lambda a, b: float(unit[ours.index_[a]] @ unit[ours.index_[b]]))
    anchor_score = similarity(lambda a, b: float(anchor.similarity(a, b)))
    return Outcome("", "", ours_score, anchor_score, higher_is_better=True)


# ------------------------------------------------------------------------------------- robust
def robust_family() -> Iterator[Problem]:
    """Rank-r matrices 20x20 and 40x40 (ranks 1 and 3), PSD (``W = U U^T``, Ma & Fattahi's setting)
    and general (``W = U V^T``), seen through ``n = 5 r m`` and ``10 r m`` unit-norm Gaussian
    measurements (where that is at most ``m^2``) of which 5%, 20% or 30% are replaced by outliers
    of 10x the measurements' scale, seeds 0-2: the sub-gradient method (Ma & Fattahi) at its
    defaults with the rank over-estimated three times (``r' = 3 r``) against the convex program at
    its defaults. (Until issue 30's second pass the family was 10x10 and 20x20 at ``n = 5 r m``
    only, where ``n`` is below the dimension of ``W`` and both methods failed on most problems.)"""
    import itertools

    grid = itertools.product((True, False), (20, 40), (1, 3), (5, 10), (0.05, 0.2, 0.3), range(3))
    for symmetric, size, rank, multiple, fraction, seed in grid:
        if multiple * rank * size > size * size:
            continue
        form = "PSD" if symmetric else "general"
        name = f"{form} {size}x{size} rank={rank} n={multiple}rm outliers={fraction} seed={seed}"
        settings = (symmetric, size, rank, multiple, fraction, seed)
        yield name, f"{form} {size}x{size}", lambda settings=settings: _robust(*settings)


def _robust(symmetric: bool, size: int, rank: int, multiple: int, fraction: float, seed: int) -> Outcome:
    from factorkit.fit.nuclear import robust_nuclear_norm
    from factorkit.fit.subgradient import subgradient_method
    from factorkit.problems.sensing import corrupt, make_sensing_problem

    n = multiple * rank * size
    clean = make_sensing_problem(size, size, rank, n, psd=symmetric, seed=seed, dtype="float64")
    problem = corrupt(clean, outliers=fraction, seed=seed)
    ours = subgradient_method(problem, 3 * rank, symmetric=symmetric, seed=seed, log_every=10**9).rel_error
    anchor = float(problem.rel_error(robust_nuclear_norm(problem).W))
    return Outcome("", "", float(ours), anchor)


FAMILIES = {
    "bsc": bsc_family,
    "boolean": boolean_family,
    "ebmf": ebmf_family,
    "nmf": nmf_family,
    "dictionary": dictionary_family,
    "qwem": qwem_family,
    "robust": robust_family,
}


def _job(method: str, index: int):
    """Problem ``index`` of ``method``'s family (in a worker process): ``(name, group, outcome or skip)``."""
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    name, group, job = list(FAMILIES[method]())[index]
    try:
        outcome = job()
    except _Skip as reason:
        return name, group, str(reason)
    outcome.problem, outcome.group = name, group
    return name, group, outcome


def run(method: str, only_first: bool = False, workers: int = 1, out=sys.stdout) -> dict:
    """Run a family (``only_first``: the first problem of each group) on ``workers`` processes;
    print every row and the tally, return it."""
    from concurrent.futures import ProcessPoolExecutor

    start = time.perf_counter()
    chosen, seen = [], set()
    for index, (_, group, _) in enumerate(FAMILIES[method]()):
        if only_first and group in seen:
            continue
        seen.add(group)
        chosen.append(index)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_job, [method] * len(chosen), chosen))
    else:
        results = [_job(method, index) for index in chosen]
    outcomes, skipped = [], []
    for name, _, outcome in results:
        if isinstance(outcome, str):
            skipped.append(f"{name}: {outcome}")
            continue
        outcomes.append(outcome)
        print(
            f"| {name} | {outcome.ours:.6g} | {outcome.anchor:.6g} | {outcome.verdict} |",
            file=out,
            flush=True,
        )
    tally = {v: sum(o.verdict == v for o in outcomes) for v in ("win", "tie", "loss")}
    worst = max(outcomes, key=lambda o: o.relative_loss)
    summary = {
        "method": method,
        "problems": len(outcomes),
        **tally,
        "worst": {"problem": worst.problem, "ours": worst.ours, "anchor": worst.anchor,
                  "relative_loss": worst.relative_loss},
        "skipped": skipped,
        "seconds": time.perf_counter() - start,
        "outcomes": [o.__dict__ for o in outcomes],
    }  # fmt: skip
    print(
        f"{method}: {len(outcomes)} problems, win {tally['win']} / tie {tally['tie']} / "
        f"loss {tally['loss']}; worst: {worst.problem} ({worst.ours:.6g} vs {worst.anchor:.6g}, "
        f"{100 * worst.relative_loss:+.1f}%); {len(skipped)} skipped; {summary['seconds']:.0f} s",
        file=out,
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("method", choices=[*FAMILIES, "all"])
    parser.add_argument("--slice", action="store_true", help="the first problem of each group only")
    parser.add_argument("--json", type=Path, help="write the tallies (and every outcome) here")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    args = parser.parse_args()
    methods = list(FAMILIES) if args.method == "all" else [args.method]
    results = [run(method, args.slice, args.workers) for method in methods]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
