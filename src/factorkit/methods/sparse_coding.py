"""Sparse coding ``X ~ Z D`` and dictionary learning, with any penalty of :mod:`factorkit.prox`.

The objective, per sample ``x`` (a row of ``X``) and its code ``z`` (a row of ``Z``), averaged over
samples, is scikit-learn's (so ``alpha`` means the same for ``penalty='l1'``)::

    0.5 ||x - z D||^2 + alpha * h(z)

with ``D`` the dictionary (``n_components x n_features``, atoms as rows) and ``h`` one of
:data:`PENALTIES`: ``'l1'`` (soft thresholding), ``'l0'`` (hard), ``'lq'`` (``|z|^q``,
``0 <= q < 1``), ``'l_half'`` (the closed-form ``q = 1/2``), ``'log'``, ``'mcp'``, ``'scad'`` and
``'cel0'`` (the continuous exact l0 relaxation); ``positive_code=True`` adds ``z >= 0``.
"Beyond l1 sparse coding in V1" (Rentzeperis, Calatroni, Perrinet & Prandi, PLoS Comput. Biol.
2023) compares these penalties on natural-image patches; ``benchmarks/v1_sparse_coding.py``
repeats that comparison here.

Codes
    ``algorithm='fista'``: FISTA (Beck & Teboulle 2009) with the penalty's exact prox, step
    ``1 / L`` (``L`` the largest eigenvalue of ``D D^T``; ``0.99 / L`` for CEL0, whose prox needs
    ``step < 1``), batched over all samples as matrix products, with the momentum of each sample
    reset when it points uphill (the gradient restart of O'Donoghue & Candes 2015: for the
    non-convex penalties it keeps each sample's iterates from oscillating between supports). For
    CEL0 the atoms are taken at unit norm and the codes rescaled (CEL0 with atom norms ``a_i`` is
    CEL0 with unit atoms in the variables ``a_i z_i``). ``algorithm='omp'``: orthogonal matching
    pursuit with ``n_nonzero_coefs`` atoms per sample (the greedy l0 baseline; Pati, Rezaiifar &
    Krishnaprasad 1993), batched over samples: the least-squares coefficients on the chosen atoms
    by a batched solve of their Gram matrices (as scikit-learn's ``orthogonal_mp_gram``).
Dictionary
    Atoms on the unit sphere. Each update is one sweep of block-coordinate descent over the atoms
    on the statistics ``A = Z^T Z``, ``B = Z^T X`` (Mairal, Bach, Ponce & Sapiro, "Online learning
    for matrix factorization and sparse coding", JMLR 2010, Algorithm 2): with the other atoms
    fixed, ``u = d_k + (b_k - A_k D) / A_kk`` minimizes the squared error in ``d_k``, and on the
    sphere the minimizer is ``u / ||u||`` exactly (the quadratic term is constant there). An atom no
    code uses (``A_kk ~ 0``) is replaced by a random sample of the data. ``batch_size=None`` (or at
    least ``n_samples``): full-batch alternating minimization with warm-started codes, stopped when
    the objective decreases by less than ``tol`` relative. Otherwise online (their Algorithm 1):
    mini-batches in a random order, ``A`` and ``B`` accumulated with the forgetting factor of their
    section 3.4 (the same schedule as scikit-learn's ``MiniBatchDictionaryLearning``), stopped
    when an epoch moved the atoms by at most ``tol`` in root mean square, or (scikit-learn's rule)
    when the exponentially weighted mini-batch objective did not improve for
    ``max_no_improvement`` batches. Codes are computed in blocks of :data:`FISTA_BLOCK` samples,
    so the work memory stays bounded whatever ``n_samples``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from factorkit import prox as proxes
from factorkit._memory import check_memory
from factorkit._threads import threads_for
from factorkit._validation import check_choice, check_float, check_int, resolve_device
from factorkit.methods._common import as_tensor, seed_of

PENALTIES = ("l1", "l0", "lq", "l_half", "log", "mcp", "scad", "cel0")
ALGORITHMS = ("fista", "omp")
INITS = ("auto", "data", "l1")
FULL_BATCH_TOL, ONLINE_TOL = 1e-7, 1e-3  # tol=None
FULL_BATCH_UP_TO = 10_000  # batch_size='auto': full-batch learning up to this many samples
# each penalty's shape parameters and their defaults (``penalty_params`` overrides them)
PENALTY_PARAMS = {"lq": {"q": 0.5}, "log": {"eps": 0.1}, "mcp": {"gamma": 3.0}, "scad": {"a": 3.7}}
OMP_CHUNK = 8192  # samples per OMP block: bounds the (chunk, k, K) gathered Gram rows
CHECK_EVERY = 10  # FISTA reads its stopping rule every this many iterations
FISTA_BLOCK = 65_536  # samples coded at once (FISTA holds about six block x atoms tensors)


@dataclass(frozen=True)
class Penalty:
    """``alpha * h(z)`` for one of :data:`PENALTIES`, with its prox and value."""

    name: str
    alpha: float
    params: dict
    nonnegative: bool = False

    @classmethod
    def make(cls, name, alpha, params=None, nonnegative=False) -> Penalty:
        name = check_choice("penalty", name, PENALTIES)
        alpha = check_float("alpha", alpha, nonnegative=True)
        given = {} if params is None else params
        if not isinstance(given, dict):
            raise TypeError(f"penalty_params must be a dict or None, got {type(given).__name__}")
        allowed = PENALTY_PARAMS.get(name, {})
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            expected = ", ".join(allowed) if allowed else "none"
            raise ValueError(f"penalty_params for penalty={name!r} takes {expected}; got unknown {unknown}")
        merged = {**allowed, **given}
        for key, value in merged.items():
            merged[key] = check_float(
                f"penalty_params[{key!r}]", value, positive=key != "q", nonnegative=True
            )
        if name == "lq":
            proxes._check_q(merged["q"])
        return cls(name, alpha, merged, bool(nonnegative))

    def prox(self, v: torch.Tensor, step: float) -> torch.Tensor:
        nn, lam = self.nonnegative, self.alpha
        if self.name == "l1":
            return (v - step * lam).clamp_min(0.0) if nn else proxes.prox_l1(v, step * lam)
        if self.name == "l0":
            return proxes.prox_l0(v, lam, step, nonnegative=nn)
        if self.name == "lq":
            return proxes.prox_lq(v, lam, step, q=self.params["q"], nonnegative=nn)
        if self.name == "l_half":
            return proxes.prox_l_half(v, lam, step, nonnegative=nn)
        if self.name == "log":
            return proxes.prox_log(v, lam, step, eps=self.params["eps"], nonnegative=nn)
        if self.name == "mcp":
            return proxes.prox_mcp(v, lam, step, gamma=self.params["gamma"], nonnegative=nn)
        if self.name == "scad":
            return proxes.prox_scad(v, lam, step, a=self.params["a"], nonnegative=nn)
        return proxes.prox_cel0(v, lam, step, a=1.0, nonnegative=nn)

    def dead_zone(self) -> float:
        """The largest ``|x|`` the prox (at step 0.99) maps to 0, by bisection on the prox itself:
        the threshold of the l1 penalty that zeroes out the same small inputs."""
        hi = max(self.alpha, 1e-300)
        while float(self.prox(torch.tensor([hi], dtype=torch.float64), 0.99)[0]) == 0:
            hi *= 2
        lo = 0.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (
                (mid, hi)
                if float(self.prox(torch.tensor([mid], dtype=torch.float64), 0.99)[0]) == 0
                else (lo, mid)
            )
        return lo

    def value(self, Z: torch.Tensor) -> float:
        """``alpha * sum h(Z)`` over all entries (CEL0 for unit atoms)."""
        lam = self.alpha
        if self.name == "l1":
            return float(proxes.penalty_l1(Z, lam))
        if self.name in ("l0", "lq"):
            return float(proxes.penalty_lq(Z, lam, q=self.params.get("q", 0.0)))
        if self.name == "l_half":
            return float(proxes.penalty_l_half(Z, lam))
        if self.name == "log":
            return float(proxes.penalty_log(Z, lam, eps=self.params["eps"]))
        if self.name == "mcp":
            return float(proxes.penalty_mcp(Z, lam, gamma=self.params["gamma"]))
        if self.name == "scad":
            return float(proxes.penalty_scad(Z, lam, a=self.params["a"]))
        return float(proxes.penalty_cel0(Z, lam, a=1.0))


def fista_codes(
    X: torch.Tensor,
    D: torch.Tensor,
    penalty: Penalty,
    *,
    Z0: torch.Tensor | None = None,
    max_iter: int = 200,
    tol: float = 1e-4,
) -> tuple[torch.Tensor, int]:
    """Codes minimizing ``0.5 ||X - Z D||^2 + penalty(Z)`` by FISTA with per-sample restarts.

    Each sample stops once ``||z_{k+1} - z_k|| <= tol ||z_{k+1}||`` (read every
    :data:`CHECK_EVERY` iterations; finished samples leave the batch, so a sample's codes do not
    depend on the others) or after ``max_iter`` iterations. Returns the codes and the iterations
    run by the slowest sample.
    """
    if X.shape[0] > FISTA_BLOCK:  # samples are independent: bounded work memory, whatever n
        check_memory(
            f"codes of {X.shape[0]} samples in {D.shape[0]} atoms", X.shape[0] * D.shape[0] * X.element_size()
        )
        blocks = [
            fista_codes(X[i : i + FISTA_BLOCK], D, penalty, max_iter=max_iter, tol=tol,
                        Z0=None if Z0 is None else Z0[i : i + FISTA_BLOCK])
            for i in range(0, X.shape[0], FISTA_BLOCK)
        ]  # fmt: skip
        return torch.cat([codes for codes, _ in blocks]), max(iterations for _, iterations in blocks)
    if penalty.name != "cel0":
        return _fista(X, D, penalty, Z0, max_iter, tol, step_factor=1.0)
    # CEL0 with atom norms a_i is CEL0 with unit atoms in the variables a_i z_i; its prox needs step < 1
    norms = D.norm(dim=1).clamp_min(torch.finfo(D.dtype).tiny)
    Z0 = None if Z0 is None else Z0 * norms
    codes, iterations = _fista(X, D / norms[:, None], penalty, Z0, max_iter, tol, step_factor=0.99)
    return codes / norms, iterations


def _fista(X, D, penalty: Penalty, Z0, max_iter: int, tol: float, step_factor: float):
    gram = D @ D.T
    correlation = X @ D.T
    L = float(torch.linalg.eigvalsh(gram)[-1]) if gram.numel() else 0.0
    if L <= 0:  # an all-zero dictionary: every code is 0
        return torch.zeros_like(correlation), 0
    step = step_factor / L
    out = torch.zeros_like(correlation) if Z0 is None else Z0.clone()
    # the rows still iterating (a sample's codes never depend on the other samples of the batch)
    rows = torch.arange(out.shape[0], device=out.device)
    Z, C = out.clone(), correlation
    Y = Z.clone()
    t = torch.ones(Z.shape[0], 1, dtype=Z.dtype, device=Z.device)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        Z_new = penalty.prox(Y - step * (Y @ gram - C), step)
        delta = Z_new - Z
        # O'Donoghue & Candes' gradient restart, per sample: momentum that points uphill is dropped
        restart = ((Y - Z_new) * delta).sum(1, keepdim=True) > 0
        t_new = (1 + torch.sqrt(1 + 4 * t.square())) / 2
        momentum = torch.where(restart, 0.0, (t - 1) / t_new)
        t = torch.where(restart, 1.0, t_new)
        Y = Z_new + momentum * delta
        Z = Z_new
        if iterations % CHECK_EVERY == 0 or iterations == max_iter:
            done = delta.norm(dim=1) <= tol * Z.norm(dim=1)
            if iterations == max_iter or bool(done.all()):
                out[rows] = Z
                rows = rows[:0]
                break
            if bool(done.any()):
                out[rows[done]] = Z[done]
                keep = ~done
                rows, Z, Y, t, C = rows[keep], Z[keep], Y[keep], t[keep], C[keep]
    if rows.numel():
        out[rows] = Z
    return out, iterations


def omp_codes(X: torch.Tensor, D: torch.Tensor, n_nonzero_coefs: int) -> torch.Tensor:
    """Orthogonal matching pursuit: ``n_nonzero_coefs`` atoms per sample, chosen greedily by the
    largest ``|<residual, d_j>| `` (atoms taken as given, as scikit-learn's OMP), with the
    least-squares coefficients on the chosen atoms."""
    n_atoms = D.shape[0]
    if n_nonzero_coefs > n_atoms:
        raise ValueError(f"n_nonzero_coefs must be <= the number of atoms {n_atoms}, got {n_nonzero_coefs}")
    gram = D @ D.T
    check_memory(
        f"OMP codes of {X.shape[0]} samples in {n_atoms} atoms", X.shape[0] * n_atoms * X.element_size()
    )
    codes = torch.zeros(X.shape[0], n_atoms, dtype=X.dtype, device=X.device)
    for start in range(0, X.shape[0], OMP_CHUNK):
        correlation = X[start : start + OMP_CHUNK] @ D.T
        rows = correlation.shape[0]
        chosen = torch.empty(rows, 0, dtype=torch.long, device=X.device)
        coefficients = torch.empty(rows, 0, dtype=X.dtype, device=X.device)
        for _ in range(n_nonzero_coefs):
            # correlation of the residual: c - gamma G[chosen]
            residual_corr = correlation - torch.einsum("nk,nkj->nj", coefficients, gram[chosen])
            residual_corr = residual_corr.abs().scatter(1, chosen, -1.0)
            chosen = torch.cat([chosen, residual_corr.argmax(1, keepdim=True)], 1)
            sub_gram = gram[chosen[:, :, None], chosen[:, None, :]]
            rhs = correlation.gather(1, chosen)
            coefficients, info = torch.linalg.solve_ex(sub_gram, rhs)
            singular = info != 0
            if bool(singular.any()):  # an atom in the span of the chosen ones: least squares instead
                coefficients[singular] = (
                    torch.linalg.lstsq(
                        sub_gram[singular].cpu(), rhs[singular].cpu().unsqueeze(-1), driver="gelsd"
                    )
                    .solution.squeeze(-1)
                    .to(X.device)
                )
        codes[start : start + rows].scatter_(1, chosen, coefficients)
    return codes


def update_dictionary(
    D: torch.Tensor, A: torch.Tensor, B: torch.Tensor, X: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """One sweep of block-coordinate descent over the atoms on the sphere (see the module
    docstring); unused atoms are replaced by random rows of ``X``, normalized. Works on a copy."""
    D = D.clone()
    scale = float(torch.diagonal(A).mean()) if A.shape[0] else 0.0
    for k in range(D.shape[0]):
        a_kk = A[k, k]
        if float(a_kk) <= 1e-10 * max(scale, torch.finfo(D.dtype).tiny):
            u = X[int(torch.randint(X.shape[0], (1,), generator=generator))].clone()
        else:
            u = D[k] + (B[k] - A[k] @ D) / a_kk
        norm = u.norm()
        if float(norm) == 0.0:
            u = torch.randn(D.shape[1], generator=generator, dtype=D.dtype).to(D.device)
            norm = u.norm()
        D[k] = u / norm
    return D


def objective(X: torch.Tensor, Z: torch.Tensor, D: torch.Tensor, penalty: Penalty) -> float:
    """The mean over samples of ``0.5 ||x - z D||^2 + alpha h(z)`` (CEL0: of ``z_i ||d_i||``)."""
    scaled = Z * D.norm(dim=1) if penalty.name == "cel0" else Z
    return (0.5 * float((X - Z @ D).square().sum()) + penalty.value(scaled)) / X.shape[0]


def _encode(X, D, penalty: Penalty, algorithm: str, n_nonzero_coefs, Z0=None, max_iter=200, tol=1e-4):
    """Codes by FISTA or OMP, on the threads the size of a FISTA iteration calls for."""
    with threads_for(_coding_work(X.shape[0], *D.shape)):
        if algorithm == "omp":
            return omp_codes(X, D, n_nonzero_coefs), 1
        return fista_codes(X, D, penalty, Z0=Z0, max_iter=max_iter, tol=tol)


def _scored_penalty(penalty: Penalty, algorithm: str) -> Penalty:
    """The penalty the learning objective counts: none for OMP, whose codes have a fixed number of
    atoms (the objective is then half the squared error), else the coding penalty."""
    return Penalty.make("l0", 0.0) if algorithm == "omp" else penalty


def _check_coding(algorithm, n_nonzero_coefs, n_atoms: int, n_features: int) -> int | None:
    algorithm = check_choice("algorithm", algorithm, ALGORITHMS)
    if algorithm != "omp":
        if n_nonzero_coefs is not None:
            raise ValueError(
                "n_nonzero_coefs is for algorithm='omp'; with 'fista' the penalty sets the sparsity"
            )
        return None
    if n_nonzero_coefs is None:  # scikit-learn's default for OMP
        return max(1, min(n_atoms, n_features // 10))
    count = check_int("n_nonzero_coefs", n_nonzero_coefs, minimum=1)
    if count > n_atoms:
        raise ValueError(f"n_nonzero_coefs must be <= the number of atoms {n_atoms}, got {count}")
    return count


def _coding_work(n_samples: int, n_atoms: int, n_features: int) -> float:
    """Flops of one FISTA iteration (for the thread count, factorkit._threads)."""
    return 2.0 * n_samples * n_atoms * (n_atoms + n_features)


def sparse_encode(
    X,
    dictionary,
    *,
    penalty: str = "l1",
    alpha: float = 1.0,
    penalty_params: dict | None = None,
    positive: bool = False,
    algorithm: str = "fista",
    n_nonzero_coefs: int | None = None,
    init=None,
    max_iter: int = 1000,
    tol: float = 1e-4,
    device: str = "cpu",
) -> np.ndarray:
    """Codes ``Z`` (n_samples x n_atoms) of ``X`` (n_samples x n_features) in ``dictionary``
    (n_atoms x n_features): FISTA on ``0.5 ||x - z D||^2 + alpha h(z)`` or OMP (module docstring).

    ``init``: starting codes for FISTA (a warm start). Float32 input gives float32 codes.
    """
    return SparseCoder(
        dictionary, penalty=penalty, alpha=alpha, penalty_params=penalty_params, positive_code=positive,
        algorithm=algorithm, n_nonzero_coefs=n_nonzero_coefs, max_iter=max_iter, tol=tol, device=device,
    )._codes(X, init=init)  # fmt: skip


class LearnedAtomsMixin:
    """What every estimator with learned atoms ``components_`` (one per row) shares: the
    reconstruction ``codes @ components_``, feature names per atom, float32 kept float32."""

    def inverse_transform(self, X) -> np.ndarray:
        """``codes @ components_`` (BSC: the noise-free mean of ``x`` given binary ``s``)."""
        check_is_fitted(self)
        return np.asarray(X) @ self.components_

    @property
    def _n_features_out(self) -> int:
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class _CodingMixin:
    """The penalty check shared by :class:`SparseCoder` and :class:`DictionaryLearning`."""

    def _penalty(self) -> Penalty:
        if not isinstance(self.positive_code, bool | np.bool_):
            raise TypeError(f"positive_code must be a bool, got {type(self.positive_code).__name__}")
        return Penalty.make(self.penalty, self.alpha, self.penalty_params, self.positive_code)


class SparseCoder(_CodingMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Sparse codes in a fixed dictionary (scikit-learn's ``SparseCoder``, with the penalties of
    :data:`PENALTIES` by FISTA, or OMP).

    Parameters
    ----------
    dictionary : array (n_atoms, n_features)
        The atoms as rows (used as given: not normalized).
    penalty : str, one of :data:`PENALTIES`
    alpha : float
        The penalty's weight (scikit-learn's ``transform_alpha`` for ``'l1'``).
    penalty_params : dict, optional
        Shape parameters: ``q`` for ``'lq'`` (in [0, 1)), ``eps`` for ``'log'``, ``gamma`` for
        ``'mcp'``, ``a`` for ``'scad'`` (defaults in :data:`PENALTY_PARAMS`).
    positive_code : bool
        Constrain the codes to ``z >= 0``.
    algorithm : {'fista', 'omp'}
    n_nonzero_coefs : int, optional
        OMP's atoms per sample (default ``max(1, n_features // 10)``, as scikit-learn).
    max_iter, tol : FISTA's iteration cap and relative-change tolerance.
    device : str

    Examples
    --------
    >>> import numpy as np
    >>> D = np.eye(3)
    >>> SparseCoder(D, penalty="l0", alpha=0.5).transform(np.array([[2.0, 0.5, -1.5]]))
    array([[ 2. ,  0. , -1.5]])
    """

    def __init__(
        self,
        dictionary,
        *,
        penalty: str = "l1",
        alpha: float = 1.0,
        penalty_params: dict | None = None,
        positive_code: bool = False,
        algorithm: str = "fista",
        n_nonzero_coefs: int | None = None,
        max_iter: int = 1000,
        tol: float = 1e-4,
        device: str = "cpu",
    ) -> None:
        self.dictionary = dictionary
        self.penalty = penalty
        self.alpha = alpha
        self.penalty_params = penalty_params
        self.positive_code = positive_code
        self.algorithm = algorithm
        self.n_nonzero_coefs = n_nonzero_coefs
        self.max_iter = max_iter
        self.tol = tol
        self.device = device

    def _precision(self) -> tuple[int, float]:
        return check_int("max_iter", self.max_iter), check_float("tol", self.tol, nonnegative=True)

    def _dictionary(self) -> np.ndarray:
        D = np.asarray(self.dictionary)
        if D.ndim != 2 or D.shape[0] < 1 or D.shape[1] < 1:
            raise ValueError(
                f"dictionary must be a 2-D array (n_atoms >= 1, n_features >= 1), got shape {D.shape}"
            )
        if not np.issubdtype(D.dtype, np.floating) and not np.issubdtype(D.dtype, np.integer):
            raise TypeError(f"dictionary must hold real numbers, got dtype {D.dtype}")
        if not np.isfinite(D).all():
            raise ValueError("dictionary contains NaN or inf")
        return D

    def fit(self, X, y=None) -> SparseCoder:
        """Check ``X`` against the dictionary (nothing is learned)."""
        self._checked(X, reset=True)
        return self

    def _checked(self, X, reset: bool):
        """``X`` validated against the dictionary, the dictionary, the penalty and OMP's count."""
        D = self._dictionary()
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=reset)
        if X.shape[1] != D.shape[1]:
            raise ValueError(f"X has {X.shape[1]} features but the dictionary has {D.shape[1]}")
        penalty = self._penalty()
        return X, D, penalty, _check_coding(self.algorithm, self.n_nonzero_coefs, D.shape[0], D.shape[1])

    def _codes(self, X, init=None) -> np.ndarray:
        X, D, penalty, count = self._checked(X, reset=not hasattr(self, "n_features_in_"))
        device = resolve_device(self.device)
        X_t = as_tensor(X, device)
        D_t = as_tensor(D.astype(X.dtype, copy=False), device)
        Z0 = None
        if init is not None:
            Z0 = np.asarray(init, dtype=X.dtype)
            if Z0.shape != (X.shape[0], D.shape[0]):
                raise ValueError(f"init must have shape {(X.shape[0], D.shape[0])}, got {Z0.shape}")
            Z0 = as_tensor(Z0, device)
        with torch.inference_mode():
            codes, _ = _encode(X_t, D_t, penalty, self.algorithm, count, Z0, *self._precision())
        return codes.cpu().numpy()

    def transform(self, X) -> np.ndarray:
        """The codes of ``X`` (n_samples x n_atoms)."""
        return self._codes(X)

    def inverse_transform(self, X) -> np.ndarray:
        """``codes @ dictionary``."""
        return np.asarray(X) @ self._dictionary()

    @property
    def _n_features_out(self) -> int:
        return self._dictionary().shape[0]

    @property
    def n_components_(self) -> int:
        return self._dictionary().shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class DictionaryLearning(
    _CodingMixin, LearnedAtomsMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Dictionary learning ``X ~ Z D`` with sparse codes ``Z`` and unit-norm atoms (rows of ``D``).

    Full-batch alternating minimization or online mini-batches (Mairal et al. 2010); codes by FISTA
    with any penalty of :data:`PENALTIES`, or OMP (see the module docstring).

    Parameters
    ----------
    n_components : int or None
        The number of atoms ``K`` (``None``: ``n_features``); ``K > n_features`` is overcomplete.
    penalty, alpha, penalty_params, positive_code, algorithm, n_nonzero_coefs
        The coding, as in :class:`SparseCoder` (used by ``fit`` and ``transform`` alike).
    batch_size : int, 'auto' or None
        Samples per mini-batch (online learning); ``None``, or at least ``n_samples``: full batch.
        ``'auto'``: full batch up to :data:`FULL_BATCH_UP_TO` samples, else 1024 (online learning
        from random atoms stalls on small sets, where a full pass is cheap: see ``tol``).
    init : {'auto', 'data', 'l1'} or array (K, n_features)
        The starting atoms. ``'data'``: random samples of ``X``, normalized. ``'l1'``: those, then
        a first learning run under the l1 penalty with the same dead zone (the largest input the
        penalty's prox sets to 0; for OMP, ``alpha``): the non-convex penalties lock in the supports
        of their first codes, and from random atoms they stall far from the planted dictionary
        (``tests/test_sparse_coding.py`` shows both). ``'auto'``: ``'l1'`` for every penalty but
        l1 with FISTA, ``'data'`` otherwise. An array: those atoms, normalized.
    max_iter : int
        Passes over the data (epochs) online; alternating iterations in full batch.
    tol : float or None
        ``None``: 1e-3 online, 1e-7 full batch (looser full-batch tolerances stop planted problems
        with atoms still migrating: at 1e-3, two of four seeds stop with an atom at cosine 0.8).
        Online: stop once an epoch moves the atoms by at most ``tol`` in root mean square
        (``||D_end - D_start||_F / sqrt(K)``). scikit-learn reads ``||dD||_F / K`` after every
        mini-batch, which stops a 20-atom problem after 26 steps with atoms at 0.5 cosine from the
        planted ones, where a whole epoch's move is still large. Full batch: once the objective
        decreases by less than ``tol`` relative.
    max_no_improvement : int or None
        Online: stop after this many mini-batches without improving the exponentially weighted
        batch objective, after the first epoch (scikit-learn's rule; ``None`` turns it off).
    code_max_iter, code_tol : FISTA's iteration cap and tolerance per coding while learning
        (inexact, warm-started where possible: what the defaults reach against scikit-learn, in
        time and objective, is in ``benchmarks/bench_dictionary.py``).
    transform_max_iter, transform_tol : the same for :meth:`transform` and the codes
        :meth:`fit_transform` returns.
    random_state : int, RandomState or None
        Seeds the initial atoms (random samples of ``X``, normalized), the mini-batch order and
        the replacement of unused atoms.
    device : str
    verbose : int
        Print the objective every iteration or epoch when > 0.

    Attributes
    ----------
    components_ : (K, n_features) array, the atoms, each of unit norm.
    n_iter_ : int, iterations (full batch) or epochs begun (online), warm-up included.
    n_steps_ : int, dictionary updates made, warm-up included.
    objective_ : float, the final objective (full batch: over ``X``; online: its weighted batch estimate).
    history_ : list of dict per iteration or epoch: ``phase`` (``'l1 warm-up'`` or ``'fit'``),
        ``iteration``, ``objective``, ``time``; each phase's last entry has ``stopped``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> atoms = rng.normal(size=(8, 16)); atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    >>> codes = rng.normal(size=(500, 8)) * (rng.random((500, 8)) < 0.2)
    >>> model = DictionaryLearning(8, penalty="l0", alpha=0.01, random_state=0).fit(codes @ atoms)
    >>> model.components_.shape
    (8, 16)
    """

    def __init__(
        self,
        n_components: int | None = None,
        *,
        penalty: str = "l1",
        alpha: float = 1.0,
        penalty_params: dict | None = None,
        positive_code: bool = False,
        algorithm: str = "fista",
        n_nonzero_coefs: int | None = None,
        batch_size: int | str | None = "auto",
        init="auto",
        max_iter: int = 100,
        tol: float | None = None,
        max_no_improvement: int | None = 10,
        code_max_iter: int = 25,
        code_tol: float = 1e-3,
        transform_max_iter: int = 1000,
        transform_tol: float = 1e-4,
        random_state=0,
        device: str = "cpu",
        verbose: int = 0,
    ) -> None:
        self.n_components = n_components
        self.penalty = penalty
        self.alpha = alpha
        self.penalty_params = penalty_params
        self.positive_code = positive_code
        self.algorithm = algorithm
        self.n_nonzero_coefs = n_nonzero_coefs
        self.batch_size = batch_size
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.code_max_iter = code_max_iter
        self.code_tol = code_tol
        self.transform_max_iter = transform_max_iter
        self.transform_tol = transform_tol
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _precision(self) -> tuple[int, float]:
        """FISTA's cap and tolerance while learning."""
        return check_int("code_max_iter", self.code_max_iter), check_float(
            "code_tol", self.code_tol, nonnegative=True
        )

    def _check_params(self, n_samples: int, n_features: int) -> tuple[Penalty, int, int | None, int | None]:
        n_atoms = n_features if self.n_components is None else check_int("n_components", self.n_components)
        penalty = self._penalty()
        count = _check_coding(self.algorithm, self.n_nonzero_coefs, n_atoms, n_features)
        check_int("max_iter", self.max_iter, minimum=1)
        if self.tol is not None:
            check_float("tol", self.tol, nonnegative=True)
        self._precision()
        check_int("verbose", self.verbose, minimum=0)
        if isinstance(self.batch_size, str):
            check_choice("batch_size", self.batch_size, ("auto",))
            batch = None if n_samples <= FULL_BATCH_UP_TO else 1024
        else:
            batch = None if self.batch_size is None else check_int("batch_size", self.batch_size, minimum=1)
        check_int("transform_max_iter", self.transform_max_iter, minimum=1)
        check_float("transform_tol", self.transform_tol, nonnegative=True)
        if self.max_no_improvement is not None:
            check_int("max_no_improvement", self.max_no_improvement, minimum=1)
        if batch is not None and batch >= n_samples:
            batch = None
        return penalty, n_atoms, count, batch

    def fit(self, X, y=None) -> DictionaryLearning:
        """Learn the atoms from ``X`` (n_samples x n_features)."""
        self._fit(X, codes=False)
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        """Learn the atoms and return the codes of ``X`` in them (as :meth:`transform` would)."""
        return self._fit(X, codes=True)

    def _fit(self, X, codes: bool) -> np.ndarray | None:
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        penalty, n_atoms, count, batch = self._check_params(*X.shape)
        device = resolve_device(self.device)
        generator = torch.Generator().manual_seed(seed_of(self.random_state))
        X_t = as_tensor(X, device)
        self.history_, self._started = [], time.perf_counter()
        self.n_iter_ = self.n_steps_ = 0
        with torch.inference_mode():
            D, warm_up = self._initial_atoms(X_t, n_atoms, penalty, generator)
            Z = None
            if warm_up is not None:  # the non-convex penalties start from the l1 dictionary
                D, Z = self._learn(X_t, D, warm_up, None, batch, generator, "l1 warm-up")
            D, Z = self._learn(X_t, D, penalty, count, batch, generator, "fit", Z)
            if codes:
                Z, _ = self._transform_codes(X_t, D, penalty, count, Z)
        self.components_ = D.cpu().numpy()
        del self._started
        return Z.cpu().numpy() if codes else None

    def _initial_atoms(self, X: torch.Tensor, n_atoms: int, penalty: Penalty, generator: torch.Generator):
        """The starting atoms and the l1 penalty of the warm-up (None without one)."""
        init = self.init
        if not isinstance(init, str):
            D = np.asarray(init)
            if D.shape != (n_atoms, X.shape[1]):
                raise ValueError(
                    f"init must be 'auto', 'data', 'l1' or an array of shape {(n_atoms, X.shape[1])}"
                )
            if not np.isfinite(D).all() or (np.linalg.norm(D, axis=1) == 0).any():
                raise ValueError("init must be finite with no all-zero atom")
            D = torch.as_tensor(D, dtype=X.dtype, device=X.device)
            return D / D.norm(dim=1, keepdim=True), None
        init = check_choice("init", init, INITS)
        if init == "auto":
            init = "data" if penalty.name == "l1" or self.algorithm == "omp" else "l1"
        rows = torch.randint(X.shape[0], (n_atoms,), generator=generator).to(X.device)
        D = X[rows].clone()
        norms = D.norm(dim=1, keepdim=True)
        noise = torch.randn(D.shape, generator=generator, dtype=D.dtype).to(D.device)
        D = torch.where(norms > 0, D, noise)  # an all-zero sample cannot be an atom
        D = D / D.norm(dim=1, keepdim=True)
        if init == "data":
            return D, None
        zone = penalty.dead_zone() if self.algorithm == "fista" else penalty.alpha
        return D, Penalty.make("l1", zone, None, penalty.nonnegative)

    def _learn(self, X, D, penalty, count, batch, generator, phase, Z=None):
        if batch is None:
            return self._full_batch(X, D, penalty, count, generator, phase, Z)
        return self._online(X, D, penalty, count, batch, generator, phase), None

    def _record(self, phase: str, iteration: int, value: float) -> None:
        elapsed = time.perf_counter() - self._started
        self.history_.append({"phase": phase, "iteration": iteration, "objective": value, "time": elapsed})
        if self.verbose:
            print(f"[DictionaryLearning] {phase} {iteration}: objective {value:.6g}")

    def _full_batch(self, X, D, penalty, count, generator, phase, Z=None):
        algorithm = self.algorithm if phase == "fit" else "fista"
        scored = _scored_penalty(penalty, algorithm)
        previous, stopped = math.inf, "max_iter"
        tol = FULL_BATCH_TOL if self.tol is None else self.tol
        for iteration in range(1, self.max_iter + 1):
            Z, _ = _encode(X, D, penalty, algorithm, count, Z, *self._precision())
            D = update_dictionary(D, Z.T @ Z, Z.T @ X, X, generator)
            value = objective(X, Z, D, scored)
            self._record(phase, iteration, value)
            if previous - value <= tol * abs(value):
                stopped = "tol"
                break
            previous = value
        self.history_[-1]["stopped"] = stopped
        self.n_iter_ += iteration
        self.n_steps_ += iteration
        self.objective_ = value
        return D, Z

    def _online(self, X, D, penalty, count, batch, generator, phase):
        algorithm = self.algorithm if phase == "fit" else "fista"
        scored = _scored_penalty(penalty, algorithm)
        n_samples, n_atoms = X.shape[0], D.shape[0]
        A = torch.zeros(n_atoms, n_atoms, dtype=X.dtype, device=X.device)
        B = torch.zeros(n_atoms, X.shape[1], dtype=X.dtype, device=X.device)
        step, smoothed, best, no_improvement, stopped = 0, None, math.inf, 0, "max_iter"
        cost = math.nan
        weight = min(batch / (n_samples + 1), 1.0)
        tol = ONLINE_TOL if self.tol is None else self.tol
        for epoch in range(1, self.max_iter + 1):
            order = torch.randperm(n_samples, generator=generator).to(X.device)
            at_start = D
            for start in range(0, n_samples - batch + 1, batch):  # whole batches only
                Xb = X[order[start : start + batch]]
                Zb, _ = _encode(Xb, D, penalty, algorithm, count, None, *self._precision())
                # Mairal et al. (2010), section 3.4: past statistics forgotten as theta grows
                theta = (step + 1) * batch if step < batch - 1 else batch**2 + step + 1 - batch
                beta = (theta + 1 - batch) / (theta + 1)
                A.mul_(beta).add_(Zb.T @ Zb, alpha=1 / batch)
                B.mul_(beta).add_(Zb.T @ Xb, alpha=1 / batch)
                cost = objective(Xb, Zb, D, scored)
                D = update_dictionary(D, A, B, Xb, generator)
                step += 1
                # the first epoch (or 100 steps) only warms the average
                if step <= min(100, n_samples / batch):
                    continue
                smoothed = cost if smoothed is None else smoothed * (1 - weight) + cost * weight
                if smoothed < best:
                    best, no_improvement = smoothed, 0
                else:
                    no_improvement += 1
                    if self.max_no_improvement is not None and no_improvement >= self.max_no_improvement:
                        stopped = "max_no_improvement"
                        break
            moved = float((D - at_start).norm()) / math.sqrt(n_atoms)
            self._record(phase, epoch, cost if smoothed is None else smoothed)
            self.history_[-1]["moved"] = moved
            if stopped == "max_iter" and tol > 0 and moved <= tol:
                stopped = "tol"
            if stopped != "max_iter":
                break
        self.history_[-1]["stopped"] = stopped
        self.n_iter_ += epoch
        self.n_steps_ += step
        self.objective_ = self.history_[-1]["objective"]
        return D

    def transform(self, X) -> np.ndarray:
        """The codes of ``X`` in the learned atoms, with the fitted penalty or OMP."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        penalty, _, count, _ = self._check_params(*X.shape)
        D = as_tensor(self.components_.astype(X.dtype, copy=False), resolve_device(self.device))
        with torch.inference_mode():
            Z, _ = self._transform_codes(as_tensor(X, D.device), D, penalty, count)
        return Z.cpu().numpy()

    def _transform_codes(self, X, D, penalty, count, Z0=None):
        return _encode(X, D, penalty, self.algorithm, count, Z0, self.transform_max_iter, self.transform_tol)


def atoms_grid(components, patch_shape: tuple[int, int] | None = None, *, gap: int = 1) -> np.ndarray:
    """The atoms tiled as one grey image: each atom (a row of ``components``) reshaped to
    ``patch_shape`` (default: square), scaled to [0, 1] by its own largest magnitude (0.5 = zero),
    in a near-square grid with ``gap`` black pixels between tiles (and black in unused cells)."""
    atoms = np.asarray(components, dtype=np.float64)
    if atoms.ndim != 2:
        raise ValueError(f"components must be 2-D (atoms as rows), got shape {atoms.shape}")
    if patch_shape is None:
        side = math.isqrt(atoms.shape[1])
        if side * side != atoms.shape[1]:
            raise ValueError(f"atoms of {atoms.shape[1]} features are not square: pass patch_shape")
        patch_shape = (side, side)
    rows_p, cols_p = patch_shape
    if rows_p * cols_p != atoms.shape[1]:
        raise ValueError(f"patch_shape {patch_shape} does not hold {atoms.shape[1]} features")
    columns = math.ceil(math.sqrt(atoms.shape[0]))
    rows = math.ceil(atoms.shape[0] / columns)
    image = np.zeros((rows * (rows_p + gap) - gap, columns * (cols_p + gap) - gap))
    scale = np.abs(atoms).max(axis=1)
    for index, (atom, peak) in enumerate(zip(atoms, scale, strict=True)):
        r, c = divmod(index, columns)
        tile = 0.5 + 0.5 * atom.reshape(patch_shape) / (peak if peak > 0 else 1.0)
        image[
            r * (rows_p + gap) : r * (rows_p + gap) + rows_p, c * (cols_p + gap) : c * (cols_p + gap) + cols_p
        ] = tile
    return image


def save_atoms_image(components, path, patch_shape: tuple[int, int] | None = None, *, zoom: int = 4) -> None:
    """Write :func:`atoms_grid` as a PNG, each pixel ``zoom`` x ``zoom``."""
    import matplotlib.pyplot as plt

    image = np.kron(atoms_grid(components, patch_shape), np.ones((zoom, zoom)))
    plt.imsave(path, image, cmap="gray", vmin=0.0, vmax=1.0)
