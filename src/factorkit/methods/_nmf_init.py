"""NMF's starting factors: NNDSVD(a) (Boutsidis & Gallopoulos 2008), random, or given."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from factorkit.methods._common import seed_of
from factorkit.methods._nmf_data import EPS, NMFData, check_values

INITS = ("random", "nndsvd", "nndsvda", "custom")

GRAM_SVD_BELOW = 2000  # sparse X with a side this short: top singular triplets from its Gram matrix


def _svd_by_gram(X, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` singular triplets of a sparse ``X`` with a short side, from the dense Gram matrix of
    that side (``eigh`` of at most 2000 x 2000; ARPACK on the 300 x 3610 lee TF-IDF took 4x as
    long). The Gram squares the condition number, which costs accuracy only in the small singular
    values; NNDSVD uses the top ``k``, each accurate to about ``eps sigma_1^2 / sigma_k``."""
    transpose = X.shape[0] > X.shape[1]
    A = X.T.tocsr() if transpose else X  # the short side first
    gram = (A @ A.T).toarray()
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1][:k]
    S = np.sqrt(np.clip(values[order], 0.0, None))
    U = vectors[:, order]
    V = np.asarray(A.T @ U) / np.where(S > 0, S, 1.0)
    if transpose:
        U, V = V, U
    return np.ascontiguousarray(U), S, np.ascontiguousarray(V.T)


def nndsvd(
    X: torch.Tensor, k: int, variant: str = "nndsvd", seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative double SVD initialisation (Boutsidis & Gallopoulos, Pattern Recognition 2008).

    ``variant='nndsvda'`` replaces the zeros by the mean of ``X`` (better for dense data). ``X`` may
    be a ``scipy.sparse`` matrix: its top ``k`` singular triplets come from ARPACK (``svds``, fixed
    start vector) without densifying it.
    """
    if scipy.sparse.issparse(X):
        dtype, device = torch.float64 if X.dtype == np.float64 else torch.float32, torch.device("cpu")
        if min(X.shape) <= GRAM_SVD_BELOW:
            U, S, Vh = (torch.from_numpy(a) for a in _svd_by_gram(X.astype(np.float64), k))
        elif k < min(X.shape) - 1:
            start = np.ones(min(X.shape)) / math.sqrt(min(X.shape))
            u, s, vh = scipy.sparse.linalg.svds(X.astype(np.float64), k=k, v0=start)
            order = np.argsort(-s)
            U, S, Vh = (torch.from_numpy(np.ascontiguousarray(a)) for a in (u[:, order], s[order], vh[order]))
        else:  # svds needs k < min(shape) - 1; such a matrix is small enough to densify
            U, S, Vh = torch.linalg.svd(torch.from_numpy(X.toarray().astype(np.float64)), full_matrices=False)
        X_mean = float(X.sum()) / (X.shape[0] * X.shape[1])
    else:
        dtype, device = X.dtype, X.device
        U, S, Vh = torch.linalg.svd(X.to(torch.float64).cpu(), full_matrices=False)
        X_mean = float(X.mean())
    U, S, Vh = U[:, :k], S[:k], Vh[:k]
    # fix the signs deterministically (largest entry of each left vector positive)
    signs = torch.sign(U[U.abs().argmax(0), torch.arange(k)])
    signs[signs == 0] = 1
    U, Vh = U * signs, Vh * signs[:, None]
    W = torch.zeros(X.shape[0], k, dtype=torch.float64)
    H = torch.zeros(k, X.shape[1], dtype=torch.float64)
    W[:, 0] = S[0].sqrt() * U[:, 0].abs()
    H[0] = S[0].sqrt() * Vh[0].abs()
    for j in range(1, k):
        x, y = U[:, j], Vh[j]
        xp, yp, xn, yn = x.clamp(min=0), y.clamp(min=0), (-x).clamp(min=0), (-y).clamp(min=0)
        xp_n, yp_n, xn_n, yn_n = xp.norm(), yp.norm(), xn.norm(), yn.norm()
        if xp_n * yp_n >= xn_n * yn_n:
            u, v, sigma = xp / max(xp_n, EPS), yp / max(yp_n, EPS), xp_n * yp_n
        else:
            u, v, sigma = xn / max(xn_n, EPS), yn / max(yn_n, EPS), xn_n * yn_n
        scale = (S[j] * sigma).sqrt()
        W[:, j] = scale * u
        H[j] = scale * v
    W[W < 1e-6] = 0.0
    H[H < 1e-6] = 0.0
    if variant == "nndsvda":
        W[W == 0] = X_mean
        H[H == 0] = X_mean
    return W.to(device, dtype), H.to(device, dtype)


def initial_factors(
    data: NMFData, k: int, init, random_state, device, W0=None, H0=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The start ``(W, H)``: ``init`` a name (``None``: ``'nndsvda'``), ``(W, H)``, or ``H`` alone
    (``W`` then the constant ``sqrt(mean(X) / k)``, as scikit-learn's ``transform``); ``W0``/``H0``
    the arrays passed to ``fit`` with ``init='custom'``."""
    n, m = data.shape
    dtype = data.dtype
    init = init if init is not None else "nndsvda"
    if isinstance(init, str) and init == "custom":
        if W0 is None or H0 is None:
            raise ValueError("init='custom' needs W and H passed to fit: fit(X, W=W0, H=H0)")
        init = (W0, H0)
    elif W0 is not None or H0 is not None:
        raise ValueError("W and H are used with init='custom' only; set init='custom' to pass them")
    avg = math.sqrt(max(data.mean, 0.0) / k)

    def given(name, value, shape):
        array = np.asarray(value)
        if array.shape != shape:
            raise ValueError(f"init {name} must have shape {shape}, got {array.shape}")
        check_values(f"init {name}", array.astype(float), None)
        return torch.from_numpy(array.astype(np.float64)).to(device, dtype)

    if isinstance(init, tuple):
        if len(init) != 2:
            raise ValueError("init must be a name, a (W, H) tuple or an H array")
        return given("W", init[0], (n, k)), given("H", init[1], (k, m))
    if not isinstance(init, str):
        return torch.full((n, k), avg, dtype=dtype, device=device), given("H", init, (k, m))
    if init == "random":
        generator = torch.Generator().manual_seed(seed_of(random_state))
        W = avg * torch.randn(n, k, generator=generator, dtype=torch.float64).abs()
        H = avg * torch.randn(k, m, generator=generator, dtype=torch.float64).abs()
        return W.to(device, dtype), H.to(device, dtype)
    if data.sparse:
        W, H = nndsvd(data.csr, k, init)
        return W.to(device, dtype), H.to(device, dtype)
    return nndsvd(data.filled(), k, init)
