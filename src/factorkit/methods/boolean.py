"""Boolean matrix factorization by proximal gradient with the elastic-binary regularizer (Elbmf).

Dalleiger & Vreeken, "Efficiently Factorizing Boolean Matrices using Proximal Gradient Descent"
(NeurIPS 2022, arXiv:2307.07615). Relax binary ``U`` (n x k), ``V`` (k x m) to reals and minimize

    F(U, V) = 1/2 ||X - U V||_F^2 + R(U) + R(V),
    R(x) = sum min(l1 |x| + l2_t x^2, l1 |x - 1| + l2_t (x - 1)^2),  l2_t = l2 * rate^t,

by inertial proximal alternating linearized minimization (iPALM; Pock & Sabach, SIAM J. Imaging
Sci. 2016): for U, extrapolate ``Y = U + beta (U - U_prev)``, step ``s = 2 (1 - beta) /
((1 + 2 beta) L)`` with ``L = ||V V^T||_F`` (a bound on the gradient's Lipschitz constant), then
``U_prev, U = U, prox_{s R}(Y - s (Y V - X) V^T)``; the same for V. ``beta = 0`` is PALM with
step ``1 / (1.1 L)``. The growing ``l2_t`` drives the factors to {0, 1}; at the end they are
rounded at 1/2. Conventions here: the data term carries 1/2 (the paper's code uses
``||X - UV||^2``, i.e. its weights are twice ours) and the quadratic term is ``l2 x^2``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from factorkit._params import Anything, Boolean, Choice, Integer, RandomState, Real, validate_params
from factorkit._threads import threads_for
from factorkit._validation import check_float, check_int, resolve_device
from factorkit.methods._common import seed_of
from factorkit.problems.boolean import boolean_product
from factorkit.prox import penalty_elastic_binary, prox_elastic_binary

DEFAULT_MAX_DENSE_BYTES = 2**30
# init="auto" adds Asso's start below this many multiply-adds of Asso (asso_flops; head500 in
# 100-token documents, 3370 x 2585 at k = 10, is 7.3e11: 32 s on the 2-core CPU, shared)
ASSO_FLOPS = 2e12


def as_binary_matrix(X, name: str = "X", max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES) -> np.ndarray:
    """Validate a 0/1 (or bool) matrix from NumPy, torch or scipy.sparse; return a bool array.

    Sparse input is densified only while the dense float32 copy stays under ``max_dense_bytes``.
    """
    if scipy.sparse.issparse(X):
        n, m = X.shape
        if n * m * 4 > max_dense_bytes:
            raise ValueError(
                f"{name} is sparse {n} x {m}; its dense copy needs {n * m * 4 / 2**30:.1f} GiB, over "
                f"max_dense_bytes = {max_dense_bytes / 2**30:.1f} GiB (raise it to allow this)"
            )
        values = X.data
        dense = X.toarray()
    else:
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        dense = np.asarray(X)
        values = dense
    if dense.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {dense.shape}")
    if dense.size == 0:
        raise ValueError(f"{name} is empty (shape {dense.shape})")
    if dense.dtype == bool:
        return dense
    if not np.issubdtype(dense.dtype, np.number):
        raise TypeError(f"{name} must hold numbers or booleans, got dtype {dense.dtype}")
    if np.issubdtype(values.dtype, np.floating) and np.isnan(values).any():
        raise ValueError(f"{name} contains NaN")
    if not np.isin(values, (0, 1)).all():
        bad = values[~np.isin(values, (0, 1))].flat[0]
        raise ValueError(f"{name} must be binary (only 0/1/True/False), found {bad!r}")
    return dense.astype(bool)


def _ipalm_step(lipschitz: float, inertia: float) -> float:
    if inertia == 0:
        return 1 / (1.1 * lipschitz)
    return 2 * (1 - inertia) / ((1 + 2 * inertia) * lipschitz)


def elbmf_ipalm(X: torch.Tensor, U: torch.Tensor, V: torch.Tensor, *, update_V: bool, l1: float, l2: float,
                rate: float, max_iter: int, tol: float, inertia: float):  # fmt: skip
    """iPALM on the elastic-binary relaxation (Elbmf's Algorithm 1): ``U`` (and ``V`` when
    ``update_V``), the l2 weight growing as ``l2 * rate^t``; stops when the objective changes by
    less than ``tol`` relative. Returns the relaxed ``U``, ``V``, the history and the iterations."""
    beta = inertia
    U_prev = U.clone()
    V_prev = V.clone()
    history = []
    previous = math.inf
    iterations = 0
    X_squared = float(X.square().sum())
    XVt = X @ V.T
    for iteration in range(1, max_iter + 1):
        iterations = iteration
        l2_now = l2 * rate**iteration
        VVt = V @ V.T
        step = _ipalm_step(max(float(VVt.norm()), 1e-12), beta)
        Y = U + beta * (U - U_prev)
        U_prev = U
        U = prox_elastic_binary(Y - step * (Y @ VVt - XVt), l1, l2_now, step, "box")
        UtX = U.T @ X
        UtU = U.T @ U
        if update_V:
            step = _ipalm_step(max(float(UtU.norm()), 1e-12), beta)
            Y = V + beta * (V - V_prev)
            V_prev = V
            V = prox_elastic_binary(Y - step * (UtU @ Y - UtX), l1, l2_now, step, "box")
            VVt = V @ V.T
            XVt = X @ V.T
        # ||X - UV||^2 = ||X||^2 - 2 <U^T X, V> + <U^T U, V V^T>: no n x m residual per step
        loss = 0.5 * (X_squared - 2 * float((UtX * V).sum()) + float((UtU * VVt).sum()))
        objective = loss + float(
            penalty_elastic_binary(U, l1, l2_now) + penalty_elastic_binary(V, l1, l2_now)
        )
        gap = float(torch.cat([U.flatten(), V.flatten()]).sub(0.5).abs().neg().add(0.5).mean())
        history.append({"loss": loss, "objective": objective, "gap": gap})
        if abs(previous - objective) < tol * max(1.0, objective):
            break
        previous = objective
    return U, V, history, iterations


class BooleanMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Boolean matrix factorization ``X ~ U o V`` by Elbmf (scikit-learn style estimator).

    Parameters
    ----------
    n_components : int
        Rank ``k`` of the factorization, ``1 <= k <= min(n, m)``.
    l1_reg, l2_reg : float
        Weights ``l1`` and ``l2`` of the elastic-binary regularizer (``l2`` grows by
        ``regularization_rate`` per iteration).
    regularization_rate : float
        Growth factor ``c >= 1`` of the l2 weight: ``l2_t = l2 * c^t``.
    max_iter : int
        Most iterations (one U and one V update each).
    tol : float
        Stop when the objective changes by less than ``tol`` (relative to ``max(1, F)``).
    inertia : float
        iPALM extrapolation ``beta`` in ``[0, 1)``; 0 gives PALM.
    random_state : None, int, numpy RandomState or Generator
        Seed of the ``Uniform[0, 1)`` initialisation.
    device : str
        ``'cpu'``, ``'cuda'`` or ``'auto'``.
    dtype : {'float32', 'float64'}
    max_dense_bytes : int
        Sparse input is densified only under this size.
    polish : bool
        After rounding, descend the Boolean error itself by single-entry flips of ``U`` and ``V``
        (:func:`polish_boolean`; ``transform``: of ``U``). The relaxed loss counts an entry two
        components cover as an error and the Boolean product does not, so on real tables the
        rounded Elbmf factors are not a local optimum of the Boolean error: polishing cut it by 9%
        on gensim's lee documents and 30% on thresholded digits (``benchmarks/real_data.py``).
    n_init : int
        Independent initialisations; the one with the lowest Boolean reconstruction error (then
        the lowest relaxed loss) is kept, as scikit-learn's KMeans keeps its best ``n_init`` run.
        The objective is non-convex: on 1000 x 500 planted data with k = 10, single runs
        occasionally end in a local optimum that another start avoids.
    init : {'auto', 'random', 'asso'}
        Where the relaxation starts. ``'random'``: ``n_init`` draws of ``Uniform[0, 1)``. ``'asso'``:
        the factors of :func:`asso` (the greedy cover of Miettinen et al.), from which the relaxation
        runs (then rounding and polishing as always), beside those factors polished alone. ``'auto'``
        (default): both, when Asso's cost (:func:`asso_flops`: nine thresholds, rows updated as
        components cover them) is under :data:`ASSO_FLOPS`, else ``'random'``; the candidate of the
        lowest Boolean error is kept (``init_`` says which). With Asso among the starts the fit is never
        worse than Asso's on any table (polishing never raises the error), and where the relaxation
        finds a better cover it keeps that: ``benchmarks/held_out.py boolean`` counts both.

    Attributes
    ----------
    components_ : (k, m) bool array, the Boolean factor ``V``.
    n_iter_ : int
    reconstruction_err_ : int, Hamming distance between ``U o V`` and ``X``.
    init_ : str, the start of the kept candidate: ``'random'``, ``'asso'`` (the relaxation from
        Asso's factors) or ``'asso, polished'`` (Asso's factors polished, no relaxation: then
        ``history_`` is empty and ``n_iter_`` 0).
    recall_ : float, fraction of the ones of ``X`` covered by ``U o V``.
    history_ : list of dict per iteration: ``loss`` (1/2 ||X - UV||^2), ``objective`` (with the
        regularizer) and ``gap``, the integrality gap (mean distance of the relaxed factors to
        {0, 1}) before rounding.

    Examples
    --------
    >>> from factorkit.problems.boolean import planted_tiles
    >>> data = planted_tiles(200, 100, 5, density=0.1, seed=0)
    >>> model = BooleanMF(n_components=5, random_state=0).fit(data.X)
    >>> model.reconstruction_err_
    0
    """

    def __init__(
        self,
        n_components: int,
        l1_reg: float = 0.01,
        l2_reg: float = 0.02,
        regularization_rate: float = 1.02,
        max_iter: int = 1000,
        tol: float = 1e-8,
        inertia: float = 0.0,
        random_state: int = 0,
        device: str = "cpu",
        dtype: str = "float32",
        max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES,
        n_init: int = 1,
        polish: bool = True,
        init: str = "auto",
    ) -> None:
        self.n_components = n_components
        self.l1_reg = l1_reg
        self.l2_reg = l2_reg
        self.regularization_rate = regularization_rate
        self.max_iter = max_iter
        self.tol = tol
        self.inertia = inertia
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.max_dense_bytes = max_dense_bytes
        self.n_init = n_init
        self.polish = polish
        self.init = init

    _parameters = {
        "n_components": Integer(),
        "l1_reg": Real(nonnegative=True),
        "l2_reg": Real(nonnegative=True),
        "regularization_rate": Real(),
        "max_iter": Integer(),
        "tol": Real(nonnegative=True),
        "inertia": Real(nonnegative=True),
        "random_state": RandomState(),
        "device": Anything(),
        "dtype": Choice("float32", "float64"),
        "max_dense_bytes": Integer(),
        "n_init": Integer(),
        "polish": Boolean(),
        "init": Choice("auto", "random", "asso"),
    }

    def _solve(self, X, U, V, update_V: bool):
        return elbmf_ipalm(
            X, U, V, update_V=update_V, l1=self.l1_reg, l2=self.l2_reg, rate=self.regularization_rate,
            max_iter=self.max_iter, tol=self.tol, inertia=self.inertia,
        )  # fmt: skip

    def _check_params(self, shape: tuple[int, int], fitting: bool = True) -> None:
        """The rules tying parameters to each other and to the data (the single ones are declared)."""
        k = self.n_components
        # fitting needs k <= min(n, m); transform holds V fixed and takes any number of rows
        limit = min(shape) if fitting else shape[1]
        if k > limit:
            raise ValueError(
                f"n_components={k} must be <= {'min(n_samples, n_features)' if fitting else 'n_features'} "
                f"= {limit} (n_samples = {shape[0]}, n_features = {shape[1]})"
            )
        if self.regularization_rate < 1:
            raise ValueError(f"regularization_rate must be >= 1, got {self.regularization_rate}")
        if self.inertia >= 1:
            raise ValueError(f"inertia must be in [0, 1), got {self.inertia}")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    @property
    def _n_features_out(self) -> int:
        return self.components_.shape[0]

    def _prepare(self, X, fitting: bool = True):
        validate_params(self)
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        # scikit-learn's checks (shape, dtype, feature count); the binary domain is checked below
        X = validate_data(self, X, accept_sparse="csr", dtype=None, ensure_all_finite=False, reset=fitting)
        binary = as_binary_matrix(X, max_dense_bytes=self.max_dense_bytes)
        self._check_params(binary.shape, fitting)
        device = resolve_device(self.device)
        dtype = torch.float32 if self.dtype == "float32" else torch.float64
        return binary, torch.from_numpy(binary).to(device=device, dtype=dtype), device, dtype

    def _applies(self) -> dict:
        return {"regularization_rate": (self.l2_reg > 0, "l2_reg > 0 (it scales the l2 weight)")}

    def fit(self, X, y=None) -> BooleanMF:
        """Factorize the binary matrix ``X`` (n x m)."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        """Factorize ``X`` and return the Boolean ``U`` (n x k)."""
        binary, data, device, dtype = self._prepare(X)
        generator = torch.Generator().manual_seed(seed_of(self.random_state))
        n, m = binary.shape
        k = self.n_components
        starts = []  # (name, U, V): relaxed starting factors
        if self.init != "asso":
            for _ in range(self.n_init):
                U = torch.rand(n, k, generator=generator, dtype=dtype).to(device)
                V = torch.rand(k, m, generator=generator, dtype=dtype).to(device)
                starts.append(("random", U, V))
        use_asso = self.init == "asso" or (self.init == "auto" and asso_flops(binary, k) <= ASSO_FLOPS)
        candidates = []  # (score, U_bool, V_bool, history, iterations, name)
        if use_asso:
            U_asso, V_asso = asso(binary, k)
            starts.append(("asso", *(torch.from_numpy(f).to(device, dtype) for f in (U_asso, V_asso))))
        for name, U, V in starts:
            with threads_for(4.0 * n * m * k):  # by size, within user limits
                U, V, history, iterations = self._solve(data, U, V, update_V=True)
            U_bool, V_bool = (U >= 0.5).cpu().numpy(), (V >= 0.5).cpu().numpy()
            if self.polish:
                U_bool, V_bool = polish_boolean(binary, U_bool, V_bool)
            error = int((boolean_product(U_bool, V_bool) != binary).sum())
            candidates.append(((error, history[-1]["loss"]), U_bool, V_bool, history, iterations, name))
        if use_asso:  # Asso's own factors (polished): the fit is never worse than Asso's
            U_bool, V_bool = polish_boolean(binary, U_asso, V_asso) if self.polish else (U_asso, V_asso)
            error = int((boolean_product(U_bool, V_bool) != binary).sum())
            loss = 0.5 * float(((U_bool.astype(np.float64) @ V_bool - binary) ** 2).sum())
            candidates.append(
                ((error, loss), U_bool, V_bool, [], 0, "asso, polished" if self.polish else "asso")
            )
        # the lowest Boolean error, then the lowest relaxed loss; ties to the earliest candidate
        _, U_bool, self.components_, self.history_, self.n_iter_, self.init_ = min(
            candidates, key=lambda c: c[0]
        )
        self._score(binary, U_bool)
        return U_bool

    def transform(self, X) -> np.ndarray:
        """Boolean ``U`` for new rows ``X`` (n' x m) with the fitted ``components_`` held fixed."""
        check_is_fitted(self)
        binary, data, device, dtype = self._prepare(X, fitting=False)
        generator = torch.Generator().manual_seed(seed_of(self.random_state))
        U = torch.rand(binary.shape[0], self.n_components, generator=generator, dtype=dtype).to(device)
        V = torch.from_numpy(self.components_).to(device=device, dtype=dtype)
        U, _, _, _ = self._solve(data, U, V, update_V=False)
        U_bool = (U >= 0.5).cpu().numpy()
        if self.polish:
            U_bool, _ = polish_boolean(binary, U_bool, self.components_, update_V=False)
        return U_bool

    def inverse_transform(self, U) -> np.ndarray:
        """The Boolean product ``U o components_``."""
        check_is_fitted(self)
        return boolean_product(np.asarray(U), self.components_)

    def _score(self, X: np.ndarray, U: np.ndarray) -> None:
        reconstruction = boolean_product(U, self.components_)
        self.reconstruction_err_ = int((reconstruction != X).sum())
        ones = X.sum()
        self.recall_ = float((reconstruction & X).sum() / ones) if ones else 1.0


def _polish_rows(signs: np.ndarray, U: np.ndarray, V: np.ndarray) -> bool:
    """One sweep of single-entry flips of ``U`` (in place) that lower ``|X - U o V|``; ``signs`` is
    ``-1`` where ``X`` is 1 and ``+1`` where it is 0 (covering a one helps, covering a zero hurts)."""
    counts = U.astype(np.int32) @ V.astype(np.int32)  # how many components cover each entry
    changed = False
    for j in range(U.shape[1]):
        column = V[j].astype(np.int32)
        # rows without j: adding it covers the entries nobody covered yet
        gain_add = ((counts == 0) * signs) @ column
        # rows with j: removing it uncovers the entries only j covered
        gain_remove = -(((counts == 1) * signs) @ column)
        add = ~U[:, j] & (gain_add < 0)
        remove = U[:, j] & (gain_remove < 0)
        if add.any() or remove.any():
            changed = True
            U[add, j] = True
            U[remove, j] = False
            counts[add] += column
            counts[remove] -= column
    return changed


def polish_boolean(X, U, V, max_sweeps: int = 100, update_V: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Exact descent on the Boolean error ``|X - U o V|``: flip single entries of ``U`` (and ``V``)
    wherever that lowers it, component by component, until a sweep changes nothing.

    The relaxed objective Elbmf minimizes, ``||X - U V||^2`` with the real product, counts an entry
    covered by two components as an error, which the Boolean product does not: on sparse real tables
    its rounded factors are not a local optimum of the Boolean error. Each flip here lowers that
    error, so the result is never worse than ``(U, V)`` and no single flip improves it further
    (``tests/test_boolean.py`` checks both by brute force).

    Returns new Boolean ``(U, V)``.
    """
    binary = as_binary_matrix(X)
    U = np.array(U, dtype=bool, copy=True)
    V = np.array(V, dtype=bool, copy=True)
    if U.shape != (binary.shape[0], V.shape[0]) or V.shape[1] != binary.shape[1]:
        raise ValueError(f"U {U.shape} and V {V.shape} do not factor X {binary.shape}")
    signs = np.where(binary, -1, 1).astype(np.int32)
    signs_t = np.ascontiguousarray(signs.T)
    for _ in range(check_int("max_sweeps", max_sweeps)):
        changed = _polish_rows(signs, U, V)
        if update_V:
            V_t = np.ascontiguousarray(V.T)
            changed |= _polish_rows(signs_t, V_t, np.ascontiguousarray(U.T))
            V = np.ascontiguousarray(V_t.T)
        if not changed:
            break
    return U, V


def asso(
    X,
    n_components: int,
    threshold: float | None = None,
    positive_weight: float = 1.0,
    negative_weight: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy Boolean factorization by the Asso algorithm, a baseline for :class:`BooleanMF`.

    Miettinen, Mielikainen, Gionis, Das & Mannila, "The discrete basis problem" (IEEE TKDE 2008):
    candidate basis vectors are the rows of the thresholded column-association matrix
    ``A_ij = |x_i AND x_j| / |x_i|``; ``n_components`` times, the candidate (with each row's
    best use of it) that most increases ``w+ (newly covered ones) - w- (newly covered zeros)`` is
    added. ``threshold=None`` tries 0.1, 0.2, ..., 0.9 and keeps the lowest Boolean error.

    Returns ``(U, V)``, Boolean ``n x k`` and ``k x m``.
    """
    binary = as_binary_matrix(X)
    k = check_int("n_components", n_components)
    if k > min(binary.shape):
        raise ValueError(f"n_components must be <= min(n, m) = {min(binary.shape)}, got {k}")
    if threshold is not None:
        check_float("threshold", threshold, positive=True, upper=1.0)
    # the association matrix once for every threshold; each threshold's gains in full once, then
    # only for the rows the last component changed (the others' newly covered sets did not move):
    # the same integer sums (float32 counts are exact below 2^24), so the same candidates win
    data = binary.astype(np.float32)
    counts = data.sum(0)
    association = (data.T @ data) / np.maximum(counts, 1)[:, None]
    thresholds = [threshold] if threshold is not None else np.arange(0.1, 1.0, 0.1)
    candidates = [
        _asso_cover(binary, data, association >= t, k, positive_weight, negative_weight) for t in thresholds
    ]
    return min(candidates, key=lambda f: int((boolean_product(*f) != binary).sum()))


def asso_flops(binary: np.ndarray, k: int) -> float:
    """Multiply-adds of :func:`asso` on ``binary`` at rank ``k``: the association matrix, then per
    threshold (nine) one full gains product and ``k`` updates of the rows a component covers
    (counted as a quarter of the rows each), for choosing it."""
    n, m = binary.shape
    return float(n) * m * m * (1 + 9 * (1 + 0.25 * k))


def _asso_cover(binary, data, basis, k: int, positive_weight: float, negative_weight: float):
    """Asso's greedy cover at one threshold: ``basis`` holds one candidate per row. The gain of
    candidate ``b`` for row ``i`` is ``w+ |x_i - c_i| . b - w- |not (x_i or c_i)| . b``."""
    basis_T = basis.T.astype(np.float32)
    sizes = basis.sum(1).astype(np.float32)  # |b|: the zeros b would newly cover are |b| - |b AND (x OR c)|
    covered = np.zeros_like(binary)
    U = np.zeros((binary.shape[0], k), dtype=bool)
    V = np.zeros((k, binary.shape[1]), dtype=bool)

    def gains_of(rows):
        new_ones = (binary[rows] & ~covered[rows]).astype(np.float32)
        union = (binary[rows] | covered[rows]).astype(np.float32)
        return positive_weight * (new_ones @ basis_T) - negative_weight * (sizes[None, :] - union @ basis_T)

    gains = data @ basis_T  # nothing covered yet: new ones = x, union = x
    gains = (positive_weight + negative_weight) * gains - negative_weight * sizes[None, :]
    for component in range(k):
        best = int(np.maximum(gains, 0).sum(0).argmax())
        U[:, component] = gains[:, best] > 0
        V[component] = basis[best]
        covered[U[:, component]] |= V[component]
        changed = np.flatnonzero(U[:, component])
        if changed.size and component + 1 < k:
            gains[changed] = gains_of(changed)
    return U, V
