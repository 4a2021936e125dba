"""The generative model of Li, Liang & Risteski (NeurIPS 2016, arXiv:1611.03819) and a recovery metric.

Each sample is ``y = A* x + zeta + xi``: non-negative features ``A*`` (``D x k``, full column
rank, columns of unit l2 norm), non-negative weights ``x`` with independent coordinates (each
non-zero with probability ``density``, then uniform on ``[low, 1]``), *adversarial* noise
``zeta`` (here a fixed linear map of the weights, ``zeta = level * B x`` with a non-negative
``B`` of unit columns: noise correlated with the signal, the kind no averaging removes) and
*unbiased* noise ``xi`` (i.i.d. ``N(0, std^2)``, mean zero given ``x``).

Rows of ``Y`` are samples, as in scikit-learn: ``Y ~ X A*^T``, so an NMF ``Y ~ W H`` recovers
``A*`` as ``H^T`` (``components_.T``) up to column permutation and scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from factorkit._validation import check_float, check_int


@dataclass
class NMFData:
    """Samples ``Y`` (``N x D``), features ``A`` (``D x k``), weights ``X`` (``N x k``), clean ``A X^T``."""

    Y: np.ndarray
    A: np.ndarray
    X: np.ndarray
    Y_clean: np.ndarray
    weight_variance: float


def make_nmf_data(
    n_samples: int,
    n_features: int,
    n_components: int,
    *,
    density: float = 0.3,
    low: float = 0.5,
    support: float = 0.4,
    adversarial: float = 0.0,
    unbiased: float = 0.0,
    seed: int = 0,
) -> NMFData:
    """Draw ``N`` samples of the paper's model (see the module docstring).

    Parameters
    ----------
    n_samples, n_features, n_components : int
        ``N``, ``D`` and ``k <= D``.
    density : float
        Probability that a weight is non-zero, in ``(0, 1]``.
    low : float
        Non-zero weights are uniform on ``[low, 1]``, ``0 <= low < 1``.
    support : float
        Fraction of the ``D`` coordinates on which each feature column is non-zero (uniform
        entries there); sparse supports keep ``A*`` well conditioned.
    adversarial : float
        ``level`` of the adversarial noise ``level * B x`` (``||B e_i|| = 1``, so at level 1 the
        noise is as large as the signal).
    unbiased : float
        Standard deviation of the i.i.d. Gaussian noise.
    seed : int
    """
    n_samples = check_int("n_samples", n_samples)
    n_features = check_int("n_features", n_features)
    k = check_int("n_components", n_components)
    if k > n_features:
        raise ValueError(f"n_components must be <= n_features = {n_features}, got {k}")
    density = check_float("density", density, positive=True, upper=1.0)
    low = check_float("low", low, nonnegative=True)
    if low >= 1:
        raise ValueError(f"low must be in [0, 1), got {low}")
    support = check_float("support", support, positive=True, upper=1.0)
    adversarial = check_float("adversarial", adversarial, nonnegative=True)
    unbiased = check_float("unbiased", unbiased, nonnegative=True)
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))

    def unit_columns() -> np.ndarray:
        size = max(1, round(support * n_features))
        M = np.zeros((n_features, k))
        for j in range(k):
            rows = rng.choice(n_features, size=size, replace=False)
            M[rows, j] = rng.uniform(0.0, 1.0, size)
        return M / np.linalg.norm(M, axis=0)

    A = unit_columns()
    if np.linalg.matrix_rank(A) < k:
        raise ValueError("the drawn features are not linearly independent; raise support or change seed")
    B = unit_columns()
    active = rng.random((n_samples, k)) < density
    X = np.where(active, rng.uniform(low, 1.0, (n_samples, k)), 0.0)
    Y_clean = X @ A.T
    Y = Y_clean + adversarial * X @ B.T + unbiased * rng.standard_normal((n_samples, n_features))
    mean_square = (1 + low + low**2) / 3
    variance = density * mean_square - (density * (1 + low) / 2) ** 2
    return NMFData(Y=Y, A=A, X=X, Y_clean=Y_clean, weight_variance=variance)


def paper_initialization(
    A: np.ndarray, *, diagonal: tuple[float, float] = (0.8, 1.2), off_diagonal: float = 0.1, seed: int = 0
) -> np.ndarray:
    """``A_0 = A* (Sigma_0 + E_0)``: the initialisation the paper's theorem starts from.

    ``Sigma_0`` is diagonal with entries uniform on ``diagonal``; ``E_0`` is non-negative,
    zero on the diagonal, with spectral norm ``off_diagonal`` (so ``A_0`` stays non-negative).
    """
    lo, hi = (check_float("diagonal[i]", v, positive=True) for v in diagonal)
    off_diagonal = check_float("off_diagonal", off_diagonal, nonnegative=True)
    k = A.shape[1]
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    E = rng.uniform(0.0, 1.0, (k, k))
    np.fill_diagonal(E, 0.0)
    norm = np.linalg.norm(E, 2)
    E = E * (off_diagonal / norm) if norm > 0 else E
    return A @ (np.diag(rng.uniform(lo, hi, k)) + E)


def feature_recovery_error(A_true: np.ndarray, A: np.ndarray) -> tuple[float, np.ndarray]:
    """Max over columns of ``|| a_i / ||a_i|| - a*_pi(i) / ||a*_pi(i)|| ||``, best permutation ``pi``.

    Columns are matched by the Hungarian method on cosine similarity. Returns the error and the
    permutation (``A[:, perm[j]]`` matches ``A_true[:, j]``).
    """
    A_true = np.asarray(A_true, dtype=float)
    A = np.asarray(A, dtype=float)
    if A.shape != A_true.shape:
        raise ValueError(f"A must have the shape of A_true {A_true.shape}, got {A.shape}")
    T = A_true / np.linalg.norm(A_true, axis=0)
    norms = np.linalg.norm(A, axis=0)
    F = A / np.where(norms > 0, norms, 1.0)
    rows, cols = linear_sum_assignment(-(T.T @ F))
    perm = cols[np.argsort(rows)]
    return float(np.linalg.norm(T - F[:, perm], axis=0).max()), perm
