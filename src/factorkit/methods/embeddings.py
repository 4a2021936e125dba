"""word2vec as matrix factorization: closed-form quartic-approximation embeddings (QWEM).

Karkada, Simon, Bahri & DeWeese, "Closed-form training dynamics of word2vec" (arXiv:2502.09863).
Skip-gram with negative sampling minimizes, over embeddings ``w_i``,

    L = - sum_ij [ P+_ij log sigma(w_i . w_j) + P-_ij log sigma(-w_i . w_j) ],

with ``P+`` the probability of the pair ``(i, j)`` inside a context window and ``P-_ij = psi P_i
P_j`` the negative-sampling pairs. Expanding ``log sigma(x) = -log 2 + x/2 - x^2/8 + O(x^4)``,
each term is a quadratic in ``x = w_i . w_j`` minimized at

    M*_ij = 2 (P+_ij - P-_ij) / (P+_ij + P-_ij),

and the approximate loss is quartic in ``W``: ``sum_ij (P+_ij + P-_ij)/8 (w_i . w_j - M*_ij)^2`` up to a
constant, a *weighted* factorization. The paper's closed form assumes the weighting
``P+ + P-`` constant (its theorem's hypothesis, which its choice of hyper-parameters makes
approximately true); the loss is then the unweighted

    L(W) = (1/4) || W W^T - M* ||_F^2,

whose minimizer over ``V x d`` matrices is ``W = V_d Lambda_d^{1/2}`` (top-``d`` positive
eigenpairs of ``M*``, up to a rotation; Eckart-Young), and gradient flow ``dW/dt = (M* - W W^T) W``
from small initialisation learns the eigen-directions one at a time: along an eigenvector with
eigenvalue ``lambda`` and initial squared size ``s0^2``, ``s^2(t) = lambda / (1 + (lambda/s0^2 - 1)
e^{-2 lambda t})``, which is half-way at ``t = ln(lambda / s0^2 - 1) / (2 lambda)``
(:func:`switch_on_times`; the paper's ``(1/lambda) ln(lambda / s0^2)`` is the same with time in
units of half our step).

Checked against the authors' code (github.com/dkarkada/qwem, ``compute_cooccurrence.py`` and
``notebooks/mstar_eigs.ipynb``): it builds the same ``M*`` with window weights ``L + 1 - r``
(ours ``(L + 1 - r) / L``; the scale cancels in ``P+``), ``P+`` normalized to sum 1, and ``P- =
P_i P_j``, which is ``negatives=1, power=1`` here (word2vec's own choice is 5 negatives, the default).

``M*`` is dense (``-2`` wherever two words never co-occur) but ``M* = S - 2 * 1 1^T`` with ``S``
sparse (``S_ij = 4 P+_ij / (P+_ij + P-_ij)`` on co-occurring pairs), so the top eigenpairs come
from a sparse-plus-rank-one operator (:func:`factorkit.linalg.top_eigenpairs`: a float32 block
Lanczos method with float64 checks) in memory linear in the number of co-occurring pairs.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from factorkit._lean import LeanEstimator
from factorkit._params import NONE, Choice, Integer, RandomState, Real, seed_of, validate_params
from factorkit._validation import check_float, check_int
from factorkit.linalg import SOLVERS, top_eigenpairs
from factorkit.methods.corpus import CorpusStatistics, read_sentences, synthetic_corpus

if TYPE_CHECKING:
    import torch

__all__ = [
    "QWEM",
    "CorpusStatistics",
    "KeyedVectors",
    "embed_report",
    "gradient_descent_path",
    "quartic_loss",
    "read_sentences",
    "switch_on_times",
    "synthetic_corpus",
]


def quartic_loss(W: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """``(1/4) ||W W^T - M||_F^2``."""
    return 0.25 * (W @ W.T - M).square().sum()


def gradient_descent_path(
    M: np.ndarray,
    dim: int,
    *,
    init_scale: float = 1e-6,
    lr: float | None = None,
    steps: int = 2000,
    seed: int = 0,
    log_every: int = 1,
    initial: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradient descent on :func:`quartic_loss` from ``W_0 = init_scale * G`` (``G`` i.i.d. normal).

    Runs the core trainer (:func:`factorkit.fit.train_gd`, plain GD) on the model
    :class:`~factorkit.models.SymmetricFactorization` and the problem
    :class:`~factorkit.problems.DenseTarget` (``(1/4) ||W W^T - M||^2``), so each step is
    ``W <- W + lr (M - W W^T) W``. Returns the final ``W``, the times ``t = step * lr`` at which
    the singular values were logged and the singular values (``len(times) x dim``). ``lr``
    defaults to ``0.1 / lambda_max``; ``initial`` replaces the random ``W_0``.
    """
    import torch

    from factorkit.fit.gd import train_gd
    from factorkit.models.symmetric import SymmetricFactorization
    from factorkit.problems.target import DenseTarget

    M_t = torch.as_tensor(np.asarray(M, dtype=np.float64))
    if M_t.dim() != 2 or M_t.shape[0] != M_t.shape[1]:
        raise ValueError(f"M must be a square matrix, got shape {tuple(M_t.shape)}")
    if lr is None:
        lr = 0.1 / float(torch.linalg.eigvalsh(M_t)[-1])
    lr = check_float("lr", lr, positive=True)
    model = SymmetricFactorization(M_t.shape[0], check_int("dim", dim))
    start = None
    if initial is not None:
        W0 = torch.as_tensor(np.array(initial, dtype=np.float64))
        if W0.shape != (M_t.shape[0], dim):
            raise ValueError(f"initial must have shape {(M_t.shape[0], dim)}, got {tuple(W0.shape)}")
        start = [W0[None]]
    result = train_gd(
        DenseTarget(M_t, 0.25),
        model,
        seeds=check_int("seed", seed, minimum=0),
        init_scale=check_float("init_scale", init_scale, positive=True),
        lr=lr,
        max_steps=check_int("steps", steps, minimum=0),
        log_every=check_int("log_every", log_every),
        progress=False,
        initial=start,
        monitor=lambda weights: torch.linalg.svdvals(weights[0]),
    )
    times = np.array(result.history_steps, dtype=float) * lr
    return result.weights[0][0].numpy(), times, result.history_monitor[:, 0].numpy()


