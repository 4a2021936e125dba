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
from typing import NamedTuple

import numpy as np
import scipy.sparse

from factorkit._sparse_operator import Operator, Pool
from factorkit._threads import blas_threads, cpu_threads
from factorkit._validation import check_float, check_int

_BASIS_FACTOR = 3  # basis size at restart, in units of the kept Ritz vectors
SOLVERS = ("auto", "dense", "lanczos", "arpack")
# Above this nnz * (d + oversample), torch's sparse kernel saves more than its import costs
# (about 0.9 s): with SciPy's kernel about 0.17 us slower per non-zero and vector on 2 cores
# and some 10 (d + oversample) products per solve, the break-even is near 1e9 (QWEM's 8k-word
# problem is 2e8: SciPy, no torch import, the cold start a user waits for).
TORCH_FROM_WORK = 1e9
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
    result = _block_lanczos(S, d, c, tol, block, oversample, max_restarts, seed, cpu_threads())
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


def _block_lanczos(S, d, c, tol, block, oversample, max_restarts, seed, threads) -> Eigenpairs:
    n = S.shape[0]
    rng = np.random.default_rng(seed)
    engine = "torch" if S.nnz * (d + oversample) >= TORCH_FROM_WORK else "scipy"
    with Pool(threads, n) as pool, blas_threads(1 if threads > 1 else None):
        A = Operator(S, c, pool, engine)
        return _lanczos_iterations(A, n, d, tol, block, oversample, max_restarts, rng)


def _lanczos_iterations(A, n, d, tol, block, oversample, max_restarts, rng) -> Eigenpairs:
    A.deflate_dominant_negative(rng)
    keep = d + oversample
    size = _BASIS_FACTOR * keep
    Qt = np.empty((size + block, n), dtype=np.float32)  # basis vectors as rows (float32)
    # T = Q^T A Q, assembled from the orthogonalization coefficients (float64)
    T = np.zeros((size + block, size + block))
    new = _orthonormal(rng.standard_normal((n, block))).astype(np.float32)
    m = 0
    best, stalled = math.inf, 0
    for _restart in range(max_restarts + 1):
        start = m
        while m < size:
            Y = A(new)
            Qt[m : m + block] = new.T
            m += block
            new, coefficients, R = _orthogonalize(Y, Qt, start, m, block, rng, A.pool)
            T[:m, m - block : m] = coefficients
            T[m - block : m, :m] = coefficients.T
        theta, Z = np.linalg.eigh((T[:m, :m] + T[:m, :m].T) / 2)
        theta, Z = theta[::-1][:keep], Z[:, ::-1][:, :keep]
        # Lanczos residuals: A Q z - theta Q z = (next block) R (z's last-block rows)
        residual = np.linalg.norm(R @ Z[m - block : m, :d], axis=0)
        worst = float(residual.max()) / max(abs(float(theta[0])), 1e-300)
        Ut = Z.T.astype(np.float32) @ Qt[:m]
        # a margin for the float32 rounding of the Ritz vectors, which the float64 check sees
        if worst <= tol / 2:
            break
        # float32 round-off floor: stop when a restart no longer halves the worst residual
        stalled = stalled + 1 if worst > 0.5 * best else 0
        best = min(best, worst)
        if stalled >= 3:
            break
        Qt[:keep] = Ut
        T[:] = 0.0
        T[:keep, :keep] = np.diag(theta)
        m = keep
    return _refine(A, Ut[:d].T.astype(np.float64), A.matvecs)


def _orthogonalize(Y, Qt, start, m, block, rng, pool: Pool):
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
    before = np.linalg.norm(W, axis=0)
    coefficients = pool.coefficients(Q, W)
    W = pool.subtract(W, Q, coefficients)
    after = np.linalg.norm(W, axis=0)
    if bool((after < 0.5 * before).any()):
        again = pool.coefficients(Q, W)
        W = pool.subtract(W, Q, again)
        coefficients += again
        after = np.linalg.norm(W, axis=0)
    coefficients[lo:m] += local_coefficients
    lost = after <= 1e-4 * np.maximum(np.linalg.norm(Y, axis=0), 1e-30)
    residual = W
    if bool(lost.any()):
        fresh = rng.standard_normal((W.shape[0], int(lost.sum()))).astype(np.float32)
        for _ in range(2):
            fresh = fresh - Q.T @ (Q @ fresh)
        W = W.copy()
        W[:, lost] = fresh
    new = _orthonormal(W)
    return new, coefficients.astype(np.float64), (new.T @ residual).astype(np.float64)


def _orthonormal(W: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns of the tall matrix ``W``, in its dtype.

    Cholesky QR with the Gram matrix in float64 (a small product and a k x k factorization, several
    times faster than Householder QR on a tall block); its loss of orthogonality grows as
    ``cond(W)^2`` times float64's epsilon, so where the result is not orthonormal to the dtype's
    precision (or the Gram matrix is not positive definite) Householder QR is used instead.
    """
    W64 = W.astype(np.float64, copy=False)
    try:
        R = np.linalg.cholesky(W64.T @ W64).T
        Q = W64 @ np.linalg.inv(R)
    except np.linalg.LinAlgError:
        Q = None
    if Q is not None:
        Q = Q.astype(W.dtype, copy=False)
        drift = np.abs(Q.T.astype(np.float64) @ Q - np.eye(Q.shape[1])).max()
        if drift <= 10 * np.finfo(W.dtype).eps * Q.shape[1]:
            return Q
    return np.linalg.qr(W)[0]


def _refine(A: Operator, X: np.ndarray, matvecs: int) -> Eigenpairs:
    """Float64 Rayleigh-Ritz of the undeflated matrix on ``span(X)`` and its residuals.

    Wanted eigenvectors are orthogonal to a deflated one, so ``X`` is first projected off it in
    float64: float32 round-off along that direction would otherwise be amplified by its large
    eigenvalue.
    """
    if A.deflated is not None:
        u = A.deflated[1]
        X = X - np.outer(u, u @ X)
    X = _orthonormal(X)
    AX = A(X, deflate=False)
    T = X.T @ AX
    theta, Z = np.linalg.eigh((T + T.T) / 2)
    theta, Z = theta[::-1], Z[:, ::-1]
    X, AX = X @ Z, AX @ Z
    residual = np.linalg.norm(AX - X * theta, axis=0).max() / max(abs(float(theta[0])), 1e-300)
    return Eigenpairs(theta.copy(), X, float(residual), "lanczos", A.matvecs)


def _arpack(S, d, c, tol, seed) -> Eigenpairs:
    import scipy.sparse.linalg  # only here: the cold path of the other solvers does not pay for it

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
