"""EBMF's coordinate ascent as functions of explicit arguments (the maths in
:mod:`factorkit.methods.ebmf`): the variational posterior is a local work state, the estimators
keep only what they document."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from factorkit.methods.ebnm import expected_log_gaussian

NONNEGATIVE = ("point_exponential", "nonnegative_scale_mixture")
LOG_2PI = np.log(2 * np.pi)


@dataclass
class Posterior:
    """The mean-field posterior's moments and each side's fitted prior and ``-KL`` term."""

    El: np.ndarray
    El2: np.ndarray
    Ef: np.ndarray
    Ef2: np.ndarray
    g_l: list = field(default_factory=list)
    g_f: list = field(default_factory=list)
    neg_kl_l: list = field(default_factory=list)
    neg_kl_f: list = field(default_factory=list)

    @classmethod
    def empty(cls, n: int, p: int) -> Posterior:
        return cls(np.zeros((n, 0)), np.zeros((n, 0)), np.zeros((p, 0)), np.zeros((p, 0)))

    def copy(self) -> Posterior:
        return Posterior(
            *(np.copy(a) for a in (self.El, self.El2, self.Ef, self.Ef2)),
            *(list(a) for a in (self.g_l, self.g_f, self.neg_kl_l, self.neg_kl_f)),
        )

    @property
    def components(self) -> int:
        return self.El.shape[1]

    def expected_residual_sq(self, X, M) -> np.ndarray:
        fit = self.El @ self.Ef.T
        extra = self.El2 @ self.Ef2.T - (self.El**2) @ (self.Ef**2).T
        with np.errstate(over="ignore", invalid="ignore"):
            R2 = M * ((X - fit) ** 2 + extra)
        if not np.isfinite(R2).all():
            # every precision, ELBO and EBNM update downstream would be 0, inf or NaN
            raise FloatingPointError(
                "EBMF diverged: the expected squared residuals overflow float64 (the largest "
                f"observed |X| is {np.abs(X[M > 0]).max():.3g}); rescale X"
            )
        return R2

    def append(self, l0: np.ndarray, f0: np.ndarray) -> None:
        self.El = np.column_stack([self.El, l0])
        self.El2 = np.column_stack([self.El2, l0**2])
        self.Ef = np.column_stack([self.Ef, f0])
        self.Ef2 = np.column_stack([self.Ef2, f0**2])
        self.g_l.append(None)
        self.g_f.append(None)
        self.neg_kl_l.append(0.0)
        self.neg_kl_f.append(0.0)


KRONECKER_SWEEPS = 1000  # at most; the alternation stops once b moves by under 1e-12


def update_tau(R2: np.ndarray, M: np.ndarray, var_type: str) -> np.ndarray:
    """Closed-form precision(s) given the expected squared residuals ``R2`` (as an n x p array)."""
    floor = 1e-12
    if var_type == "constant":
        return np.full_like(R2, M.sum() / max(R2.sum(), floor))
    if var_type == "by_row":
        return np.repeat((M.sum(1) / np.maximum(R2.sum(1), floor))[:, None], R2.shape[1], 1)
    if var_type == "kronecker":
        # tau_ij = a_i b_j: the log-likelihood is concave in (log a, log b); alternating the two
        # closed forms (flashr's rule) is block-coordinate ascent to its maximum
        a, b = np.ones(R2.shape[0]), np.ones(R2.shape[1])
        S = R2 * M
        for _ in range(KRONECKER_SWEEPS):
            a = M.sum(1) / np.maximum(S @ b, floor)
            new = M.sum(0) / np.maximum(a @ S, floor)
            converged = np.allclose(new, b, rtol=1e-12, atol=0)
            b = new
            if converged:
                break
        return np.outer(a, b)
    return np.repeat((M.sum(0) / np.maximum(R2.sum(0), floor))[None, :], R2.shape[0], 0)


def elbo(post: Posterior, tau: np.ndarray, M: np.ndarray, R2: np.ndarray) -> float:
    T = tau * M
    loglik = 0.5 * float((M * (np.log(np.where(M > 0, tau, 1.0)) - LOG_2PI)).sum())
    loglik -= 0.5 * float((T * R2).sum())
    return loglik + float(np.sum(post.neg_kl_l) + np.sum(post.neg_kl_f))


@dataclass
class Fit:
    """What a run of :func:`fit_ebmf` leaves: the posterior, the precision, the ELBO trace."""

    posterior: Posterior
    tau: np.ndarray
    history: list
    segments: list


class _Ascent:
    """One EBMF run's coordinate ascent on ``X`` (zeros where unobserved) and the mask ``M``."""

    def __init__(self, X, M, var_type: str, solvers: dict[str, Callable]):
        self.X, self.M, self.var_type, self.solvers = X, M, var_type, solvers
        self.post = Posterior.empty(*X.shape)
        R2 = self.post.expected_residual_sq(X, M)
        self.tau = update_tau(R2, M, var_type)
        self.history = [elbo(self.post, self.tau, M, R2)]

    def update_side(self, k: int, side: str) -> bool:
        """EBNM update of loadings (``side='l'``) or factors of component ``k``; False if degenerate."""
        post, T = self.post, self.tau * self.M
        if side == "l":
            other, other2, data = post.Ef[:, k], post.Ef2[:, k], self.X
            fit = post.El @ post.Ef.T - np.outer(post.El[:, k], other)
            weights, mask = T, self.M
        else:
            other, other2, data = post.El[:, k], post.El2[:, k], self.X.T
            fit = post.Ef @ post.El.T - np.outer(post.Ef[:, k], other)
            weights, mask = T.T, self.M.T
        residual = mask * (data - fit)
        precision = weights @ other2
        if (precision <= 0).any():  # the other side is exactly zero: nothing to learn here
            return False
        s = 1 / np.sqrt(precision)
        x = (weights * residual) @ other / precision
        result = self.solvers[side](x, s, (post.g_l if side == "l" else post.g_f)[k])
        neg_kl = result.log_likelihood - expected_log_gaussian(x, s, result.mean, result.second_moment)
        if side == "l":
            post.El[:, k], post.El2[:, k], post.g_l[k], post.neg_kl_l[k] = (
                result.mean, result.second_moment, result.g, neg_kl
            )  # fmt: skip
        else:
            post.Ef[:, k], post.Ef2[:, k], post.g_f[k], post.neg_kl_f[k] = (
                result.mean, result.second_moment, result.g, neg_kl
            )  # fmt: skip
        return True

    def record(self, R2: np.ndarray) -> None:
        # a component's KL terms exist once both of its sides have had an EBNM update; before
        # that (right after initialisation) the bound is not defined and nothing is recorded
        if all(g is not None for g in self.post.g_l + self.post.g_f):
            self.history.append(elbo(self.post, self.tau, self.M, R2))

    def sweep(self, components) -> float:
        for k in components:
            for side in ("l", "f"):
                self.update_side(k, side)
                # tau does not enter the expected residuals: one R2 serves all three uses
                R2 = self.post.expected_residual_sq(self.X, self.M)
                self.record(R2)
                self.tau = update_tau(R2, self.M, self.var_type)
                self.record(R2)
        return self.history[-1]

    def converge(self, components, max_iter: int, tol: float, previous: float = -np.inf) -> None:
        for _ in range(max_iter):
            current = self.sweep(components)
            if current - previous < tol:
                return
            previous = current

    def add_component(self, rng, nonnegative: tuple[bool, bool]) -> None:
        """A new factor from the leading singular pair of the residual (power iteration)."""
        R = self.M * (self.X - self.post.El @ self.post.Ef.T)
        v = rng.standard_normal(self.X.shape[1])
        for _ in range(100):
            u = R @ v
            u /= max(np.linalg.norm(u), 1e-300)
            v = R.T @ u
        if u.sum() < 0:  # the sign is arbitrary: take the one with mostly positive loadings
            u, v = -u, -v
        scale = np.sqrt(max(np.linalg.norm(v), 1e-300))
        l0, f0 = u * scale, v / scale
        self.post.append(
            np.maximum(l0, 0.0) if nonnegative[0] else l0, np.maximum(f0, 0.0) if nonnegative[1] else f0
        )


