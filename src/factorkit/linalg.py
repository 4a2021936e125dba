"""Top eigenpairs of large sparse symmetric matrices plus a constant (``S + c 1 1^T``).

:func:`top_eigenpairs` finds the ``d`` algebraically largest eigenpairs of ``M = S + c 1 1^T``
with ``S`` sparse and symmetric, never forming ``M`` (QWEM's target matrix, for instance, is
dense only through the constant). Three solvers:

``'dense'``
    ``numpy.linalg.eigh`` of the dense matrix: exact, for small matrices (``auto`` below 700 rows).
``'lanczos'``
    A thick-restart block Lanczos method with full reorthogonalization, written for this shape of
    problem on CPUs: blocks of ``block`` vectors go through ``S`` together (one sparse
    matrix-times-dense-block product instead of ``block`` sparse mat-vecs), the Krylov basis and
    the sparse matrix are stored in float32 (orthogonalization streams half the bytes) and the
    dense rank-one part ``c 1 1^T`` is applied in float64. At each restart the Rayleigh-Ritz
    step on the basis keeps the top ``d + oversample`` Ritz vectors and continues the Krylov
    recurrence from the last block (Stewart's Krylov-Schur restart, blocked), until every wanted
    pair has ``||M v - theta v|| <= tol |theta_1|``. A dominant negative eigenvalue, like the
    ``~ c V`` one of ``c 1 1^T`` with ``c < 0``, is first found by power iteration in float64 and
    deflated (``M - lambda u u^T``), which keeps float32 round-off relative to the wanted part of
    the spectrum. The result is then checked in float64 against ``M`` itself (a last
    Rayleigh-Ritz on the Ritz vectors, residuals recomputed); if the float32 iteration could not
    reach ``tol`` the solver falls back to ARPACK in float64 and says so in ``solver``.
``'arpack'``
    ``scipy.sparse.linalg.eigsh`` (implicitly restarted Lanczos, float64, one vector at a time).

On QWEM's 8k-word benchmark matrix (1.7M non-zeros, ``d = 100``) the block method takes about a
quarter of ARPACK's time for the same eigenvalues to ``1e-6`` relative (``benchmarks/README.md``).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from factorkit._threads import threads_for
from factorkit._validation import check_float, check_int

_BASIS_FACTOR = 3  # basis size at restart, in units of the kept Ritz vectors
SOLVERS = ("auto", "dense", "lanczos", "arpack")
DENSE_BELOW = 700  # benchmarks/bench_eigensolver_switch.py: dense eigh and Lanczos tie near 700 rows


class Eigenpairs(NamedTuple):
    """Result of :func:`top_eigenpairs`.

    ``values`` (descending, ``(d,)``), ``vectors`` (orthonormal columns, ``(n, d)``), ``residual``
    (``max_i ||M v_i - theta_i v_i|| / |theta_1|`` in float64), ``solver`` (the one that produced
    the result: ``'dense'``, ``'lanczos'``, ``'arpack'`` or ``'lanczos->arpack'`` after a fallback)
    and ``matvecs`` (matrix-vector products, counting each column of a block product).
    """

    values: np.ndarray
    vectors: np.ndarray
    residual: float
    solver: str
    matvecs: int


def _check_matrix(S) -> scipy.sparse.csr_matrix:
    if isinstance(S, np.ndarray):
        S = scipy.sparse.csr_matrix(S)
    if not scipy.sparse.issparse(S):
        raise TypeError(f"S must be a scipy sparse matrix or a numpy array, got {type(S).__name__}")
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"S must be square, got shape {S.shape}")
    if not np.issubdtype(S.dtype, np.floating) and not np.issubdtype(S.dtype, np.integer):
        raise TypeError(f"S must hold real numbers, got dtype {S.dtype}")
    S = scipy.sparse.csr_matrix(S, dtype=np.float64)
    if not np.isfinite(S.data).all():
        raise ValueError("S contains NaN or inf")
    asym = abs(S - S.T)
    scale = abs(S).max() if S.nnz else 0.0
    if asym.nnz and asym.max() > 1e-10 * max(scale, 1e-300):
        raise ValueError(f"S must be symmetric (max |S - S^T| = {asym.max():.3g})")
    return S


def top_eigenpairs(
    S,
    d: int,
    c: float = 0.0,
    *,
    solver: str = "auto",
    tol: float = 1e-6,
    block: int = 8,
    oversample: int | None = None,
    max_restarts: int = 100,
    seed: int = 0,
    check_input: bool = True,
) -> Eigenpairs:
    """The ``d`` algebraically largest eigenpairs of ``M = S + c 1 1^T``, descending.

    Parameters
    ----------
    S : scipy sparse matrix or ndarray, shape (n, n)
        Symmetric, finite.
    d : int
        Number of eigenpairs, ``1 <= d < n``.
    c : float
        The constant added to every entry.
    solver : {'auto', 'dense', 'lanczos', 'arpack'}
        ``'auto'``: dense below 700 rows (or when ``d`` is a large part of ``n``), else Lanczos.
    tol : float
        Stop when every wanted pair has ``||M v - theta v|| <= tol |theta_1|``.
    block : int
        Lanczos block size.
    oversample : int, optional
        Extra Ritz pairs kept at restarts; default ``max(10, d // 4)``.
    max_restarts : int
        Lanczos restarts before falling back to ARPACK.
    seed : int
        Start block (Lanczos, ARPACK).
    check_input : bool
        Check that ``S`` is finite and symmetric (skip only for a matrix built symmetric).

    Returns
    -------
    Eigenpairs
    """
    S = _check_matrix(S) if check_input else scipy.sparse.csr_matrix(S, dtype=np.float64)
    n = S.shape[0]
    d = check_int("d", d)
    if d >= n:
        raise ValueError(f"d must be smaller than the matrix size {n}, got {d}")
    c = check_float("c", c)
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    tol = check_float("tol", tol, positive=True)
    block = check_int("block", block)
    oversample = max(10, d // 4) if oversample is None else check_int("oversample", oversample, minimum=0)
    max_restarts = check_int("max_restarts", max_restarts, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    basis = _BASIS_FACTOR * (d + oversample) + block
    if solver == "auto":
        solver = "dense" if n < DENSE_BELOW or 2 * basis > n else "lanczos"
    if solver == "dense":
        return _dense(S, d, c)
    if solver == "arpack":
        return _arpack(S, d, c, tol, seed)
    if basis > n:
        raise ValueError(
            f"solver='lanczos' needs a basis of {basis} vectors, more than the matrix size {n}: "
            "use solver='dense' or a smaller oversample"
        )
    # a block step multiplies the sparse matrix into ``block`` vectors and orthogonalizes them
    # against the basis: threads by that size (factorkit._threads)
    with threads_for(2 * S.nnz * block + 4 * n * basis * block):
        result = _block_lanczos(S, d, c, tol, block, oversample, max_restarts, seed)
    if result.residual <= tol:
        return result
    fallback = _arpack(S, d, c, tol, seed)
    return fallback._replace(solver="lanczos->arpack", matvecs=fallback.matvecs + result.matvecs)


def _dense(S, d, c) -> Eigenpairs:
    M = S.toarray() + c
    values, vectors = np.linalg.eigh(M)
    values, vectors = values[::-1][:d].copy(), vectors[:, ::-1][:, :d].copy()
    residual = np.linalg.norm(M @ vectors - vectors * values, axis=0).max() / max(abs(values[0]), 1e-300)
    return Eigenpairs(values, vectors, float(residual), "dense", 0)


class _Operator:
    """``x -> S x + c 1 (1^T x) - lam u (u^T x)``; the dense rank-one terms in float64."""

    def __init__(self, S: scipy.sparse.csr_matrix, c: float):
        n = S.shape[0]
        small = n < 2**31 and S.nnz < 2**31
        index = torch.int32 if small else torch.int64
        parts = (
            torch.from_numpy(S.indptr).to(index),
            torch.from_numpy(S.indices).to(index),
        )
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            self.S64 = torch.sparse_csr_tensor(*parts, torch.from_numpy(S.data), size=S.shape)
            self.S32 = torch.sparse_csr_tensor(*parts, torch.from_numpy(S.data).float(), size=S.shape)
        self.c = c
        self.deflated: tuple[float, torch.Tensor] | None = None
        self.matvecs = 0

    def _low_rank(self, X64: torch.Tensor, deflate: bool) -> torch.Tensor | None:
        out = None
        if self.c != 0.0:
            out = (self.c * X64.sum(0, keepdim=True)).expand(X64.shape[0], -1)
        if deflate and self.deflated is not None:
            lam, u = self.deflated
            term = (-lam) * torch.outer(u, u @ X64)
            out = term if out is None else out + term
        return out

    def __call__(self, X: torch.Tensor, deflate: bool = True) -> torch.Tensor:
        self.matvecs += X.shape[1]
        X = X.contiguous()
        if X.dtype == torch.float32:
            Y = self.S32 @ X
            low = self._low_rank(X.double(), deflate)
            if low is not None:
                Y += low.float()
            return Y
        Y = self.S64 @ X
        low = self._low_rank(X, deflate)
        return Y if low is None else Y + low

    def deflate_dominant_negative(self, generator: torch.Generator, iterations: int = 100) -> None:
        """Power iteration in float64; deflate the dominant eigenpair if negative and converged."""
        x = torch.randn(self.S64.shape[0], 1, generator=generator, dtype=torch.float64)
        x /= torch.linalg.norm(x)
        for _ in range(iterations):
            y = self(x, deflate=False)
            lam = float(x[:, 0] @ y[:, 0])
            residual = float(torch.linalg.norm(y - lam * x))
            if residual <= 1e-12 * abs(lam):
                if lam < 0:
                    self.deflated = (lam, x[:, 0].clone())
                return
            norm = torch.linalg.norm(y)
            if norm == 0:
                return
            x = y / norm


def _block_lanczos(S, d, c, tol, block, oversample, max_restarts, seed) -> Eigenpairs:
    n = S.shape[0]
    generator = torch.Generator().manual_seed(seed)
    A = _Operator(S, c)
    A.deflate_dominant_negative(generator)
    keep = d + oversample
    size = _BASIS_FACTOR * keep
    Qt = torch.empty(size + block, n)  # basis vectors as rows (float32)
    # T = Q^T A Q, assembled from the orthogonalization coefficients (float64)
    T = torch.zeros(size + block, size + block, dtype=torch.float64)
    new = torch.linalg.qr(torch.randn(n, block, generator=generator, dtype=torch.float64))[0].float()
    m = 0
    best, stalled = math.inf, 0
    for _restart in range(max_restarts + 1):
        start = m
        while m < size:
            Y = A(new)
            Qt[m : m + block] = new.T
            m += block
            new, coefficients, R = _orthogonalize(Y, Qt, start, m, block, generator)
            T[:m, m - block : m] = coefficients
            T[m - block : m, :m] = coefficients.T
        theta, Z = torch.linalg.eigh((T[:m, :m] + T[:m, :m].T) / 2)
        theta, Z = theta.flip(0)[:keep], Z.flip(1)[:, :keep]
        # Lanczos residuals: A Q z - theta Q z = (next block) R (z's last-block rows)
        residual = torch.linalg.norm(R @ Z[m - block : m, :d], dim=0)
        worst = float(residual.max()) / max(abs(float(theta[0])), 1e-300)
        Ut = Z.float().T @ Qt[:m]
        # a margin for the float32 rounding of the Ritz vectors, which the float64 check sees
        if worst <= tol / 2:
            break
        # float32 round-off floor: stop when a restart no longer halves the worst residual
        stalled = stalled + 1 if worst > 0.5 * best else 0
        best = min(best, worst)
        if stalled >= 3:
            break
        Qt[:keep] = Ut
        T.zero_()
        T[:keep, :keep] = torch.diag(theta)
        m = keep
    return _refine(A, Ut[:d].T.double(), A.matvecs)


def _orthogonalize(Y, Qt, start, m, block, generator):
    """Next orthonormal block from ``Y = A q``, its coefficients ``Q^T Y`` and ``R`` (``W = new R``).

    Against the last two blocks first, then the whole basis: the local step removes the large
    Lanczos coefficients, so one classical Gram-Schmidt pass over the basis keeps it orthogonal to
    working precision; a second pass runs when a column still loses more than half its norm.
    Columns that vanish (an invariant subspace was found) are replaced by random directions.
    """
    lo = max(start, m - 2 * block)
    local = Qt[lo:m]
    local_coefficients = local @ Y
    W = Y - local.T @ local_coefficients
    Q = Qt[:m]
    before = torch.linalg.norm(W, dim=0)
    coefficients = Q @ W
    W = W - Q.T @ coefficients
    after = torch.linalg.norm(W, dim=0)
    if bool((after < 0.5 * before).any()):
        again = Q @ W
        W = W - Q.T @ again
        coefficients += again
        after = torch.linalg.norm(W, dim=0)
    coefficients[lo:m] += local_coefficients
    lost = after <= 1e-4 * torch.clamp(torch.linalg.norm(Y, dim=0), min=1e-30)
    residual = W
    if bool(lost.any()):
        fresh = torch.randn(W.shape[0], int(lost.sum()), generator=generator)
        for _ in range(2):
            fresh = fresh - Q.T @ (Q @ fresh)
        W = W.clone()
        W[:, lost] = fresh
    new = torch.linalg.qr(W)[0]
    return new, coefficients.double(), (new.T @ residual).double()


def _refine(A: _Operator, X: torch.Tensor, matvecs: int) -> Eigenpairs:
    """Float64 Rayleigh-Ritz of the undeflated matrix on ``span(X)`` and its residuals.

    Wanted eigenvectors are orthogonal to a deflated one, so ``X`` is first projected off it in
    float64: float32 round-off along that direction would otherwise be amplified by its large
    eigenvalue.
    """
    if A.deflated is not None:
        u = A.deflated[1]
        X = X - torch.outer(u, u @ X)
    X = torch.linalg.qr(X)[0]
    AX = A(X, deflate=False)
    T = X.T @ AX
    theta, Z = torch.linalg.eigh((T + T.T) / 2)
    theta, Z = theta.flip(0), Z.flip(1)
    X, AX = X @ Z, AX @ Z
    residual = torch.linalg.norm(AX - X * theta, dim=0).max() / max(abs(float(theta[0])), 1e-300)
    return Eigenpairs(theta.numpy(), X.numpy(), float(residual), "lanczos", A.matvecs)


def _arpack(S, d, c, tol, seed) -> Eigenpairs:
    n = S.shape[0]
    count = [0]

    def matvec(x):
        x = np.asarray(x).reshape(n, -1)
        count[0] += x.shape[1]
        return S @ x + c * x.sum(0, keepdims=True)

    operator = scipy.sparse.linalg.LinearOperator((n, n), matvec=matvec, matmat=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(n)
    # a wider Krylov basis than ARPACK's default 2d + 1 means fewer implicit restarts (4x faster
    # on the 8k-word QWEM benchmark at d = 100)
    ncv = min(n, max(2 * d + 1, 3 * d))
    values, vectors = scipy.sparse.linalg.eigsh(operator, k=d, which="LA", v0=v0, tol=tol, ncv=ncv)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    residual = np.linalg.norm(matvec(vectors) - vectors * values, axis=0).max() / max(abs(values[0]), 1e-300)
    return Eigenpairs(values, vectors, float(residual), "arpack", count[0])
