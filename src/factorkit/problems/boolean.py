"""Synthetic Boolean data with planted tiles, and matching found factors to planted ones.

The usual benchmark of Boolean matrix factorization (e.g. Miettinen et al., "The discrete basis
problem", IEEE TKDE 2008; Dalleiger & Vreeken, NeurIPS 2022): ``X = U o V`` for random binary
``U`` (n x k) and ``V`` (k x m), ``(U o V)_ij = OR_l U_il AND V_lj``, then noise: *additive*
flips a fraction of the zeros to one, *destructive* a fraction of the ones to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from factorkit._validation import check_float, check_int


def boolean_product(U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``U o V``: the Boolean matrix product of binary ``U`` (n x k) and ``V`` (k x m)."""
    return (U.astype(np.float32) @ V.astype(np.float32)) > 0


@dataclass
class PlantedBoolean:
    X: np.ndarray
    clean: np.ndarray
    U: np.ndarray
    V: np.ndarray

    @property
    def noise_rate(self) -> float:
        """Fraction of entries flipped by the noise."""
        return float((self.X != self.clean).mean())


def planted_tiles(
    n: int,
    m: int,
    k: int,
    density: float = 0.1,
    additive: float = 0.0,
    destructive: float = 0.0,
    seed: int = 0,
) -> PlantedBoolean:
    """Boolean data with ``k`` planted tiles at overall density about ``density``.

    Each factor picks rows and columns independently with probability
    ``p = sqrt(1 - (1 - density)^(1/k))``, so that ``P(X_ij = 1) = density`` before noise.
    """
    n, m, k = check_int("n", n), check_int("m", m), check_int("k", k)
    density = check_float("density", density, positive=True, upper=1.0)
    additive = check_float("additive", additive, nonnegative=True, upper=1.0)
    destructive = check_float("destructive", destructive, nonnegative=True, upper=1.0)
    rng = np.random.default_rng(seed)
    p = np.sqrt(1 - (1 - density) ** (1 / k))
    U = rng.random((n, k)) < p
    V = rng.random((k, m)) < p
    # every planted factor non-empty, so all k can be recovered
    for factor in range(k):
        if not U[:, factor].any():
            U[rng.integers(n), factor] = True
        if not V[factor].any():
            V[factor, rng.integers(m)] = True
    clean = boolean_product(U, V)
    noise = rng.random(clean.shape)
    X = np.where(clean, noise >= destructive, noise < additive)
    return PlantedBoolean(X=X, clean=clean, U=U, V=V)


def match_factors(
    U_true: np.ndarray, V_true: np.ndarray, U: np.ndarray, V: np.ndarray, threshold: float = 0.9
) -> tuple[int, np.ndarray]:
    """Match found tiles to planted ones (Hungarian on the Jaccard similarity of tiles).

    A tile is the set of cells ``rows(U_l) x cols(V_l)``. Returns the number of planted tiles
    matched with Jaccard similarity >= ``threshold`` and the similarity matrix.
    """
    rows_t, cols_t = U_true.astype(float), V_true.astype(float)
    rows, cols = U.astype(float), V.astype(float)
    # |A_i cap B_j| = |rows_i cap rows_j| * |cols_i cap cols_j| for rectangle tiles
    intersection = (rows_t.T @ rows) * (cols_t @ cols.T)
    size_t = rows_t.sum(0)[:, None] * cols_t.sum(1)[:, None]
    size = (rows.sum(0) * cols.sum(1))[None, :]
    union = size_t + size - intersection
    jaccard = np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)
    row, col = linear_sum_assignment(-jaccard)
    return int((jaccard[row, col] >= threshold).sum()), jaccard