def switch_on_times(
    eigenvalues: np.ndarray, initial_sq: np.ndarray | float, lr: float | None = None
) -> np.ndarray:
    """Half-way times ``ln(lambda / s0^2 - 1) / (2 rate)`` of each direction.

    Gradient flow grows a direction's ``s^2`` at ``rate = lambda``. Gradient descent with step
    ``lr`` multiplies ``s`` by ``1 + lr lambda`` per step while ``s^2 << lambda``, so with ``lr``
    given the rate is ``ln(1 + lr lambda) / lr`` (times stay ``step * lr``), later than the flow by
    ``lr lambda / ln(1 + lr lambda)`` (5% at ``lr = 0.1 / lambda``).
    """
    lam = np.asarray(eigenvalues, dtype=float)
    rate = lam if lr is None else np.log1p(check_float("lr", lr, positive=True) * lam) / lr
    return np.log(lam / np.asarray(initial_sq, dtype=float) - 1) / (2 * rate)


class QWEM(LeanEstimator):
    """Closed-form word embeddings from corpus statistics (scikit-learn style).

    Parameters
    ----------
    dim : int
        Embedding dimension ``d`` (at most the vocabulary size minus one).
    window, min_count, max_vocab, weighting
        See :class:`CorpusStatistics`.
    negatives : float
        ``psi``, the negative-sampling ratio (word2vec's and gensim's default is 5 negatives per
        pair; the ``factorkit embed`` default too).
    power : float
        Unigram exponent of the negative distribution.
    solver : {'auto', 'dense', 'lanczos', 'arpack'}
        Eigensolver (:func:`factorkit.linalg.top_eigenpairs`): ``'auto'`` is exact dense
        ``eigh`` below 700 words and the float32 block Lanczos method above.
    tol : float
        Eigensolver tolerance: every pair has ``||M* v - lambda v|| <= tol lambda_1``.
    random_state : None, int, numpy RandomState or Generator
        Seeds the eigensolver's start block (scikit-learn's meaning, as every factorkit estimator).
    seed : int, deprecated
        The former name of ``random_state``; still accepted in 0.1 with a ``FutureWarning``, to be
        removed in 0.2.

    Attributes
    ----------
    words_ : list of str, ``embeddings_`` : (V, d) array, ``eigenvalues_`` : (d,) array,
    ``vectors_`` : :class:`KeyedVectors` of the embeddings, statistics_ : CorpusStatistics,
    ``solver_`` : the eigensolver that produced the result, ``eigen_residual_`` : its largest
    relative residual (float64), ``fit_time_`` : seconds.
    """

    _parameters = {
        "dim": Integer(),
        "window": Integer(),
        "min_count": Integer(),
        "max_vocab": NONE | Integer(),
        "negatives": Real(positive=True),
        "power": Real(positive=True),
        "weighting": Choice("linear", "uniform"),
        "solver": Choice(*SOLVERS),
        "tol": Real(positive=True),
        "random_state": RandomState(),
        "seed": Choice("deprecated") | Integer(minimum=0),
    }

    def __init__(
        self,
        dim: int = 100,
        window: int = 5,
        min_count: int = 5,
        max_vocab: int | None = None,
        negatives: float = 5.0,
        power: float = 1.0,
        weighting: str = "linear",
        solver: str = "auto",
        tol: float = 1e-6,
        random_state=0,
        seed="deprecated",
    ) -> None:
        self.dim = dim
        self.window = window
        self.min_count = min_count
        self.max_vocab = max_vocab
        self.negatives = negatives
        self.power = power
        self.weighting = weighting
        self.solver = solver
        self.tol = tol
        self.random_state = random_state
        self.seed = seed

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # the input is a corpus (a path or sentences of words), not a numeric 2-D array
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    def fit(self, corpus, y=None, progress: bool | None = False) -> QWEM:
        """Count the corpus (a path or an iterable of sentences) and solve for the embeddings.

        ``progress`` as in :meth:`CorpusStatistics.fit` (off by default here; ``factorkit embed``
        passes ``None``: bars on a terminal).
        """
        start = time.perf_counter()
        validate_params(self)
        dim = self.dim
        stats_ = CorpusStatistics(self.min_count, self.max_vocab, self.window, self.weighting).fit(
            corpus, progress
        )
        V = len(stats_.words)
        if dim >= V:
            raise ValueError(f"dim must be < the vocabulary size {V}, got {dim}")
        S, c = stats_.target(self.negatives, self.power)
        # S is symmetric by construction (C + C^T with symmetric P-)
        result = top_eigenpairs(
            S, dim, c, solver=self.solver, tol=self.tol, seed=self._seed(), check_input=False
        )
        values, vectors = result.values, result.vectors
        positive = np.clip(values, 0.0, None)
        self.solver_, self.eigen_residual_ = result.solver, result.residual
        self.statistics_ = stats_
        self.words_ = stats_.words
        self.index_ = stats_.index
        self.eigenvalues_ = values
        self.embeddings_ = vectors * np.sqrt(positive)
        self.vectors_ = KeyedVectors(self.words_, self.embeddings_)  # normalized once, for queries
        self.fit_time_ = time.perf_counter() - start
        return self

    def _seed(self) -> int:
        """The eigensolver's seed from ``random_state`` (or the deprecated ``seed``, with a warning)."""
        if isinstance(self.seed, str) and self.seed == "deprecated":
            return seed_of(self.random_state)
        warnings.warn(
            "QWEM(seed=...) was renamed QWEM(random_state=...) in factorkit 0.1 and will be removed in 0.2; "
            "seed is used here",
            FutureWarning,
            stacklevel=3,
        )
        return int(self.seed)

    def most_similar(self, word: str, topn: int = 10) -> list[tuple[str, float]]:
        """The ``topn`` nearest words by cosine similarity."""
        return self.vectors_.most_similar(word, topn)

    def analogy(self, a: str, b: str, c: str, topn: int = 1) -> list[tuple[str, float]]:
        """``a : b :: c : ?`` by 3CosAdd (``b - a + c``, excluding the three query words)."""
        return self.vectors_.analogy(a, b, c, topn)

    def save_word2vec(self, path: str | Path) -> Path:
        """Write the word2vec text format (``V d`` header, then ``word v_1 ... v_d``)."""
        return self.vectors_.save_word2vec(path)


