"""The bars problem (Földiák 1990), the classic test of binary sparse coding."""

from __future__ import annotations

import numpy as np

from factorkit._validation import check_float, check_int


def bars(
    size: int = 5, n_samples: int = 1000, *, prior: float | None = None, amplitude: float = 10.0,
    noise: float = 2.0, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The bars benchmark (Földiák 1990; as in Henniges et al. 2010): ``size x size`` images
    drawn from the BSC model with ``H = 2 size`` causes, the horizontal and vertical bars of
    ``amplitude``, each present with probability ``prior`` (default ``2 / H``), plus Gaussian
    noise. Returns ``X`` (n_samples x size^2), the bars ``W`` (H x size^2) and the latents ``S``."""
    size = check_int("size", size, minimum=2)
    n_samples = check_int("n_samples", n_samples)
    H = 2 * size
    prior = 2.0 / H if prior is None else check_float("prior", prior, positive=True, upper=1.0)
    W = np.zeros((H, size, size))
    for k in range(size):
        W[k, k, :] = amplitude  # horizontal
        W[size + k, :, k] = amplitude  # vertical
    W = W.reshape(H, -1)
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    S = (rng.random((n_samples, H)) < prior).astype(np.float64)
    X = S @ W + check_float("noise", noise, nonnegative=True) * rng.normal(size=(n_samples, size * size))
    return X, W, S
