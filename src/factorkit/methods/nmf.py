"""Non-negative matrix factorization ``X ~ W H`` (scikit-learn API): three solvers.

``solver='hals'``
    Hierarchical alternating least squares (Cichocki & Phan 2009; the algorithm of
    scikit-learn's ``'cd'`` solver), accelerated as in Gillis & Glineur (Neural Computation
    2012): the products ``X H^T`` and ``H H^T`` are reused for up to ``1 + rho / 2`` sweeps over
    the columns of ``W`` (``rho``: the cost of the products in sweeps, see ``_inner_sweeps``),
    stopping the inner loop once a sweep moves ``W`` by less than 10% of the first one.
    ``inner_sweeps=1`` is plain HALS, update for update scikit-learn's ``'cd'``. Each
    coordinate step is exact: with ``a = (H H^T)_jj`` and ``b`` the partial residual correlation,
    ``w_j = max(0, (b - l1) / (a + l2))`` is the prox of ``l1 |w| + l2 w^2 / 2 + indicator(w >= 0)``
    at ``b / a`` with step ``1 / a`` (:func:`factorkit.prox.prox_elastic_net` followed by
    :func:`factorkit.prox.prox_nonnegative`; ``tests/test_nmf.py`` checks the identity).
``solver='mu'``
    Multiplicative updates (Lee & Seung 2001) for the Frobenius norm or the (generalized)
    Kullback-Leibler divergence, with the same l1/l2 terms in the denominators as scikit-learn.
``solver='alternating'``
    The provable algorithm of Li, Liang & Risteski ("Recovery Guarantee of Non-negative Matrix
    Factorization via Alternating Updates", NeurIPS 2016, arXiv:1611.03819, Algorithm 1,
    "Purification"), on the samples ``y`` (rows of ``X``) with features ``A = H^T``:

        decode   x = phi_alpha(A_t^+ y)                  (pseudo-inverse, ReLU with threshold)
        update   A_{t+1} = (1 - eta) A_t + r eta E[(y - y')(x - x')^T]

    over independent pairs ``(y, y')`` of samples. Over all ordered pairs of the data set the
    expectation is exactly ``2 (E[y x^T] - E[y] E[x]^T)``, computed in ``O(N D k)``. ``phi_alpha``
    is the ReLU with bias, ``max(z - alpha, 0)`` (``decode='soft'``); ``decode='hard'`` keeps
    ``z 1[z >= alpha]``. Only Algorithm 1's box was readable here, not the paper's definition of
    ``phi_alpha`` (its eq. 2) nor its constants: both forms are offered, and the scalar ``r``
    defaults to ``1 / (2 mean_i Var(x_i))`` over the *first* decodings, then stays fixed: the
    value that makes ``A*`` the fixed point when the decoded weights are exact
    (``E[(y-y')(x-x')^T] = 2 A* Cov(x)``). (Re-estimating ``r`` every iteration lets the column
    scale drift: the soft threshold shrinks the variance of the decodings faster than their
    covariance with ``y``.) ``project``
    clips ``A`` at zero after each update: the projection onto the non-negative orthant is
    non-expansive and ``A*`` lies in it, so it never moves ``A`` away from ``A*``. The fixed point
    is ``A*`` up to column scale; ``transform`` is the decoder.

Regularization follows scikit-learn (>= 1.2): ``alpha_W``, ``alpha_H`` (``'same'``) and
``l1_ratio``, scaled by ``n_features`` for ``W`` and ``n_samples`` for ``H``, so a model here
and ``sklearn.decomposition.NMF`` with the same settings minimize the same objective.
A ``mask`` (``True`` = observed) makes every solver but ``'alternating'`` fit the observed
entries only; masked entries of ``X`` are never read (they may be NaN). ``X`` must be
non-negative, except for ``'alternating'``, whose model ``y = A* x + noise`` has unbiased noise
that can make entries negative (the features and weights stay non-negative).
"""

from __future__ import annotations

import functools
import math
import time
import warnings

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted, validate_data

from factorkit._threads import threads_for
from factorkit._validation import check_choice, check_float, check_int, resolve_device
from factorkit.methods._common import seed_of

SOLVERS = ("hals", "mu", "alternating")
BETA_LOSSES = ("frobenius", "kullback-leibler", "itakura-saito")
BETA_OF = {"frobenius": 2.0, "kullback-leibler": 1.0, "itakura-saito": 0.0}


def _beta(beta_loss) -> float:
    """The beta of a beta-divergence name or number (scikit-learn's convention)."""
    if isinstance(beta_loss, str):
        return BETA_OF[check_choice("beta_loss", beta_loss, BETA_LOSSES)]
    return check_float("beta_loss", beta_loss)


def _beta_divergence(X: torch.Tensor, WH: torch.Tensor, beta: float, M=None) -> float:
    """``D_beta(X || WH)`` summed over the (observed) entries (Fevotte & Idier, Neural Computation
    2011): beta = 2 half the squared error, 1 generalized KL, 0 Itakura-Saito."""
    WH = WH.clamp(min=EPS)
    if beta == 2:
        terms = 0.5 * (X - WH).square()
    elif beta == 1:
        terms = torch.xlogy(X, X / WH) - X + WH
    elif beta == 0:
        ratio = X / WH
        terms = ratio - torch.log(ratio.clamp(min=EPS)) - 1
    else:
        terms = (X.clamp(min=0) ** beta + (beta - 1) * WH**beta - beta * X * WH ** (beta - 1)) / (
            beta * (beta - 1)
        )
    if M is not None:
        terms = M * terms
    return float(terms.sum())