class KeyedVectors:
    """Words with vectors: similarity queries and the standard evaluations (any embedding)."""

    def __init__(self, words: list[str], vectors: np.ndarray) -> None:
        self.words = list(words)
        self.vectors = np.asarray(vectors, dtype=np.float64)
        if self.vectors.ndim != 2:
            raise ValueError(f"vectors must be a 2-D array (words x dim), got shape {self.vectors.shape}")
        if self.vectors.shape[0] != len(self.words):
            raise ValueError(f"{len(self.words)} words but {self.vectors.shape[0]} vectors")
        if not np.isfinite(self.vectors).all():
            raise ValueError("vectors contain NaN or inf")
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            repeated = next(w for w, count in Counter(self.words).items() if count > 1)
            raise ValueError(f"words must be unique, {repeated!r} appears more than once")
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self.unit = self.vectors / np.where(norms > 0, norms, 1.0)

    def _id(self, word: str) -> int:
        key = word.lower()
        if key not in self.index:
            raise ValueError(f"word {word!r} is not in the vocabulary")
        return self.index[key]

    def _ranked(self, scores: np.ndarray, excluded: list[int], topn: int) -> list[tuple[str, float]]:
        """The ``topn`` best-scoring words other than ``excluded`` (fewer if the vocabulary ends)."""
        topn = check_int("topn", topn)
        scores[excluded] = -np.inf
        best = np.argsort(-scores)[: min(topn, len(self.words) - len(set(excluded)))]
        return [(self.words[j], float(scores[j])) for j in best]

    def most_similar(self, word: str, topn: int = 10) -> list[tuple[str, float]]:
        i = self._id(word)
        return self._ranked(self.unit @ self.unit[i], [i], topn)

    def analogy(self, a: str, b: str, c: str, topn: int = 1) -> list[tuple[str, float]]:
        ia, ib, ic = self._id(a), self._id(b), self._id(c)
        query = self.unit[ib] - self.unit[ia] + self.unit[ic]
        scores = self.unit @ (query / max(np.linalg.norm(query), 1e-300))
        return self._ranked(scores, [ia, ib, ic], topn)

    def evaluate_analogies(self, path: str | Path) -> dict:
        """Accuracy on a questions-words file (``: section`` headers, ``a b c d`` lines).

        Questions with a word outside the vocabulary are skipped (counted in ``skipped``);
        returns overall accuracy, per-section accuracy and counts.
        """
        sections: dict[str, list[int]] = {}
        current = "all"
        questions: list[tuple[str, int, int, int, int]] = []
        skipped = 0
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.startswith(":"):
                current = line[1:].strip()
                continue
            parts = line.lower().split()
            if len(parts) != 4:
                continue
            if any(p not in self.index for p in parts):
                skipped += 1
                continue
            questions.append((current, *(self.index[p] for p in parts)))
        for start in range(0, len(questions), 2048):
            chunk = questions[start : start + 2048]
            ia, ib, ic, id_ = (np.array([q[k] for q in chunk]) for k in range(1, 5))
            query = self.unit[ib] - self.unit[ia] + self.unit[ic]
            scores = query @ self.unit.T
            rows = np.arange(len(chunk))
            for excluded in (ia, ib, ic):
                scores[rows, excluded] = -np.inf
            correct = scores.argmax(1) == id_
            for (section, *_), ok in zip(chunk, correct, strict=True):
                sections.setdefault(section, [0, 0])
                sections[section][0] += int(ok)
                sections[section][1] += 1
        right = sum(v[0] for v in sections.values())
        total = sum(v[1] for v in sections.values())
        return {
            "accuracy": right / total if total else math.nan,
            "correct": right,
            "total": total,
            "skipped": skipped,
            "sections": {k: v[0] / v[1] for k, v in sections.items()},
        }

    def evaluate_similarity(self, path: str | Path) -> dict:
        """Spearman correlation of cosine similarity with human scores (``w1 w2 score`` lines,
        tab or space separated; ``#`` comments and non-numeric headers skipped)."""
        ours, human = [], []
        skipped = 0
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.lower().replace("\t", " ").split()
            if len(parts) < 3:
                continue
            try:
                score = float(parts[2])
            except ValueError:
                continue
            if parts[0] not in self.index or parts[1] not in self.index:
                skipped += 1
                continue
            ours.append(float(self.unit[self.index[parts[0]]] @ self.unit[self.index[parts[1]]]))
            human.append(score)
        rho = _spearman(ours, human) if len(ours) > 2 else math.nan
        return {"spearman": float(rho), "pairs": len(ours), "skipped": skipped}

    def save_word2vec(self, path: str | Path) -> Path:
        path = Path(path)
        with path.open("w", encoding="utf-8") as handle:
            handle.write(f"{len(self.words)} {self.vectors.shape[1]}\n")
            for word, vector in zip(self.words, self.vectors, strict=True):
                handle.write(word + " " + " ".join(f"{x:.6g}" for x in vector) + "\n")
        return path