def fit_ebmf(X, M, *, n_components: int, priors: tuple[str, str], var_type: str, greedy: bool, backfit: bool,
             max_iter: int, tol: float, rng, solvers: dict[str, Callable]) -> Fit:  # fmt: skip
    """Greedy additions (each kept only if it raises the ELBO), then backfitting.

    ``solvers``: the EBNM solver of each side, ``{'l': ..., 'f': ...}``, called as
    ``solver(x, s, g_init)``; ``priors``: the loadings' and factors' families (for the
    non-negative starts)."""
    run = _Ascent(X, M, var_type, solvers)
    segments = []
    nonnegative = (priors[0] in NONNEGATIVE, priors[1] in NONNEGATIVE)
    if greedy:
        for _ in range(n_components):
            before = run.history[-1]
            saved, saved_tau, length = run.post.copy(), run.tau.copy(), len(run.history)
            segments.append(length)
            run.add_component(rng, nonnegative)
            k = run.post.components - 1
            run.converge([k], max_iter, tol)
            zero = np.allclose(run.post.El[:, k], 0) or np.allclose(run.post.Ef[:, k], 0)
            if zero or run.history[-1] <= before + tol:
                # the new factor adds nothing: restore the model without it and stop
                run.post, run.tau = saved, saved_tau
                del run.history[length:]
                segments.pop()
                break
    if backfit and run.post.components:
        segments.append(len(run.history) - 1)
        run.converge(range(run.post.components), max_iter, tol, previous=run.history[-1])
    return Fit(run.post, run.tau, run.history, segments)