INITS = ("random", "nndsvd", "nndsvda", "custom")
EPS = 1e-12
CHECK_EVERY = 5
NUMPY_HALS = True  # unmasked HALS on the CPU by _HalsCPU (tests switch it off to compare with the torch path)
STALL_WINDOW = 10  # the stall rule compares the objective with its value this many iterations before


def _check_values(name: str, values: np.ndarray, observed: np.ndarray | None, negative: bool = False) -> None:
    seen = values if observed is None else values[observed]
    if not np.isfinite(seen).all():
        where = "" if observed is None else " at observed entries"
        hint = "" if observed is not None else " (pass mask= to mark missing entries)"
        raise ValueError(f"{name} contains NaN or inf{where}{hint}")
    if not negative and seen.size and seen.min() < 0:
        raise ValueError(
            f"Negative values in data passed to NMF: {name} must be non-negative, found {seen.min()!r}"
        )


def _float_dtype(name: str, dtype: np.dtype) -> np.dtype:
    # booleans are 0/1 counts (the input BooleanMF takes), converted exactly
    if not (dtype == np.bool_ or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers (boolean, integer or float), got dtype {dtype}")
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


class _Data:
    """The input as torch tensors: dense ``X`` (masked entries zeroed) or sparse CSR, and a mask."""

    def __init__(self, X, mask, device: torch.device, name: str = "X", negative: bool = False) -> None:
        if scipy.sparse.issparse(X):
            if mask is not None:
                raise ValueError("mask is supported for dense X only; densify X or drop the mask")
            csr = scipy.sparse.csr_matrix(X)
            if csr.ndim != 2:
                raise ValueError(f"{name} must be 2-D")
            dtype = _float_dtype(name, csr.dtype)
            csr = csr.astype(dtype)
            csr.sum_duplicates()
            _check_values(name, csr.data, None, negative)
            self.csr = csr
            self.sparse = True
            self.shape = csr.shape
            self.device = device  # the torch forms of X below are built on first use (not on the CPU path)
            self.M = None
            self.norm_sq = float(np.square(csr.data).sum())
            self.mean = float(csr.data.sum() / (csr.shape[0] * csr.shape[1]))
            self.dtype = torch.from_numpy(csr.data[:0]).dtype
            return
        values = np.asarray(X)
        if values.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array, got shape {values.shape}")
        dtype = _float_dtype(name, values.dtype)
        observed = None
        if mask is not None:
            observed = np.asarray(mask)
            if observed.shape != values.shape:
                raise ValueError(f"mask must have the shape of {name} {values.shape}, got {observed.shape}")
            if observed.dtype != np.bool_:
                if not np.isin(observed, (0, 1)).all():
                    raise ValueError("mask must be boolean (True = observed) or 0/1")
                observed = observed.astype(bool)
            if not observed.any(axis=1).all() or not observed.any(axis=0).all():
                raise ValueError("mask leaves a row or a column of X without any observed entry")
        _check_values(name, values, observed, negative)
        dense = values.astype(dtype, copy=True)
        if observed is not None:
            dense[~observed] = 0.0
        self.sparse = False
        self.shape = dense.shape
        self.X = torch.from_numpy(dense).to(device)
        self.M = None if observed is None else torch.from_numpy(observed.astype(dtype)).to(device)
        self.norm_sq = float(np.square(dense, dtype=np.float64).sum())
        count = dense.size if observed is None else int(observed.sum())
        self.mean = float(dense.sum(dtype=np.float64) / count) if count else 0.0
        self.dtype = self.X.dtype

    # sparse X as torch tensors, built when a torch path first asks (dense X sets ``X`` itself)
    @functools.cached_property
    def X(self) -> torch.Tensor:
        with warnings.catch_warnings():  # torch flags sparse CSR as beta; the products used are stable
            warnings.simplefilter("ignore", UserWarning)
            csr = self.csr
            return torch.sparse_csr_tensor(
                torch.from_numpy(csr.indptr.astype(np.int64)),
                torch.from_numpy(csr.indices.astype(np.int64)),
                torch.from_numpy(csr.data),
                size=csr.shape,
            ).to(self.device)

    @functools.cached_property
    def Xt(self) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return self.X.to_sparse_coo().t().coalesce().to_sparse_csr()

    @functools.cached_property
    def _coo(self):
        coo = self.csr.tocoo()
        as_index = lambda a: torch.from_numpy(a.astype(np.int64)).to(self.device)  # noqa: E731
        return as_index(coo.row), as_index(coo.col), torch.from_numpy(coo.data).to(self.device)

    @property
    def rows(self) -> torch.Tensor:
        return self._coo[0]

    @property
    def cols(self) -> torch.Tensor:
        return self._coo[1]

    @property
    def values(self) -> torch.Tensor:
        return self._coo[2]

    def filled(self) -> torch.Tensor:
        """Dense ``X`` with unobserved entries at the observed mean (for initialisation only)."""
        if self.sparse:
            return self.X.to_dense()
        if self.M is None:
            return self.X
        return self.X + (1 - self.M) * self.mean

    def times(self, B: torch.Tensor) -> torch.Tensor:
        """``X @ B`` (sparse on the CPU: SciPy's kernel, several times torch's per call at NMF's
        sizes, where the call's fixed cost dominates)."""
        if self.sparse and B.device.type == "cpu":
            return torch.from_numpy(self.csr @ B.numpy())
        return self.X @ B

    def t_times(self, B: torch.Tensor) -> torch.Tensor:
        """``X^T @ B``."""
        if self.sparse and B.device.type == "cpu":
            return torch.from_numpy(self.csr.T @ B.numpy())
        return self.Xt @ B if self.sparse else self.X.T @ B


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


def _hals_sweeps(
    F,
    XF,
    G,
    l1: float,
    l2: float,
    max_sweeps: int,
    stop_ratio: float = 0.1,
    numpy_loop: bool | None = None,
    measure: bool = True,
) -> float:
    """Up to ``max_sweeps`` exact coordinate sweeps over the rows of ``F`` (k x n, in place).

    Returns the KKT violation met by the first sweep, ``sum |projected gradient|`` of each row just
    before its update (scikit-learn's ``cd`` measure, accumulated the same Gauss-Seidel way): row
    ``j``'s gradient is ``(G_jj + l2)(F_j - b_j)`` with ``b_j`` its unclamped update, so it costs a
    few vector operations on what the update computes anyway.

    Stops early once a sweep moves ``F`` by at most ``stop_ratio`` times the first sweep's move
    (Gillis & Glineur's inner stopping rule). ``numpy_loop`` (default: on CPU) runs the row
    updates on NumPy views of the tensors, else as torch operations (any device).

    ``F`` holds one component per row (``W^T`` or ``H``), ``XF`` the matching data product
    (``H X^T`` or ``W^T X``) and ``G`` the Gram matrix of the other factor. Row ``j``'s exact
    minimizer is ``max(0, (XF_j - l1 - sum_{i != j} G_ji F_i) / (G_jj + l2))``; with ``XF`` and
    ``G``'s rows divided by ``G_jj + l2`` once, and ``G``'s diagonal zeroed, each row update is one
    matrix-vector product and one clamp (the loop is bound by per-operation overhead at small k).
    """
    arrays = isinstance(F, np.ndarray)  # NumPy arrays in, NumPy loop
    if numpy_loop is None:
        numpy_loop = arrays or F.device.type == "cpu"
    if numpy_loop:
        # the same update on NumPy views of the same memory: a NumPy call costs about half a
        # torch call, and these k small calls per sweep (and the set-up) are the whole cost at small k
        Fn, XFn, Gn = (F, XF, G) if arrays else (F.numpy(), XF.numpy(), G.numpy())
        scale = Gn.diagonal() + l2
        # a zero component of the other factor and no l2: that row is left as it is (as scikit-learn)
        kept = np.flatnonzero(scale > 0).tolist()
        scale = np.where(scale > 0, scale, 1.0)
        target_n = ((XFn - l1) if l1 else XFn) / scale[:, None]
        coupling_n = Gn / scale[:, None]
        np.fill_diagonal(coupling_n, 0)
        scratch = np.empty(F.shape[1], dtype=Fn.dtype)
        step = np.empty(F.shape[1], dtype=Fn.dtype)
        rows = [(Fn[j], target_n[j], coupling_n[j], float(scale[j])) for j in kept]

        def sweep_once(measure: bool) -> float:
            violation = 0.0
            for row, b, g, s in rows:
                np.dot(g, Fn, out=scratch)
                np.subtract(b, scratch, out=scratch)
                if measure:  # projected gradient: (F_j - b_j), clipped at 0 where F_j = 0
                    np.subtract(row, scratch, out=step)
                    np.minimum(step, 0, out=step, where=row <= 0)
                    violation += s * float(np.abs(step).sum())
                np.maximum(scratch, 0, out=row)
            return violation
    else:
        scale = G.diagonal() + l2
        kept = (scale > 0).nonzero().squeeze(1).tolist()
        scale = torch.where(scale > 0, scale, 1.0)
        target = ((XF - l1) if l1 else XF) / scale[:, None]
        coupling = G / scale[:, None]
        coupling.fill_diagonal_(0)
        rows = [(F[j], target[j], coupling[j], scale[j]) for j in kept]
        FT = F.T

        def sweep_once(measure: bool) -> float:
            violation = F.new_zeros(())
            for row, b, g, s in rows:
                update = torch.addmv(b, FT, g, alpha=-1)
                if measure:
                    step = row - update
                    violation += s * torch.where(row > 0, step, step.clamp(max=0)).abs().sum()
                torch.clamp(update, min=0, out=row)
            return float(violation)

    first = None
    violation = 0.0
    for sweep in range(max_sweeps):
        # the move of a sweep only matters if another sweep may follow
        before = None if sweep == max_sweeps - 1 else F.copy() if arrays else F.clone()
        measured = sweep_once(measure=measure and sweep == 0)
        violation = measured if sweep == 0 else violation
        if before is None:
            return violation
        moved = float(np.linalg.norm(F - before)) if arrays else float((F - before).norm())
        if first is None:
            first = moved
        elif moved <= stop_ratio * first:
            return violation
    return violation


def _violation(F: torch.Tensor, grad: torch.Tensor) -> float:
    """The KKT violation of ``F >= 0`` at gradient ``grad``: ``sum |projected gradient|``.

    The projected gradient is ``grad`` where ``F > 0`` and ``min(grad, 0)`` where ``F = 0``; it is
    zero exactly at a stationary point of the non-negative problem (scikit-learn's ``cd`` solver
    accumulates the same quantity over its coordinate updates).
    """
    projected = torch.where(F > 0, grad, grad.clamp(max=0))
    return float(projected.abs().sum())


def _inner_sweeps(n: int, m: int, k: int, entries: int | None = None) -> int:
    """Gillis & Glineur's ``1 + rho / 2`` sweeps of ``W`` (n x k) per data product ``X H^T``.

    ``rho`` is the cost of the product over that of one sweep. Their count is in flops; here
    both are modelled in seconds, because a sweep is ``k`` rounds of small vector operations
    whose launch cost dominates while the product runs at matrix-multiply speed: product
    ``2 entries k / 2e10`` (``entries``: the stored entries of ``X``, ``n m`` when dense); sweep
    ``k (2e-5 + 2 n k / 5e9 + 4e-9 n)``. The constants are a fixed model (so runs stay
    deterministic), fitted on a 2-core CPU: 3 sweeps for 2000 x 1000 and k = 20 (measured best:
    3 to 5). Where the product costs less than two sweeps (digits, a sparse TF-IDF matrix) this is
    one sweep, plain HALS: with the stall rule of :class:`NMF` it reaches scikit-learn's
    200-iteration error sooner than two sweeps, which the KKT rule stopped at a worse point
    (issue 27's table in ``docs/guide/nmf.md``). Time to a given error is not monotone in the sweep
    count (on digits, 3 sweeps end at a worse local minimum than 2 or 4).
    """
    entries = n * m if entries is None else entries
    product = 2 * entries * k / 2e10
    sweep = k * (2e-5 + 2 * n * k / 5e9 + 4e-9 * n)
    return 1 + int(0.5 * product / sweep)


class _HalsCPU:
    """One HALS iteration on NumPy arrays (``X`` dense or SciPy CSR): the same updates as the
    torch path (``tests/test_nmf.py`` runs both side by side), without a torch call per operation,
    which at scikit-learn's problem sizes costs more than the arithmetic. ``H H^T`` is kept from
    one iteration to the next, and the error ``||X - W H||`` comes from products the sweeps
    computed anyway: ``||X||^2 - 2 <W^T X, H> + <W^T W, H H^T>``."""

    def __init__(self, data: _Data, penalties, sweeps_W: int, sweeps_H: int, update_H: bool):
        self.X = data.csr if data.sparse else data.X.numpy()
        self.sparse = data.sparse
        self.norm_sq = data.norm_sq
        self.l1W, self.l2W, self.l1H, self.l2H = penalties
        self.sweeps_W, self.sweeps_H = sweeps_W, sweeps_H
        self.update_H = update_H
        self.HHt = None

    def step(self, W: np.ndarray, H: np.ndarray, check: bool):
        X = self.X
        HHt = H @ H.T if self.HHt is None else self.HHt
        Wt = np.ascontiguousarray(W.T)
        # products in the orientation the sweeps read (k x n, k x m), without transposed copies
        HXt = (X @ H.T).T if self.sparse else H @ X.T
        violation = _hals_sweeps(
            Wt, np.ascontiguousarray(HXt), HHt, self.l1W, self.l2W, self.sweeps_W, measure=check
        )
        W = Wt.T
        WtX = np.ascontiguousarray((X.T @ W).T if self.sparse else Wt @ X)
        if not self.update_H:
            cross, fit = float(np.vdot(WtX, H)), float(np.vdot(Wt @ W, HHt))
            return W, H, violation, math.sqrt(max(self.norm_sq - 2 * cross + fit, 0.0))
        WtW = Wt @ W
        violation += _hals_sweeps(H, WtX, WtW, self.l1H, self.l2H, self.sweeps_H, measure=check)
        self.HHt = HHt = H @ H.T
        error = math.sqrt(max(self.norm_sq - 2 * float(np.vdot(WtX, H)) + float(np.vdot(WtW, HHt)), 0.0))
        return W, H, violation, error


def _hals_masked(W, H, X, M, R, l1, l2) -> None:
    """One exact sweep over the columns of ``W`` for the loss on observed entries (in place).

    ``R = M * (X - W H)`` is kept current.
    """
    for j in range(W.shape[1]):
        h = H[j]
        a = M @ (h * h)
        old = W[:, j].clone()
        b = R @ h + old * a
        W[:, j] = torch.where(a + l2 > 0, ((b - l1) / (a + l2)).clamp_(min=0), old)
        R -= M * torch.outer(W[:, j] - old, h)


class NMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Non-negative matrix factorization ``X ~ W H`` (see the module docstring for the solvers).

    Parameters
    ----------
    n_components : int, 'auto' or None
        Rank ``k``, ``1 <= k <= min(n_samples, n_features)``. ``'auto'`` (default, as
        scikit-learn): from the shapes of ``W``/``H`` given to :meth:`fit` with ``init='custom'``,
        else ``n_features``; ``None``: ``n_features``.
    solver : {'hals', 'mu', 'alternating'}
    beta_loss : {'frobenius', 'kullback-leibler', 'itakura-saito'} or float
        The beta-divergence fitted (a number: its beta; 2, 1, 0 are the three names). Anything but
        ``'frobenius'`` needs ``solver='mu'``; beta not in {1, 2} needs dense ``X``, and beta <= 0
        strictly positive ``X`` (as scikit-learn). ``reconstruction_err_`` is then
        ``sqrt(2 D_beta(X || WH))``.
        ``'kullback-leibler'`` needs ``solver='mu'``.
    init : {'random', 'nndsvd', 'nndsvda', 'custom'}, tuple ``(W, H)`` or array ``H`` (k x n_features)
        ``None``: ``'nndsvda'``. ``'custom'``: the ``W`` and ``H`` passed to :meth:`fit` (as
        scikit-learn). With only ``H`` given, ``W`` starts at the constant ``sqrt(mean(X) / k)``
        (as scikit-learn's ``transform``).
    alpha_W, alpha_H, l1_ratio : float
        Elastic-net penalty (scikit-learn's convention; ``alpha_H='same'`` copies ``alpha_W``).
    max_iter : int
        400 (scikit-learn: 200): a run whose fit no longer moves stops by the stall rule below, so
        the cap only binds where the fit is still improving (digits at rank 32: 200 iterations
        leave 354.6, 270 reach 341.4 and stop by the KKT rule).
    tol : float
        Two stopping rules, both read every fifth iteration (and on the first): the KKT violation of
        the non-negativity constraints, ``sum |projected gradient|`` over ``W`` and ``H``, is at most
        ``tol`` times its value in the first iteration (scikit-learn's ``cd`` rule; HALS measures it
        in its first sweep, as scikit-learn's coordinate loop), or the objective (half the squared
        error, or the divergence, plus the penalties) fell by at most ``tol`` times its first value
        over the last ten iterations (scikit-learn's ``mu`` rule: an iteration that no longer moves
        the fit is not paid for). At ``max_iter`` a ``ConvergenceWarning`` says so;
        ``history_[-1]['stopped']`` is ``'tol'``, ``'stalled'`` or ``'max_iter'``.
        (``'alternating'``: when ``A`` moved by less than ``tol`` relative to its norm.)
    random_state : int, numpy RandomState or None
        Seed of ``init='random'`` (scikit-learn's convention: an int is reproducible, ``None``
        draws a fresh seed).
    verbose : int
        Print the iteration, error and KKT violation every iteration when > 0.
    device : str
        ``'cpu'``, ``'cuda'`` or ``'auto'``.
    step, r, alpha, decode, project
        ``'alternating'`` only: ``eta`` in ``(0, 1]``; the scaling ``r`` (``None``: from the
        decodings, see above); the decoding threshold ``alpha`` (``None``: a quarter of the mean
        positive entry of ``A_0^+ y``, fixed for the run); ``'soft'`` or ``'hard'``; clip at 0.
    inner_sweeps : int, optional
        ``'hals'``: sweeps per data product (``None``: the cost model above; 1: plain HALS).
    callback : callable, optional
        Called as ``callback(iteration, components)`` after every iteration of ``fit`` (the
        current ``H``, a copy), e.g. to trace feature recovery.

    Attributes
    ----------
    components_ : (k, n_features) array ``H``.
    reconstruction_err_ : float, ``||X - W H||_F`` over observed entries (KL: ``sqrt(2 D(X||WH))``).
    n_iter_ : int
    n_components_ : int, the rank fitted (``n_components`` resolved).
    history_ : list of dict per iteration: ``error`` (as ``reconstruction_err_``), ``violation``
        (the KKT violation the stopping rule reads, measured on the first iteration and every
        fifth; None in between) and ``time`` (seconds since the start of
        ``fit``); the last entry's ``stopped`` says why it stopped; ``'alternating'`` has
        ``change`` instead of ``violation``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).random((30, 3)) @ np.random.default_rng(1).random((3, 20))
    >>> model = NMF(3, solver="hals", max_iter=2000, tol=1e-12).fit(X)
    >>> bool(model.reconstruction_err_ < 1e-3 * np.linalg.norm(X))
    True
    """

    def __init__(
        self,
        n_components: int | str | None = "auto",
        *,
        solver: str = "hals",
        beta_loss: str = "frobenius",
        init=None,
        alpha_W: float = 0.0,
        alpha_H="same",
        l1_ratio: float = 0.0,
        max_iter: int = 400,
        tol: float = 1e-4,
        random_state: int | np.random.RandomState | None = 0,
        device: str = "cpu",
        step: float = 0.5,
        r: float | None = None,
        alpha: float | None = None,
        decode: str = "soft",
        project: bool = True,
        callback=None,
        inner_sweeps: int | None = None,
        verbose: int = 0,
    ) -> None:
        self.n_components = n_components
        self.solver = solver
        self.beta_loss = beta_loss
        self.init = init
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.step = step
        self.r = r
        self.alpha = alpha
        self.decode = decode
        self.project = project
        self.callback = callback
        self.inner_sweeps = inner_sweeps
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _check_beta(self, data: _Data) -> None:
        beta = _beta(self.beta_loss)
        if beta in (1, 2):
            return
        if data.sparse:
            raise ValueError(f"beta_loss={self.beta_loss!r} needs dense X; densify it (X.toarray())")
        seen = data.X if data.M is None else data.X[data.M > 0]
        if beta <= 0 and bool((seen == 0).any()):
            raise ValueError(
                f"beta_loss={self.beta_loss!r} (beta <= 0) needs strictly positive X: the divergence is "
                "infinite at zeros (add a small constant, or use beta > 0)"
            )

    def _check_params(self, shape: tuple[int, int], masked: bool) -> None:
        k = check_int("n_components", self.n_components_)
        if min(shape) == 0:
            raise ValueError(f"X must have at least one row and one column, got shape {tuple(shape)}")
        if k > min(shape):
            raise ValueError(
                f"n_components must be <= min(n_samples, n_features) = {min(shape)}, got {k} "
                f"(n_samples = {shape[0]}, n_features = {shape[1]})"
            )
        check_choice("solver", self.solver, SOLVERS)
        if _beta(self.beta_loss) != 2 and self.solver != "mu":
            raise ValueError(f"beta_loss={self.beta_loss!r} needs solver='mu', got solver={self.solver!r}")
        if masked and self.solver == "alternating":
            raise ValueError(
                "solver='alternating' decodes whole samples and takes no mask; use 'hals' or 'mu'"
            )
        check_float("alpha_W", self.alpha_W, nonnegative=True)
        if self.alpha_H != "same":
            check_float("alpha_H", self.alpha_H, nonnegative=True)
        check_float("l1_ratio", self.l1_ratio, nonnegative=True, upper=1.0)
        check_int("max_iter", self.max_iter)
        check_float("tol", self.tol, nonnegative=True)
        if not (self.random_state is None or isinstance(self.random_state, np.random.RandomState)):
            check_int("random_state", self.random_state, minimum=0)
        check_float("step", self.step, positive=True, upper=1.0)
        if self.r is not None:
            check_float("r", self.r, positive=True)
        if self.alpha is not None:
            check_float("alpha", self.alpha, nonnegative=True)
        check_choice("decode", self.decode, ("soft", "hard"))
        if self.init is not None and isinstance(self.init, str):
            check_choice("init", self.init, INITS)

    def _regularization(self, shape) -> tuple[float, float, float, float]:
        n, m = shape
        alpha_H = self.alpha_W if self.alpha_H == "same" else self.alpha_H
        return (
            m * self.alpha_W * self.l1_ratio,
            m * self.alpha_W * (1 - self.l1_ratio),
            n * alpha_H * self.l1_ratio,
            n * alpha_H * (1 - self.l1_ratio),
        )

    def _resolve_components(self, n_features: int, W=None, H=None) -> int:
        """``n_components_``: the given rank, or (``'auto'``/None) from ``W``/``H``, else n_features."""
        if isinstance(self.n_components, str) and self.n_components == "auto":
            if W is not None:
                return int(np.shape(W)[1])
            return int(np.shape(H)[0]) if H is not None else n_features
        if self.n_components is None:
            return n_features
        return check_int("n_components", self.n_components)

    def _initial(self, data: _Data, device, W0=None, H0=None) -> tuple[torch.Tensor, torch.Tensor]:
        n, m = data.shape
        k = self.n_components_
        dtype = data.dtype
        init = self.init if self.init is not None else "nndsvda"
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
            _check_values(f"init {name}", array.astype(float), None)
            return torch.from_numpy(array.astype(np.float64)).to(device, dtype)

        if isinstance(init, tuple):
            if len(init) != 2:
                raise ValueError("init must be a name, a (W, H) tuple or an H array")
            return given("W", init[0], (n, k)), given("H", init[1], (k, m))
        if not isinstance(init, str):
            return torch.full((n, k), avg, dtype=dtype, device=device), given("H", init, (k, m))
        if init == "random":
            generator = torch.Generator().manual_seed(seed_of(self.random_state))
            W = avg * torch.randn(n, k, generator=generator, dtype=torch.float64).abs()
            H = avg * torch.randn(k, m, generator=generator, dtype=torch.float64).abs()
            return W.to(device, dtype), H.to(device, dtype)
        if data.sparse:
            W, H = nndsvd(data.csr, k, init)
            return W.to(device, dtype), H.to(device, dtype)
        return nndsvd(data.filled(), k, init)

    # ------------------------------------------------------------------ errors
    def _error(self, data: _Data, W, H, WtX=None, gram=None) -> float:
        """``reconstruction_err_`` of ``W H`` (``gram``: ``(W^T W, H H^T)`` when already at hand)."""
        beta = _beta(self.beta_loss)
        if beta == 1:
            return math.sqrt(2 * max(self._kl(data, W, H), 0.0))
        if beta != 2:
            return math.sqrt(2 * max(_beta_divergence(data.X, W @ H, beta, data.M), 0.0))
        if data.M is not None:
            return float((data.M * (data.X - W @ H)).norm())
        if WtX is None:
            WtX = data.t_times(W).T
        cross = float((WtX * H).sum())
        WtW, HHt = gram if gram is not None else (W.T @ W, H @ H.T)
        fit = float((WtW * HHt).sum())
        return math.sqrt(max(data.norm_sq - 2 * cross + fit, 0.0))

    def _kl(self, data: _Data, W, H) -> float:
        if data.sparse:
            estimate = (W[data.rows] * H[:, data.cols].T).sum(1)
            x = data.values
            total = float(W.sum(0) @ H.sum(1))
            return float(torch.xlogy(x, x / estimate.clamp(min=EPS)).sum() - x.sum()) + total
        WH = W @ H
        M = data.M if data.M is not None else torch.ones_like(WH)
        X = data.X
        return float((M * (torch.xlogy(X, X / WH.clamp(min=EPS)) - X + WH)).sum())

    # ------------------------------------------------------------------ solvers
    def _solve(self, data: _Data, W, H, update_H: bool):
        n, m = data.shape
        k = self.n_components_
        l1W, l2W, l1H, l2H = self._regularization(data.shape)
        start = time.perf_counter()
        history = []

        iterations = 0
        if self.inner_sweeps is not None:
            sweeps_W = sweeps_H = check_int("inner_sweeps", self.inner_sweeps)
        else:
            entries = data.csr.nnz if data.sparse else None
            sweeps_W, sweeps_H = _inner_sweeps(n, m, k, entries), _inner_sweeps(m, n, k, entries)
        if data.M is not None:
            sweeps_W = sweeps_H = 1
        R = data.M * (data.X - W @ H) if (data.M is not None and self.solver == "hals") else None
        cpu_hals = NUMPY_HALS and self.solver == "hals" and R is None and W.device.type == "cpu"
        objectives: dict[int, float] = {}  # at the checked iterations, for the stall rule
        if cpu_hals:  # the default path: NumPy arrays and SciPy products, no torch call per iteration
            stepper = _HalsCPU(data, (l1W, l2W, l1H, l2H), sweeps_W, sweeps_H, update_H)
            W, H = W.numpy(), H.numpy()
        for iteration in range(1, self.max_iter + 1):
            iterations = iteration
            WtX = None
            gram = None
            # the KKT violation is measured on the first iteration and every CHECK_EVERY-th after
            # (it costs a fifth of a cheap HALS iteration); the rule is read where it is measured
            check = iteration == 1 or iteration % CHECK_EVERY == 0 or iteration == self.max_iter
            if cpu_hals:
                W, H, violation, error = stepper.step(W, H, check)
            elif self.solver == "hals":
                if R is not None:
                    violation = _violation(W, l1W + l2W * W - R @ H.T)
                    _hals_masked(W, H, data.X, data.M, R, l1W, l2W)
                    if update_H:
                        violation += _violation(H, l1H + l2H * H - W.T @ R)
                        Ht = H.T.contiguous()
                        Rt = R.T.contiguous()
                        _hals_masked(Ht, W.T, data.X.T, data.M.T.contiguous(), Rt, l1H, l2H)
                        H = Ht.T.contiguous()
                        R = Rt.T.contiguous()
                else:
                    Wt = W.T.contiguous()
                    violation = _hals_sweeps(
                        Wt, data.times(H.T).T.contiguous(), H @ H.T, l1W, l2W, sweeps_W, measure=check
                    )
                    W = Wt.T
                    if update_H:
                        WtX = data.t_times(W).T.contiguous()
                        WtW = Wt @ W
                        violation += _hals_sweeps(H, WtX, WtW, l1H, l2H, sweeps_H, measure=check)
                        gram = (WtW, H @ H.T)
            else:
                W, violation = self._mu_W(data, W, H, l1W, l2W)
                if update_H:
                    Ht, violation_H = self._mu_W(
                        _Transposed(data), H.T.contiguous(), W.T.contiguous(), l1H, l2H
                    )
                    H = Ht.T.contiguous()
                    violation += violation_H
            if not cpu_hals:
                error = self._error(data, W, H, WtX if update_H else None, gram)
            if iteration == 1:
                initial = violation
            if not check:
                violation = None
            history.append({"error": error, "violation": violation, "time": time.perf_counter() - start})
            if self.verbose:
                measured = "-" if violation is None else f"{violation:.3g}"
                print(f"NMF iteration {iteration}: error {error:.6g}, KKT violation {measured}")
            if self.callback is not None:
                self.callback(iteration, np.array(H) if cpu_hals else H.cpu().numpy().copy())
            if check and violation <= self.tol * initial:
                history[-1]["stopped"] = "tol"
                break
            if check:
                # the objective the updates minimize: half the squared error (or the divergence)
                # plus the penalties, read where the KKT violation is
                objective = 0.5 * error**2 + sum(
                    l1 * float(F.sum()) + 0.5 * l2 * float((F * F).sum())
                    for F, l1, l2 in ((W, l1W, l2W), (H, l1H, l2H))
                    if l1 or l2
                )
                objectives[iteration] = objective
                earlier = objectives.get(iteration - STALL_WINDOW)
                if earlier is not None and earlier - objective <= self.tol * objectives[1]:
                    history[-1]["stopped"] = "stalled"
                    break
        else:
            if history:
                history[-1]["stopped"] = "max_iter"
            warnings.warn(
                f"NMF reached max_iter={self.max_iter} before the KKT violation fell to tol={self.tol} "
                "times its first value; raise max_iter, or tol",
                ConvergenceWarning,
                stacklevel=3,
            )
        if cpu_hals:
            W, H = torch.from_numpy(np.ascontiguousarray(W)), torch.from_numpy(H)
        return W, H, error, iterations, history

    def _mu_W(self, data, W, H, l1, l2):
        """One multiplicative update of ``W`` for ``X ~ W H`` (``data`` may be a transposed view).

        General beta (Fevotte & Idier 2011, as scikit-learn): ``W <- W (num / den)^gamma`` with
        ``num = (X WH^(beta-2)) H^T``, ``den = WH^(beta-1) H^T``, ``gamma = 1/(2-beta)`` below 1,
        ``1/(beta-1)`` above 2, else 1 (the exponent that makes the update monotone).
        """
        beta = _beta(self.beta_loss)
        if beta not in (1, 2):
            WH = (W @ H).clamp(min=EPS)
            M = data.M if data.M is not None else 1.0
            numerator = (M * data.X * WH ** (beta - 2)) @ H.T
            denominator = (M * WH ** (beta - 1)) @ H.T + l1 + l2 * W
            violation = _violation(W, denominator - numerator)
            gamma = 1 / (2 - beta) if beta < 1 else 1 / (beta - 1) if beta > 2 else 1.0
            return W * (numerator / denominator.clamp(min=EPS)) ** gamma, violation
        if beta == 2:
            if data.M is None:
                numerator = data.times(H.T)
                denominator = W @ (H @ H.T)
            else:
                numerator = (data.M * data.X) @ H.T
                denominator = (data.M * (W @ H)) @ H.T
        else:
            if data.sparse:
                estimate = (W[data.rows] * H[:, data.cols].T).sum(1).clamp(min=EPS)
                ratio = torch.sparse_coo_tensor(
                    torch.stack([data.rows, data.cols]), data.values / estimate, data.shape
                )
                numerator = torch.sparse.mm(ratio, H.T)
                denominator = H.sum(1)[None, :].expand_as(W)
            else:
                WH = (W @ H).clamp(min=EPS)
                M = data.M if data.M is not None else 1.0
                numerator = (M * data.X / WH) @ H.T
                denominator = (M * torch.ones_like(WH)) @ H.T
        denominator = denominator + l1 + l2 * W
        # the gradient of the objective in W is denominator - numerator (MU's own split of it)
        violation = _violation(W, denominator - numerator)
        return W * numerator / denominator.clamp(min=EPS), violation

    def _alternating(self, data: _Data, A: torch.Tensor):
        """Algorithm 1 of Li, Liang & Risteski on the rows of ``X`` (dense); returns ``A`` (D x k)."""
        Y = data.X
        Yc = Y - Y.mean(0)
        start = time.perf_counter()
        history = []
        alpha = self.alpha
        if alpha is None:
            Z = Y @ torch.linalg.pinv(A).T
            positive = Z[Z > 0]
            alpha = 0.25 * float(positive.mean()) if positive.numel() else 0.0
        self.alpha_ = alpha
        eta = self.step
        r = self.r
        iterations = 0
        for iteration in range(1, self.max_iter + 1):
            iterations = iteration
            decoded = self._decode(Y, A, alpha)
            centred = decoded - decoded.mean(0)
            covariance = 2 * Yc.T @ centred / Y.shape[0]
            if r is None:
                variance = float(centred.square().mean(0).mean())
                if variance <= 0:
                    raise ValueError(
                        "every decoded weight is below the threshold alpha: lower alpha or change init"
                    )
                r = 1 / (2 * variance)
            updated = (1 - eta) * A + r * eta * covariance
            if self.project:
                updated = updated.clamp(min=0)
            change = float((updated - A).norm() / A.norm().clamp(min=EPS))
            A = updated
            W = self._decode(Y, A, alpha)
            error = float((Y - W @ A.T).norm())
            history.append({"error": error, "time": time.perf_counter() - start, "change": change})
            if self.callback is not None:
                self.callback(iteration, A.T.cpu().numpy())
            if change < self.tol:
                break
        return A, iterations, history

    def _decode(self, Y: torch.Tensor, A: torch.Tensor, alpha: float) -> torch.Tensor:
        Z = Y @ torch.linalg.pinv(A).T
        if self.decode == "soft":
            return (Z - alpha).clamp(min=0)
        return Z * (Z >= alpha)

    # ------------------------------------------------------------------ API
    def fit(self, X, y=None, W=None, H=None, *, mask=None) -> NMF:
        """Learn ``components_`` from ``X`` (n_samples x n_features; dense, or scipy.sparse).

        ``W``, ``H``: the start with ``init='custom'`` (as scikit-learn).
        """
        self.fit_transform(X, W=W, H=H, mask=mask)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = self.solver != "alternating"
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    @property
    def _n_features_out(self) -> int:
        return self.components_.shape[0]

    def _validate(self, X, reset: bool):
        """``X`` as a float32/float64 array or CSR matrix (scikit-learn's validation: shapes, dtypes,
        complex and object data, feature counts); finiteness and signs are checked by :class:`_Data`
        (NaN is allowed at masked entries)."""
        return validate_data(
            self, X, accept_sparse="csr", dtype=[np.float64, np.float32], ensure_all_finite=False, reset=reset
        )

    def fit_transform(self, X, y=None, W=None, H=None, *, mask=None) -> np.ndarray:
        """Learn the model and return ``W`` (n_samples x k); ``W``, ``H`` as in :meth:`fit`."""
        device = resolve_device(self.device)
        X = self._validate(X, reset=True)
        data = _Data(X, mask, device, negative=self.solver == "alternating")
        self.n_components_ = self._resolve_components(data.shape[1], W, H)
        self._check_params(data.shape, data.M is not None)
        self._check_beta(data)
        W, H = self._initial(data, device, W, H)
        # threads by the size of an iteration, within the user's limits (factorkit._threads)
        with torch.inference_mode(), threads_for(4.0 * data.shape[0] * data.shape[1] * self.n_components_):
            if self.solver == "alternating":
                if data.sparse:
                    data = _Data(data.X.to_dense().cpu().numpy(), None, device)
                A, iterations, history = self._alternating(data, H.T.contiguous())
                H = A.T.contiguous()
                W = self._decode(data.X, A, self.alpha_)
                error = history[-1]["error"]
            else:
                W, H, error, iterations, history = self._solve(data, W, H, update_H=True)
        self.components_ = H.cpu().numpy()
        self.reconstruction_err_ = error
        self.n_iter_ = iterations
        self.history_ = history
        return W.cpu().numpy()

    def transform(self, X, *, mask=None) -> np.ndarray:
        """``W`` for new samples with ``components_`` fixed (``'alternating'``: the decoder)."""
        check_is_fitted(self)
        device = resolve_device(self.device)
        X = self._validate(X, reset=False)
        data = _Data(X, mask, device, negative=self.solver == "alternating")
        H = torch.from_numpy(self.components_).to(device, data.dtype)
        with torch.inference_mode(), threads_for(2.0 * data.shape[0] * data.shape[1] * self.n_components_):
            if self.solver == "alternating":
                dense = data.X.to_dense() if data.sparse else data.X
                return self._decode(dense, H.T, self.alpha_).cpu().numpy()
            avg = math.sqrt(max(data.mean, 0.0) / self.n_components_)
            W = torch.full((data.shape[0], self.n_components_), avg, dtype=data.dtype, device=device)
            W, _, _, _, _ = self._solve(data, W, H, update_H=False)
        return W.cpu().numpy()

    def inverse_transform(self, W) -> np.ndarray:
        """``W @ components_``."""
        check_is_fitted(self)
        return np.asarray(W) @ self.components_


def initialize_nmf(X, n_components: int, init: str = "nndsvda", random_state: int = 0):
    """The starting ``(W, H)`` that ``NMF(n_components, init=init)`` would use, as NumPy arrays.

    Pass them to another implementation (e.g. scikit-learn's ``init='custom'``) to compare
    solvers from the same point.
    """
    model = NMF(n_components, init=init, random_state=random_state)
    data = _Data(X, None, torch.device("cpu"))
    model.n_components_ = model._resolve_components(data.shape[1])
    model._check_params(data.shape, False)
    W, H = model._initial(data, torch.device("cpu"))
    return W.numpy(), H.numpy()


class _Transposed:
    """``X^T`` as the MU update of ``H^T`` sees it (``X^T ~ H^T W^T``)."""

    def __init__(self, data: _Data) -> None:
        self.sparse = data.sparse
        self.shape = (data.shape[1], data.shape[0])
        self._data = data
        if data.sparse:
            self.rows, self.cols, self.values = data.cols, data.rows, data.values
            self.M = None
        else:
            self.X = data.X.T
            self.M = None if data.M is None else data.M.T

    def times(self, B: torch.Tensor) -> torch.Tensor:
        return self._data.t_times(B)