def _average_ranks(values) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks (``scipy.stats.rankdata``'s default)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], values.size)
    ranks = np.empty(values.size)
    ranks[order] = ((starts + ends + 1) / 2)[np.cumsum(first) - 1]
    return ranks


def _spearman(a, b) -> float:
    """Spearman's rank correlation (Pearson's on average ranks), as ``scipy.stats.spearmanr``
    without its 0.5 s import (``tests/test_embeddings.py`` compares the two)."""
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denominator if denominator > 0 else math.nan


def embed_report(model: QWEM, analogies: str | Path | None, similarities: Iterable[str | Path] = ()) -> dict:
    """The ``report.json`` content of ``factorkit embed``."""
    report = {
        "vocabulary": len(model.words_),
        "tokens": model.statistics_.tokens_,  # in-vocabulary tokens, the ones windows are formed from
        "parameters": model.get_params(),
        "fit_seconds": model.fit_time_,
        "eigenvalues_positive": int((model.eigenvalues_ > 0).sum()),
        "solver": model.solver_,
        "eigen_residual": model.eigen_residual_,
    }
    if analogies is not None:
        report["analogies"] = model.vectors_.evaluate_analogies(analogies)
    for path in similarities:
        report[f"similarity:{Path(path).name}"] = model.vectors_.evaluate_similarity(path)
    return report
