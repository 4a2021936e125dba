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

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from factorkit._params import (
    NONE,
    Anything,
    Boolean,
    Choice,
    Constant,
    Function,
    Integer,
    NotString,
    RandomState,
    Real,
    validate_params,
)
from factorkit._threads import threads_for
from factorkit._validation import resolve_device
from factorkit.methods._nmf_alternating import alternating_updates, decode_weights
from factorkit.methods._nmf_data import BETA_LOSSES, NMFData, beta_of
from factorkit.methods._nmf_init import INITS, initial_factors
from factorkit.methods._nmf_solvers import Penalties, fit_nmf

SOLVERS = ("hals", "mu", "alternating")


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
        error, or the divergence, plus the penalties) fell by at most ``tol`` times its current
        value over the last ten iterations (an iteration that no longer moves the fit is not paid
        for; scikit-learn's ``mu`` rule measures the fall against the first value, which stopped
        low-noise planted fits 20-40% above scikit-learn's error: ``benchmarks/held_out.py nmf``).
        At ``max_iter`` a ``ConvergenceWarning`` says so;
        ``history_[-1]['stopped']`` is ``'tol'``, ``'stalled'`` or ``'max_iter'``.
        (``'alternating'``: when ``A`` moved by less than ``tol`` relative to its norm.)
    random_state : None, int, numpy RandomState or Generator
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

    _parameters = {
        "n_components": NONE | Constant("auto") | Integer(),
        "solver": Choice(*SOLVERS),
        "beta_loss": Choice(*BETA_LOSSES) | Real(),
        "init": NONE | Choice(*INITS) | NotString(),  # arrays and (W, H) are checked with the data
        "alpha_W": Real(nonnegative=True),
        "alpha_H": Constant("same") | Real(nonnegative=True),
        "l1_ratio": Real(nonnegative=True, upper=1.0),
        "max_iter": Integer(),
        "tol": Real(nonnegative=True),
        "random_state": RandomState(),
        "device": Anything(),  # resolve_device names what it accepts
        "step": Real(positive=True, upper=1.0),
        "r": NONE | Real(positive=True),
        "alpha": NONE | Real(nonnegative=True),
        "decode": Choice("soft", "hard"),
        "project": Boolean(),
        "callback": NONE | Function(),
        "inner_sweeps": NONE | Integer(),
        "verbose": Boolean() | Integer(minimum=0),
    }

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
    def _check_data(self, data: NMFData) -> None:
        """The rules that tie parameters to each other or to the data (the single ones are in
        ``_parameters``, checked before the data is read)."""
        check_rank(self.n_components_, data.shape)
        beta = beta_of(self.beta_loss)
        if beta != 2 and self.solver != "mu":
            raise ValueError(f"beta_loss={self.beta_loss!r} needs solver='mu', got solver={self.solver!r}")
        if data.M is not None and self.solver == "alternating":
            raise ValueError(
                "solver='alternating' decodes whole samples and takes no mask; use 'hals' or 'mu'"
            )
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

    def _applies(self) -> dict:
        """Which parameters the solver uses (:func:`~factorkit._params.validate_params` refuses the rest)."""
        alternating = self.solver == "alternating"
        rules = {
            name: (alternating, "solver='alternating'")
            for name in ("step", "r", "alpha", "decode", "project")
        }
        rules |= {
            name: (not alternating, "solver='hals' or 'mu'") for name in ("alpha_W", "alpha_H", "l1_ratio")
        }
        rules["inner_sweeps"] = (self.solver == "hals", "solver='hals'")
        return rules

    def _penalties(self, shape) -> Penalties:
        """scikit-learn's regularization: ``alpha_W`` times n_features, ``alpha_H`` times n_samples."""
        n, m = shape
        alpha_H = self.alpha_W if self.alpha_H == "same" else self.alpha_H
        return Penalties(
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
        return int(self.n_components)

    def _solve(self, data: NMFData, W, H, update_H: bool, callback=None):
        return fit_nmf(
            data, W, H, solver=self.solver, beta=beta_of(self.beta_loss),
            penalties=self._penalties(data.shape), max_iter=self.max_iter, tol=self.tol,
            inner_sweeps_per_product=self.inner_sweeps, update_H=update_H, callback=callback,
            verbose=self.verbose,
        )  # fmt: skip

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
        complex and object data, feature counts); finiteness and signs are checked by
        :class:`~factorkit.methods._nmf_data.NMFData` (NaN is allowed at masked entries)."""
        return validate_data(
            self, X, accept_sparse="csr", dtype=[np.float64, np.float32], ensure_all_finite=False, reset=reset
        )

    def fit_transform(self, X, y=None, W=None, H=None, *, mask=None) -> np.ndarray:
        """Learn the model and return ``W`` (n_samples x k); ``W``, ``H`` as in :meth:`fit`."""
        validate_params(self)
        device = resolve_device(self.device)
        X = self._validate(X, reset=True)
        data = NMFData(X, mask, device, negative=self.solver == "alternating")
        self.n_components_ = self._resolve_components(data.shape[1], W, H)
        self._check_data(data)
        W, H = initial_factors(data, self.n_components_, self.init, self.random_state, device, W, H)
        alpha = None
        # threads by the size of an iteration, within the user's limits (factorkit._threads)
        with torch.inference_mode(), threads_for(4.0 * data.shape[0] * data.shape[1] * self.n_components_):
            if self.solver == "alternating":
                if data.sparse:
                    data = NMFData(data.X.to_dense().cpu().numpy(), None, device)
                A, alpha, iterations, history = alternating_updates(
                    data, H.T.contiguous(), step=self.step, r=self.r, alpha=self.alpha, decode=self.decode,
                    project=self.project, max_iter=self.max_iter, tol=self.tol, callback=self.callback,
                )  # fmt: skip
                H = A.T.contiguous()
                W = decode_weights(data.X, A, alpha, self.decode)
                error = history[-1]["error"]
            else:
                W, H, error, iterations, history = self._solve(data, W, H, True, self.callback)
        self.components_ = H.cpu().numpy()
        self.reconstruction_err_ = error
        self.n_iter_ = iterations
        self.history_ = history
        if alpha is not None:
            self.alpha_ = alpha
        return W.cpu().numpy()

    def transform(self, X, *, mask=None) -> np.ndarray:
        """``W`` for new samples with ``components_`` fixed (``'alternating'``: the decoder)."""
        check_is_fitted(self)
        device = resolve_device(self.device)
        X = self._validate(X, reset=False)
        data = NMFData(X, mask, device, negative=self.solver == "alternating")
        H = torch.from_numpy(self.components_).to(device, data.dtype)
        with torch.inference_mode(), threads_for(2.0 * data.shape[0] * data.shape[1] * self.n_components_):
            if self.solver == "alternating":
                dense = data.X.to_dense() if data.sparse else data.X
                return decode_weights(dense, H.T, self.alpha_, self.decode).cpu().numpy()
            avg = math.sqrt(max(data.mean, 0.0) / self.n_components_)
            W = torch.full((data.shape[0], self.n_components_), avg, dtype=data.dtype, device=device)
            W, _, _, _, _ = self._solve(data, W, H, update_H=False)  # the fit-only callback stays quiet
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
    validate_params(NMF(n_components, init=init, random_state=random_state))
    data = NMFData(X, None, torch.device("cpu"))
    check_rank(n_components, data.shape)
    W, H = initial_factors(data, n_components, init, random_state, torch.device("cpu"))
    return W.numpy(), H.numpy()


def check_rank(k: int, shape: tuple[int, int]) -> None:
    """``1 <= k <= min(shape)`` for a non-empty ``X`` of ``shape``, else a ``ValueError`` naming both."""
    if min(shape) == 0:
        raise ValueError(f"X must have at least one row and one column, got shape {tuple(shape)}")
    if k > min(shape):
        raise ValueError(
            f"n_components must be <= min(n_samples, n_features) = {min(shape)}, got {k} "
            f"(n_samples = {shape[0]}, n_features = {shape[1]})"
        )
