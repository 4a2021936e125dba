"""Empirical Bayes matrix factorization (Wang & Stephens, JMLR 2021; the flashier algorithm).

Model: ``X = L F^T + E``, ``E_ij ~ N(0, 1 / tau_ij)``, with ``l_ik ~ g_k^(l)`` and ``f_jk ~ g_k^(f)``
i.i.d., the priors ``g`` fitted from the data. A mean-field variational posterior
``q(L) q(F)`` is fitted by coordinate ascent on the evidence lower bound

    ELBO = E_q[log p(X | L, F, tau)] - sum_k [KL(q(l_k) || g_k^(l)) + KL(q(f_k) || g_k^(f))].

Updating the loadings of factor ``k`` with everything else fixed is an EBNM problem
(:mod:`factorkit.methods.ebnm`) on the pseudo-data

    x_i = s_i^2 sum_j tau_ij R^k_ij E[f_jk],     s_i^2 = 1 / sum_j tau_ij E[f_jk^2],

with ``R^k`` the residual without factor ``k``; for the exact posterior, ``-KL(q || g)`` equals the
EBNM log-likelihood minus ``E_q[log N(x | l, s^2)]``, so the ELBO needs first and second moments
only. ``tau`` (one value, one per row or column, or ``a_i b_j``) has a closed-form update (the
last by alternating two closed forms to the exact maximum). Every step
maximizes the ELBO over its block (EBNM never returns a worse prior than its start), so the
recorded ELBO never decreases.

Factors are added greedily (each initialised by the leading singular pair of the residual,
iterated to convergence) until a new factor is zero or does not raise the ELBO; then all factors
are refined together (backfitting). Missing entries (``mask`` False) drop out of every sum.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import validate_data

from factorkit._params import NONE, Anything, Boolean, Choice, Integer, RandomState, Real, validate_params
from factorkit.methods._common import seed_of
from factorkit.methods._ebmf_solver import fit_ebmf
from factorkit.methods.ebnm import PRIORS, ebnm
from factorkit.methods.ebnm_covariate import (
    ebnm_covariate_ash,
    ebnm_covariate_mlp,
    ebnm_covariate_point_normal,
)

VAR_TYPES = ("constant", "by_row", "by_column", "kronecker")


class EBMF(BaseEstimator):
    """Empirical Bayes matrix factorization (see the module docstring).

    Parameters
    ----------
    n_components : int
        Most factors to add.
    prior_loadings, prior_factors : str
        EBNM prior families (:data:`factorkit.methods.ebnm.PRIORS`).
    var_type : {'constant', 'by_row', 'by_column', 'kronecker'}, default 'constant'
        The noise precision: one value, one per row, one per column, or ``a_i b_j`` (a row and a
        column scale, flashr's Kronecker model; ``tau_`` is then the n x p array). Over the
        held-out family (``docs/guide/real-data.md``) ``'kronecker'`` is the one never worse than
        the column-means model on held-out entries (``'constant'`` loses twice, on
        column-standardized digits, to a factor built from a few outlying entries), but it is worse
        than ``'constant'`` on 23 of 106 problems (digits centred by 50%: its row and column scales
        absorb structure before any factor is added), so it is not the default.
    greedy, backfit : bool
    max_iter : int
        Most sweeps per factor (greedy) and over all factors (backfit).
    tol : float
        Stop when the ELBO rises by less than ``tol`` (absolute).
    random_state : None, int, numpy RandomState or Generator
        Seed of the power iteration that initialises each factor.

    Attributes
    ----------
    loadings_ (n, K), factors_ (p, K) : posterior means; ``n_components_`` : K found;
    ``tau_`` : precision(s); ``elbo_`` : final ELBO; ``elbo_history_`` : ELBO after every block update;
    ``elbo_segments_`` : where each greedy addition and the backfit start in ``elbo_history_``. The
    ELBO never decreases within a segment, and each accepted greedy segment ends above where the
    previous one ended; the first values of a greedy segment can lie below it, because a new
    factor's bound is only defined after its first update and starts from a rough initialisation.
    """

    _parameters = {
        "n_components": Integer(),
        "prior_loadings": Choice(*PRIORS),
        "prior_factors": Choice(*PRIORS),
        "var_type": Choice(*VAR_TYPES),
        "greedy": Boolean(),
        "backfit": Boolean(),
        "max_iter": Integer(),
        "tol": Real(nonnegative=True),
        "random_state": RandomState(),
    }

    def __init__(
        self,
        n_components: int = 10,
        prior_loadings: str = "point_normal",
        prior_factors: str = "point_normal",
        var_type: str = "constant",
        greedy: bool = True,
        backfit: bool = True,
        max_iter: int = 100,
        tol: float = 1e-6,
        random_state: int = 0,
    ) -> None:
        self.n_components = n_components
        self.prior_loadings = prior_loadings
        self.prior_factors = prior_factors
        self.var_type = var_type
        self.greedy = greedy
        self.backfit = backfit
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _check(self, X, mask):
        # scikit-learn's checks (2-D, numeric, dense: EBMF works on n x p arrays; NaN allowed where
        # masked, checked below)
        values = validate_data(self, X, dtype=np.float64, ensure_all_finite=False, reset=True)
        if mask is None:
            observed = np.ones(values.shape, dtype=bool)
        else:
            observed = np.asarray(mask)
            if observed.shape != values.shape:
                raise ValueError(f"mask must have the shape of X {values.shape}, got {observed.shape}")
            if observed.dtype != np.bool_ and not np.isin(observed, (0, 1)).all():
                raise ValueError("mask must be boolean (True where observed) or 0/1; got other values")
            observed = observed.astype(bool)
        if not np.isfinite(values[observed]).all():
            hint = "" if mask is not None else " (pass mask= to mark missing entries)"
            raise ValueError(f"X contains NaN or inf at observed entries{hint}")
        if not observed.any(1).all() or not observed.any(0).all():
            raise ValueError("every row and column of X needs at least one observed entry")
        return np.where(observed, values, 0.0), observed.astype(np.float64)

    def _solvers(self) -> dict:
        """The EBNM solver of each side: ``solver(x, s, g_init)``."""
        return {
            "l": lambda x, s, g: ebnm(x, s, self.prior_loadings, g_init=g),
            "f": lambda x, s, g: ebnm(x, s, self.prior_factors, g_init=g),
        }

    # ------------------------------------------------------------------ API
    def fit(self, X, y=None, *, mask=None) -> EBMF:
        """Fit ``X`` (n x p; ``mask`` True where observed)."""
        validate_params(self)
        X, M = self._check(X, mask)
        result = fit_ebmf(
            X, M, n_components=self.n_components, priors=(self.prior_loadings, self.prior_factors),
            var_type=self.var_type, greedy=self.greedy, backfit=self.backfit, max_iter=self.max_iter,
            tol=self.tol, rng=np.random.default_rng(seed_of(self.random_state)), solvers=self._solvers(),
        )  # fmt: skip
        post = result.posterior
        self.loadings_, self.factors_ = post.El, post.Ef
        self.loadings_sd_ = np.sqrt(np.maximum(post.El2 - post.El**2, 0.0))
        self.factors_sd_ = np.sqrt(np.maximum(post.Ef2 - post.Ef**2, 0.0))
        self.n_components_ = post.components
        self.n_features_in_ = X.shape[1]
        self.elbo_history_, self.elbo_segments_ = result.history, result.segments
        self.elbo_ = result.history[-1]
        # the precision as its model has it: one value, one per row, one per column, or every entry's
        tau = result.tau
        self.tau_ = {"constant": tau[0, 0], "by_row": tau[:, 0], "by_column": tau[0], "kronecker": tau}[
            self.var_type
        ]
        self.priors_loadings_, self.priors_factors_ = post.g_l, post.g_f
        return self

    def fitted(self) -> np.ndarray:
        """Posterior mean of ``L F^T``."""
        return self.loadings_ @ self.factors_.T


def _num_rows(X) -> int:
    shape = getattr(X, "shape", None)
    return shape[0] if shape is not None and len(shape) else len(X)


class CovariateEBMF(EBMF):
    """cEBMF: EBMF whose loadings prior depends on row covariates (Denault et al. 2025).

    Each factor's loadings get a prior that depends on the row's covariates:
    ``covariate_prior='point_normal'`` (a null weight logistic in the covariates,
    :func:`factorkit.methods.ebnm.ebnm_covariate_point_normal`) or ``'normal_scale_mixture'``
    (multinomial-logistic weights over the ash grid,
    :func:`factorkit.methods.ebnm.ebnm_covariate_ash`, with a ``ridge`` penalty on the covariate
    coefficients: unregularized it over-fits pure-noise covariates, +10% RMSE against EBMF with
    the ash prior on the tests' 300 x 100 simulation; with ``ridge=10`` +0.2%, and informative
    covariates then gain 6%):
    rows whose covariates say "this factor is active here" are shrunk less. The factors keep
    ``prior_factors``. With the point-normal model uninformative covariates cost little: the
    fitted ``beta`` then stays near zero and the prior is the plain point-normal one.

    ``covariate_model='mlp'`` replaces the linear (logistic / multinomial-logistic) map from
    covariates to prior weights by a small PyTorch network (``hidden`` tanh layers, L2
    ``weight_decay`` on its weights, :func:`factorkit.methods.ebnm.ebnm_covariate_mlp`), for
    covariate effects a linear predictor cannot express (say, a factor active only for covariates in
    a middle band).

    Parameters are those of :class:`EBMF` (``prior_loadings`` is replaced by the covariate
    prior), and ``ridge`` (default 10; the linear normal-scale-mixture model only), ``hidden``
    (default ``(16,)``) and ``weight_decay`` (default 3; the MLP only): each is refused by name
    where it does not apply. Pass ``row_covariates`` (n x d) to :meth:`fit`.
    """

    _parameters = {
        **{k: v for k, v in EBMF._parameters.items() if k != "prior_loadings"},
        "covariate_prior": Choice("point_normal", "normal_scale_mixture"),
        "ridge": NONE | Real(nonnegative=True),
        "covariate_model": Choice("linear", "mlp"),
        "hidden": NONE | Anything(),  # a tuple of layer widths, checked by ebnm_covariate_mlp
        "weight_decay": NONE | Real(nonnegative=True),
    }

    def __init__(
        self,
        n_components: int = 10,
        covariate_prior: str = "point_normal",
        ridge: float | None = None,
        covariate_model: str = "linear",
        hidden: tuple[int, ...] | None = None,
        weight_decay: float | None = None,
        prior_factors: str = "point_normal",
        var_type: str = "constant",
        greedy: bool = True,
        backfit: bool = True,
        max_iter: int = 100,
        tol: float = 1e-6,
        random_state: int = 0,
    ) -> None:
        # every parameter explicit and stored as given, so get_params and clone see them all
        self.n_components = n_components
        self.prior_factors = prior_factors
        self.var_type = var_type
        self.greedy = greedy
        self.backfit = backfit
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.covariate_prior = covariate_prior
        self.ridge = ridge
        self.covariate_model = covariate_model
        self.hidden = hidden
        self.weight_decay = weight_decay

    @property
    def prior_loadings(self) -> str:
        """The loadings' prior family: the covariate-moderated one."""
        return self.covariate_prior

    def _check_applies(self) -> None:
        """``ridge`` is the linear ash model's, ``hidden`` and ``weight_decay`` the MLP's: set where
        they do not apply, they are refused by name rather than silently ignored."""
        linear_ash = self.covariate_model == "linear" and self.covariate_prior == "normal_scale_mixture"
        if self.ridge is not None and not linear_ash:
            raise ValueError(
                "ridge applies to covariate_prior='normal_scale_mixture' with covariate_model='linear' only, "
                f"got covariate_prior={self.covariate_prior!r}, covariate_model={self.covariate_model!r}"
            )
        for name in ("hidden", "weight_decay"):
            if getattr(self, name) is not None and self.covariate_model != "mlp":
                raise ValueError(
                    f"{name} applies to covariate_model='mlp' only, got {self.covariate_model!r}"
                )

    def fit(self, X, y=None, *, mask=None, row_covariates=None) -> CovariateEBMF:
        validate_params(self)
        self._check_applies()
        if row_covariates is None:
            # no covariates: the covariate model with its intercept alone, i.e. EBMF's prior
            row_covariates = np.zeros((_num_rows(X), 0))
        Z = np.asarray(row_covariates)
        if not (np.issubdtype(Z.dtype, np.floating) or np.issubdtype(Z.dtype, np.integer)):
            raise TypeError(f"row_covariates must hold real numbers, got dtype {Z.dtype}")
        Z = Z.astype(np.float64)
        if Z.ndim == 1:
            Z = Z[:, None]
        n = _num_rows(X)
        if Z.ndim != 2 or Z.shape[0] != n:
            raise ValueError(f"row_covariates must have {n} rows (one per row of X), got shape {Z.shape}")
        if not np.isfinite(Z).all():
            raise ValueError("row_covariates contain NaN or inf")
        self.row_covariates_ = (Z - Z.mean(0)) / np.where(Z.std(0) > 0, Z.std(0), 1.0)
        super().fit(X, mask=mask)
        return self

    def _solvers(self) -> dict:
        solvers = super()._solvers()
        Z = self.row_covariates_
        if self.covariate_model == "mlp":
            hidden = (16,) if self.hidden is None else tuple(self.hidden)
            decay = 3.0 if self.weight_decay is None else self.weight_decay
            solvers["l"] = lambda x, s, g: ebnm_covariate_mlp(
                x, s, Z, g, prior=self.covariate_prior, hidden=hidden, weight_decay=decay,
                seed=seed_of(self.random_state),
                # warm-started updates move the prior little: a few L-BFGS steps each
                max_iter=10 if g is not None and "state" in g else 100,
            )  # fmt: skip
        elif self.covariate_prior == "point_normal":
            solvers["l"] = lambda x, s, g: ebnm_covariate_point_normal(x, s, Z, g)
        else:
            ridge = 10.0 if self.ridge is None else self.ridge
            solvers["l"] = lambda x, s, g: ebnm_covariate_ash(x, s, Z, g, ridge=ridge)
        return solvers
