"""Guess & Check with the Gaussian output layer integrated out.

For ``W = W_d F`` with ``F = s(W_{d-1} ... s(W_1))`` (``k x m'``) and the output layer ``W_d``
(``m x k``) i.i.d. ``N(0, s_d^2)``, the rows of ``W`` are i.i.d. ``N(0, s_d^2 G)`` given the hidden
layers, with ``G = F^T F`` (``m' x m'``). Every measurement ``<A_i, W>`` and every complement
coordinate ``<B_j, W>`` is then jointly Gaussian, with covariance

    C_ab = s_d^2 sum_r (O_a)_r^T G (O_b)_r = s_d^2 <O_a G, O_b>,

``O_a`` the ``m x m'`` matrix of functional ``a`` (``problems/sensing.py``'s stacked operator:
``A_i`` first, then the complement basis ``B_j``). So, given the hidden layers only through ``G``:

1. ``P(L_train <= eps | G) = P(||g - y||^2 <= n eps)``, ``g ~ N(0, Sigma_gg)``: a Gaussian ball
   probability (:func:`factorkit.fit.ball.log_ball_probability`, relative accuracy in the tail).
   ``V(eps) = E_G[P(accept | G)]``: an average over prior draws of the hidden layers, without
   rejection noise. At ``eps -> 0``, ``V / vol(ball) -> E_G[N(y; 0, Sigma_gg)]``.
2. The posterior: hidden layers weighted by ``P(accept | G)`` (at ``eps = 0``: by the density),
   ``g`` from ``N(0, Sigma_gg)`` restricted to the ball (exact rejection from the Gaussian, or from
   the Gaussian tilted at the saddlepoint: :meth:`OutputLayerIntegral.ball_draws`; at ``eps = 0``,
   ``g = y``), then ``W`` from its Gaussian law given ``g``
   (Matheron's rule: a draw of ``N(0, s_d^2 I x G)`` corrected by ``Omega A^T Sigma_gg^+ (g - A W)``).
   ``L_gen`` of each draw is exact, and its mean given ``(G, g)`` is a Gaussian quadratic:
   ``(||E[h | g] - h*||^2 + tr Cov(h | g)) / |B|`` over the complement coordinates ``h``, used for
   the Rao-Blackwellized posterior mean.
3. Depth makes the weights degenerate (they are densities of ``G``): then SMC over the hidden
   layers only, tempering ``log P(accept | G)`` with the pCN moves of :mod:`factorkit.fit.smc` on a
   smooth target (:mod:`factorkit.fit.marginal_sampler`).

The hidden layers may be Gaussian or uniform (they are sampled); the output layer must be
Gaussian and the prior not normalized (:func:`applies` says why not).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from factorkit.fit.ball import (
    log_ball_probability,
    log_ball_upper_bound,
    saddlepoint,
    split_spectrum,
)
from factorkit.fit.noise_path import log_noisy_density
from factorkit.fit.prior import Prior
from factorkit.models.deep import DeepFactorization, activation_name
from factorkit.problems.sensing import SensingProblem


def applies(model: DeepFactorization, prior: Prior, eps: float | None = None) -> str | None:
    """``None`` where the output layer can be integrated out (at ``eps``; ``None``: at every
    threshold, this module's Gaussian reduction), else why not (a sentence). A normalized prior
    has an exact reduction at ``eps = 0`` only (:mod:`factorkit.fit.normalized`)."""
    if prior.normalize:
        if eps == 0:
            return normalized_applies(model, prior)
        return (
            "a normalized prior rescales W to a fixed norm: the constraint then sees only the direction "
            "of W_d F, which is not Gaussian given the hidden layers (an exact reduction exists at "
            "eps = 0 only; use smc)"
        )
    if prior.base != "gaussian":
        return f"the output layer must be Gaussian to be integrated out, the prior is {prior.name!r}"
    return None


def normalized_applies(model: DeepFactorization, prior: Prior) -> str | None:
    """``None`` where the ``eps = 0`` reduction of :mod:`factorkit.fit.normalized` applies,
    else why not (a sentence)."""
    if not prior.normalize:
        return "the prior is not normalized (use the marginal sampler's Gaussian reduction)"
    if prior.base != "gaussian":
        return f"the output layer must be Gaussian, the prior is {prior.name!r}"
    if model.depth > 1 and activation_name(model.activation) == "relu":
        return "relu can zero a hidden unit, and K(F) is then singular (no density on the sphere)"
    if model.depth > 1 and model.width < model.m2:
        return f"width {model.width} < m' = {model.m2} makes K(F) singular (no density on the sphere)"
    return None


@dataclass
class Analysis:
    """What one batch of hidden-layer draws implies, per draw: the log-weight (``log P(accept |
    G)``, or the log density at ``eps = 0``) and, computed when first asked for, the covariances
    and the eigen-decomposition of ``Sigma_gg`` (``values``, ``vectors``, ``centre = U^T y``)."""

    gram: torch.Tensor  # (P, m', m')
    covariance: Callable[[torch.Tensor], torch.Tensor]  # gram -> the covariances (cov)
    y: torch.Tensor  # (n,)
    log_weight: np.ndarray  # (P,)
    screened: int = 0  # draws skipped by the Chernoff bound (log_weight -inf, see analyse)
    bound: np.ndarray | None = None  # (P,) Chernoff bounds on log_weight, where a floor asked for them
    _spectrum: tuple | None = None
    _cov: torch.Tensor | None = None

    @property
    def cov(self) -> torch.Tensor:
        """``(P, N, N)``: measurements then complement coordinates, computed when first asked for
        (the ``eps = 0`` weight by :class:`KroneckerDensity` never needs them)."""
        if self._cov is None:
            self._cov = self.covariance(self.gram)
        return self._cov

    def spectrum(self) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
        """``(values, vectors, centre)`` of ``Sigma_gg`` per draw (eigenvalues clamped at 0)."""
        if self._spectrum is None:
            n = self.y.numel()
            self._spectrum = eigen(self.cov[:, :n, :n], self.y)
        return self._spectrum

    @property
    def values(self) -> np.ndarray:
        return self.spectrum()[0]

    @property
    def vectors(self) -> torch.Tensor:
        return self.spectrum()[1]

    @property
    def centre(self) -> np.ndarray:
        return self.spectrum()[2]


def eigen(sigma: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """``(values, vectors, centre)`` per matrix of ``sigma``: its eigenvalues clamped at 0, its
    eigenvectors ``U`` and ``centre = U^T y``."""
    values, vectors = torch.linalg.eigh(sigma)
    centre = torch.einsum("pji,j->pi", vectors, y)
    return values.clamp_min(0.0).numpy(), vectors, centre.numpy()


PATIENT_ROUNDS = 64  # rounds of one proposal per waiting row before the proposals per round double
PROPOSAL_BATCH = 2**16  # most proposals of one round, all waiting rows together
MAX_BALL_PROPOSALS = 2**26  # proposals in all (seconds of work) before _tilted_rejection gives up

COVARIANCE_BASIS_LIMIT = 2**22
"""Most numbers of the basis that makes the covariance one matrix product (32 MB in float64;
``m = m' = 12`` fits, ``m = m' = 20`` does not and uses two products)."""

CHOLESKY_RTOL = 1e-8
"""Pivots of ``Sigma_gg``'s Cholesky factor below this times its largest diagonal entry send a
draw to the eigenvalue route of the ``eps = 0`` density (a margin of 100x over ``NULL_RTOL``)."""


def stacked_columns(columns: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The right-hand sides that whiten ``k`` matrices ``columns`` (``k x m x m'``) and ``x0``
    (``m x m'``) by one ``m' x m'`` factor ``R`` of ``F^T F``: every row of each, transposed, side by
    side (``m' x (k m + m)``); :func:`split_whitened` undoes the stacking after ``R^{-1}``."""
    k, m, m2 = columns.shape
    return torch.cat([columns.transpose(1, 2).permute(1, 0, 2).reshape(m2, k * m), x0.T], 1)


def split_whitened(white: torch.Tensor, k: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(basis, x0)``: ``R^{-1}`` times :func:`stacked_columns` (``P x m' x (k m + m)``) as ``k``
    whitened vectors and one per draw (``P x k x m m'``, ``P x m m'``), in the coordinates where
    ``vec`` of a matrix with rows of covariance ``R R^T`` is standard."""
    count, m2 = white.shape[0], white.shape[1]
    basis = white[:, :, : k * m].reshape(count, m2, k, m).permute(0, 2, 1, 3).reshape(count, k, m2 * m)
    return basis, white[:, :, k * m :].reshape(count, m2 * m)


class KroneckerDensity:
    """``log N(y; 0, Sigma_gg(G))`` from one ``m' x m'`` Cholesky factor of ``G = F^T F`` and one
    ``k x k`` (``k = m m' - n`` complement coordinates), never forming ``Sigma``.

    With ``T`` the functionals' matrix (``D x D``, ``D = m m'``: the measurements, then the
    complement basis; square and invertible when the measurements are independent), the pair
    ``(g, z)`` has covariance ``K = T (I_m (x) s^2 G) T^T``. So ``log |K| = 2 log |T| + m log |s^2
    G|``, and with ``X = T^{-1}``, ``x_0 = X (y, 0)`` and ``X_j`` its complement columns (as
    ``m x m'`` matrices), ``(y, z)^T K^{-1} (y, z) = |x_0 + sum_j z_j X_j|^2`` in the metric
    ``(I (x) s^2 G)^{-1}``. ``Sigma_gg`` is ``K``'s measurement block, hence

        y^T Sigma_gg^{-1} y = min_z |x_0 + sum_j z_j X_j|^2,   log |Sigma_gg| = log |K| + log |P|,

    ``P`` the Gram matrix of the whitened ``X_j`` (``(K^{-1})_zz``, whose inverse is the Schur
    complement of ``Sigma_gg`` in ``K``). The minimum is a least-squares residual, computed as the
    residual itself after the normal equations' solve (its error is second order in theirs: no
    cancellation of ``|x_0|^2`` against ``b^T P^{-1} b`` where ``G`` is ill-conditioned). ``X`` is
    ``T``'s inverse as computed, not the transposed basis: a complement basis built in float32 is
    orthonormal to 1e-7 only. Draws whose factor fails or has a pivot below :data:`CHOLESKY_RTOL`
    of ``G``'s largest diagonal entry are left to ``Sigma``'s route (``good`` says which)."""

    def __init__(self, functionals: torch.Tensor, y: torch.Tensor, scale: float):
        count, m, m2 = functionals.shape
        D, n = m * m2, y.numel()
        if count != D:
            raise ValueError(f"the functionals must be a basis of the {D} matrix entries, got {count}")
        T = functionals.reshape(D, D).to(torch.float64)
        X = torch.linalg.inv(T)
        self.k, self.m, self.n, self.D = D - n, m, n, D
        self.rhs = stacked_columns(
            X[:, n:].T.reshape(D - n, m, m2), (X[:, :n] @ y.to(torch.float64)).reshape(m, m2)
        )
        self.scale2 = scale**2
        log_det_T = float(torch.linalg.slogdet(T)[1])
        self.constant = -0.5 * (n * math.log(2 * math.pi) + 2 * log_det_T + D * math.log(self.scale2))

    @classmethod
    def where_faster(
        cls, functionals: torch.Tensor, y: torch.Tensor, scale: float
    ) -> KroneckerDensity | None:
        """The route where the measurements are a basis's first ``n`` functionals and it is the
        clearly faster: ``2 k <= n``. At ``k = 3``, ``n = 22`` it is 4.4-4.7x ``Sigma``'s Cholesky
        with its covariances; at ``k = 10``, ``n = 15`` 1.1-1.7x there and 0.9-1.0x in a first
        probe: not taken (``benchmarks/bench_marginal_density.py``)."""
        count, m, m2 = functionals.shape
        k = m * m2 - y.numel()
        return cls(functionals, y, scale) if count == m * m2 and 2 * k <= y.numel() else None

    def log_density(self, gram: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """``(log N(y; 0, Sigma_gg), good)`` per draw of ``gram`` (``P x m' x m'``, float64);
        entries where ``good`` is false are left unset."""
        count = gram.shape[0]
        root, info = torch.linalg.cholesky_ex(gram)
        pivots = root.diagonal(dim1=1, dim2=2).square()
        good = (info == 0) & (pivots.amin(1) > CHOLESKY_RTOL * gram.diagonal(dim1=1, dim2=2).amax(1))
        out = np.empty(count)
        if not bool(good.any()):
            return out, good
        everyone = bool(good.all())
        root = root if everyone else root[good]
        basis, x0 = split_whitened(
            torch.linalg.solve_triangular(root, self.rhs.expand(root.shape[0], -1, -1), upper=False),
            self.k,
            self.m,
        )
        log_det = 2 * self.m * root.diagonal(dim1=1, dim2=2).log().sum(1)  # m log |G|
        if self.k:
            P = basis @ basis.transpose(1, 2)
            factor, _ = torch.linalg.cholesky_ex(P)  # independent X_j, G positive definite: so is P
            z = torch.cholesky_solve((basis @ x0[..., None]), factor)
            x0 = x0 - (basis.transpose(1, 2) @ z)[..., 0]
            log_det = (
                log_det + 2 * factor.diagonal(dim1=1, dim2=2).log().sum(1) - self.k * math.log(self.scale2)
            )
        value = self.constant - 0.5 * (log_det + x0.square().sum(1) / self.scale2)
        out[good.numpy()] = value.numpy()
        return out, good


class OutputLayerIntegral:
    """The Gaussian output layer of ``model`` under ``prior``, integrated out on ``problem``."""

    def __init__(self, problem: SensingProblem, model: DeepFactorization, prior: Prior, eps: float):
        reason = applies(model, prior)
        if reason is not None:
            raise ValueError(f"sampler='marginal' does not apply: {reason}")
        self.problem, self.model, self.prior, self.eps = problem, model, prior, eps
        self.n = problem.y.numel()
        self.scale = prior.scales(model)[-1]
        m, m2 = problem.shape
        operator = problem.operator.to(torch.float64)  # (m m', N)
        self.functionals = operator.T.reshape(-1, m, m2)  # (N, m, m'): A_i, then B_j
        self.targets = problem.targets.to(torch.float64)
        self.y = self.targets[: self.n]
        self.h_star = self.targets[self.n :]
        self.radius2 = self.n * eps
        # the covariances' one-product basis, where it is small enough (covariance)
        self._basis = self._covariance_basis() if self._basis_size() <= COVARIANCE_BASIS_LIMIT else None
        self.kronecker = KroneckerDensity.where_faster(self.functionals, self.y, self.scale)
        """The ``eps = 0`` weight without ``Sigma`` where that is faster (``None``: by ``Sigma``)."""
        self.work = {"draws": 0, "exact": 0, "ruben": 0, "contour": 0, "blocks": 0}
        """What this integral has computed: hidden-layer draws analysed, exact ball probabilities,
        and their inner-loop passes (:func:`~factorkit.fit.ball.log_ball_probability`'s ``work``):
        counts, so a cost model built on them is the same on every machine."""

    def covariance(self, gram: torch.Tensor) -> torch.Tensor:
        """``C = s_d^2 <O_a G, O_b>`` for every pair of functionals, per draw (``P, N, N``).

        ``C`` is linear in ``G``: ``C_ab = sum_{d <= c} G_dc T_dc,ab`` with ``T_dc = O^T_a O_b``'s
        ``(d, c)`` and ``(c, d)`` entries summed (``G`` is symmetric). Where that basis is small
        (:data:`COVARIANCE_BASIS_LIMIT` numbers) ``C`` is one matrix product of ``G``'s upper
        triangle with it: 4-6x the two products below (3.9-6.0x over two runs) at ``N = 25``, ``m = m' = 5``
        (``benchmarks/bench_marginal_density.py``)."""
        if self._basis is not None:
            upper, basis = self._basis
            count = self.functionals.shape[0]
            return self.scale**2 * torch.matmul(gram[:, upper[0], upper[1]], basis).reshape(-1, count, count)
        O = self.functionals  # (N, m, m')
        count, m, m2 = O.shape
        # O_a G stacked as one (N m, m') matrix times each G, then <., O_b> as one product (2.4x
        # the two einsums at N = 25, m = m' = 5)
        OG = torch.matmul(O.reshape(count * m, m2), gram).reshape(gram.shape[0], count, m * m2)
        return self.scale**2 * torch.matmul(OG, O.reshape(count, m * m2).T)

    def _basis_size(self) -> int:
        count, _, m2 = self.functionals.shape
        return m2 * (m2 + 1) // 2 * count * count

    def _covariance_basis(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``G``'s upper-triangle indices and the matrix (``m'(m'+1)/2 x N^2``) that maps its entries
        there to ``<O_a G, O_b> / s_d^2`` (:meth:`covariance`)."""
        O = self.functionals
        count, _, m2 = O.shape
        T = torch.einsum("ard,brc->dcab", O, O)  # T[d, c, a, b] = (O_a^T O_b)[d, c]
        upper = torch.triu_indices(m2, m2)
        basis = T[upper[0], upper[1]] + T[upper[1], upper[0]]
        diagonal = upper[0] == upper[1]
        basis[diagonal] = T[upper[0][diagonal], upper[0][diagonal]]  # counted once
        return upper, basis.reshape(upper.shape[1], count * count)

    def analyse(
        self,
        gram: torch.Tensor,
        floor: np.ndarray | float | None = None,
        log_weight: np.ndarray | None = None,
    ) -> Analysis:
        """The covariances of every draw and its log-weight (the eigen-decomposition of
        ``Sigma_gg`` where that needs it, and on demand).

        ``floor`` (per draw, or one number): draws whose Chernoff bound
        (:func:`~factorkit.fit.ball.log_ball_upper_bound`) lies below it are not computed and get
        ``-inf``; callers pass a floor only where such draws cannot matter (``analysis.screened``
        counts them). At ``eps = 0`` the density is cheap and always computed (:meth:`_density`).
        ``log_weight``: the draws' log-weights, already known (a resampled batch): not computed again.
        """
        gram = gram.to(torch.float64)
        self.work["draws"] += gram.shape[0]
        analysis = Analysis(gram, self.covariance, self.y, np.full(gram.shape[0], -np.inf))
        if log_weight is not None:
            analysis.log_weight = np.asarray(log_weight, dtype=np.float64)
        elif self.eps == 0:
            analysis.log_weight = self._density(analysis)
        elif floor is None:
            analysis.log_weight = self.log_ball(analysis.values, analysis.centre)
        else:
            analysis.bound = log_ball_upper_bound(analysis.values, analysis.centre, self.radius2)
            return self.reweigh(analysis, floor)
        return analysis

    def log_ball(self, values: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """:func:`~factorkit.fit.ball.log_ball_probability` at this integral's radius, counted in
        :attr:`work`."""
        self.work["exact"] += values.shape[0]
        return log_ball_probability(values, centre, self.radius2, work=self.work)

    def _density(self, analysis: Analysis, noise: float = 0.0, route: str = "auto") -> np.ndarray:
        """``log N(y; 0, Sigma_gg + noise I)`` per draw. At ``noise = 0`` by :class:`KroneckerDensity`
        where :attr:`kronecker` is set (``route='auto'``), its failed draws by the route below.
        Otherwise (``route='sigma'``) by a Cholesky factor of ``Sigma_gg`` (a tenth of an
        eigen-decomposition's time at n = 22); draws whose factor fails or has a pivot below
        :data:`CHOLESKY_RTOL` of the largest diagonal entry go through the eigenvalues
        (:func:`~factorkit.fit.noise_path.log_noisy_density`: a singular ``Sigma`` exactly). Where
        the two could differ, ``Sigma`` is within ``NULL_RTOL`` of singular and the weight is ~0 both
        ways. ``noise``: the measurement noise of :mod:`factorkit.fit.noise_path` (0: the ``eps = 0``
        weight)."""
        if not noise and route == "auto" and self.kronecker is not None:
            out, good = self.kronecker.log_density(analysis.gram)
            if not bool(good.all()):  # the covariances of the others only
                rest = ~good
                subset = Analysis(
                    analysis.gram[rest], self.covariance, self.y, np.full(int(rest.sum()), -np.inf)
                )
                out[rest.numpy()] = self._density(subset, route="sigma")
            return out
        n = self.n
        plain = analysis.cov[:, :n, :n]
        sigma = plain + noise * torch.eye(n, dtype=plain.dtype) if noise else plain
        factor, info = torch.linalg.cholesky_ex(sigma)
        pivots = factor.diagonal(dim1=1, dim2=2).square()
        scale = sigma.diagonal(dim1=1, dim2=2).amax(1)
        good = (info == 0) & (pivots.amin(1) > CHOLESKY_RTOL * scale)
        out = np.empty(sigma.shape[0])
        everyone = bool(good.all())
        if bool(good.any()):
            root = factor if everyone else factor[good]
            white = torch.linalg.solve_triangular(
                root, self.y.expand(root.shape[0], n).unsqueeze(-1), upper=False
            )
            logdet = 2 * root.diagonal(dim1=1, dim2=2).log().sum(1)
            out[good.numpy()] = (
                -0.5 * (n * math.log(2 * math.pi) + logdet + white.square().sum((1, 2)))
            ).numpy()
        if not everyone:  # Sigma's own eigenvalues, shifted by the noise: no null space then
            values, _, centre = eigen(plain[~good], self.y)
            out[(~good).numpy()] = log_noisy_density(values, centre, noise)
        return out

    def log_noisy_density(self, gram: torch.Tensor, noise: float) -> np.ndarray:
        """``log N(y; 0, Sigma_gg + noise I)`` per hidden-layer draw (``eps = 0`` only; ``noise = 0``
        is the weight itself): the targets of :func:`~factorkit.fit.noise_path.anneal_noise`."""
        if self.eps != 0:
            raise ValueError(
                f"the noise path targets the eps = 0 posterior, this integral has eps = {self.eps}"
            )
        gram = gram.to(torch.float64)
        self.work["draws"] += gram.shape[0]
        analysis = Analysis(gram, self.covariance, self.y, np.full(gram.shape[0], -np.inf))
        return self._density(analysis, noise)

    def sigma_spectrum(self, gram: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(values, centre)`` of ``Sigma_gg`` per hidden-layer draw (:func:`eigen`)."""
        gram = gram.to(torch.float64)
        values, _, centre = eigen(self.covariance(gram)[:, : self.n, : self.n], self.y)
        return values, centre

    def reweigh(self, analysis: Analysis, floor: np.ndarray | float) -> Analysis:
        """``analysis`` (with its Chernoff bounds) weighed at a new ``floor``: the exact log-weight
        of every draw whose bound reaches it, ``-inf`` for the others (``screened`` counts them)."""
        wanted = analysis.bound >= floor
        analysis.log_weight = np.full(len(analysis.log_weight), -np.inf)
        if wanted.any():
            analysis.log_weight[wanted] = self.log_ball(analysis.values[wanted], analysis.centre[wanted])
        analysis.screened = int((~wanted).sum())
        return analysis

    # ------------------------------------------------------------------ given the hidden layers
    def sample_g(self, analysis: Analysis, rows: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        """``g ~ N(0, Sigma_gg)`` restricted to the ball, one per entry of ``rows`` (indices into
        ``analysis``; repeats share the work). Exact (module docstring); ``g = y`` at ``eps = 0``."""
        if self.eps == 0:
            return self.y.expand(len(rows), -1).clone()
        rows = np.asarray(rows)
        unique, inverse = np.unique(rows, return_inverse=True)
        lam, c, radius2, tilt = self._ball_setup(analysis, unique)
        lam, c, radius2, tilt = lam[inverse], c[inverse], radius2[inverse], tilt[inverse]
        z = self._tilted_rejection(lam, c, radius2, tilt, generator)
        return torch.einsum("pij,pj->pi", analysis.vectors[torch.from_numpy(rows)], z)

    def _ball_setup(self, analysis: Analysis, rows: np.ndarray):
        """Per row (eigenbasis, every coordinate kept; null ones have ``lam = c = 0``): the
        eigenvalues, the centre, the radius left once the null space's share is taken and the tilt
        ``s`` (0: the plain Gaussian)."""
        positive, centre, c0, _ = split_spectrum(analysis.values[rows], analysis.centre[rows])
        radius2 = self.radius2 - c0
        log_p = analysis.log_weight[rows]
        if (~(np.isfinite(log_p) & (radius2 > 0))).any():
            raise ValueError(
                "this hidden-layer draw puts no probability on the ball: it has no posterior weight"
            )
        tilted = (log_p < math.log(0.1)) & (radius2 < (positive + centre**2).sum(1))
        tilt = np.zeros(len(rows))
        if tilted.any():  # null coordinates (lam = c = 0) add nothing to the cumulants
            tilt[tilted] = saddlepoint(positive[tilted], centre[tilted] ** 2, radius2[tilted])
        return positive, centre, radius2, tilt

    @staticmethod
    def _tilted_rejection(lam, c, radius2, tilt, generator) -> torch.Tensor:
        """One exact draw per row of ``z ~ N(0, diag(lam))`` restricted to ``||z - c||^2 <= radius2``,
        by the tilted proposal of :meth:`ball_draws`; rows still waiting are proposed again
        together (vectorized across rows). A row still waiting after :data:`PATIENT_ROUNDS` rounds
        gets twice as many proposals a round as the last (the first accepted in order is kept:
        still exact), so a low acceptance costs few rounds; after :data:`MAX_BALL_PROPOSALS` in all
        it raises ``RuntimeError`` instead of running on (the tilt's acceptance is about
        ``P / Chernoff bound``, which a very spread spectrum can make astronomically small)."""
        null = lam <= 0
        precision = 1.0 / np.where(null, 1.0, lam) - 2.0 * tilt[:, None]
        mean = torch.from_numpy(np.where(null, 0.0, -2.0 * tilt[:, None] * c / precision))
        sd = torch.from_numpy(np.where(null, 0.0, 1.0 / np.sqrt(precision)))
        c_t, r2, s = torch.from_numpy(c), torch.from_numpy(radius2), torch.from_numpy(tilt)
        out = torch.empty_like(mean)
        waiting = torch.arange(len(lam))
        rounds = proposed = 0
        per_row = 1
        while waiting.numel():
            if proposed >= MAX_BALL_PROPOSALS:
                raise RuntimeError(
                    f"drawing g inside the ball: {waiting.numel()} of {len(lam)} draws still waiting after "
                    f"{proposed} tilted proposals (a spectrum so spread that Chernoff's bound lies far "
                    f"above the ball's probability); sampler='smc' samples this posterior without it"
                )
            count = waiting.numel()
            z = mean[waiting, None] + sd[waiting, None] * torch.randn(
                count, per_row, mean.shape[1], generator=generator, dtype=torch.float64
            )
            distance = ((z - c_t[waiting, None]) ** 2).sum(2)
            u = torch.rand(count, per_row, generator=generator, dtype=torch.float64)
            # inside the ball, kept with probability exp(-s (d - t)) <= 1 (s <= 0, d <= t)
            bound = r2[waiting, None]
            keep = (distance <= bound) & (u.log() <= -s[waiting, None] * (distance - bound))
            done = keep.any(1)
            first = keep.to(torch.int8).argmax(1)  # the first accepted proposal of each row
            rows = done.nonzero().squeeze(1)
            out[waiting[rows]] = z[rows, first[rows]]
            waiting = waiting[~done]
            rounds, proposed = rounds + 1, proposed + per_row * count
            if rounds >= PATIENT_ROUNDS:
                per_row = max(1, min(2 * per_row, PROPOSAL_BATCH // max(waiting.numel(), 1)))
        return out

    def ball_draws(
        self, analysis: Analysis, row: int, count: int, generator: torch.Generator
    ) -> torch.Tensor:
        """``count`` exact draws of ``g`` given draw ``row``'s hidden layers, inside the ball.

        In the eigenbasis ``z ~ N(0, Lambda)`` on the range of ``Sigma_gg``, the ball is
        ``||z - c||^2 <= t``. Where the ball holds a fair share of the Gaussian (``P >= 0.1``) the
        Gaussian itself is proposed and kept inside. Otherwise the proposal is the Gaussian tilted
        by ``exp(s ||z - c||^2)`` at the saddlepoint ``s < 0`` of the ball's probability
        (coordinates independent: precision ``1 / lambda_j - 2 s``, mean pulled towards ``c_j``), and a
        proposal is kept with probability ``exp(-s (||z - c||^2 - t))`` inside the ball. The ratio of
        the target to the proposal is ``M(s) exp(-s ||z - c||^2) <= M(s) exp(-s t)`` on the ball,
        Chernoff's bound, so this is exact rejection sampling accepting ``P / bound`` of the
        proposals: a few percent or more, whatever the spectrum (the uniform law on the ball, the
        other natural proposal, accepted ``1e-4`` and less for spread spectra: measured, dropped).
        """
        return self.sample_g(analysis, np.full(count, row), generator)

    def conditional_gen_loss(self, analysis: Analysis, rows: np.ndarray, g: torch.Tensor) -> torch.Tensor:
        """``E[L_gen | G, g]`` per row: the complement coordinates' Gaussian law given ``g``."""
        n = self.n
        cov = analysis.cov[torch.from_numpy(rows)]
        pinv = self._pinv(analysis, rows)
        Shg = cov[:, n:, :n]
        mean = torch.einsum("phg,pgk,pk->ph", Shg, pinv, g)
        conditional = cov[:, n:, n:] - Shg @ pinv @ Shg.transpose(1, 2)
        trace = conditional.diagonal(dim1=1, dim2=2).sum(1).clamp_min(0.0)
        count = max(cov.shape[1] - n, 1)
        return (((mean - self.h_star) ** 2).sum(1) + trace) / count

    def prior_gen_loss(self, analysis: Analysis) -> torch.Tensor:
        """``E[L_gen | G]`` under the prior (no constraint): ``(||h*||^2 + tr C_hh) / |B|`` per draw."""
        n = self.n
        count = max(analysis.cov.shape[1] - n, 1)
        trace = analysis.cov[:, n:, n:].diagonal(dim1=1, dim2=2).sum(1)
        return (float((self.h_star**2).sum()) + trace) / count

    def _pinv(self, analysis: Analysis, rows: np.ndarray) -> torch.Tensor:
        positive, _, _, _ = split_spectrum(analysis.values[rows], analysis.centre[rows])
        inverse = torch.from_numpy(np.where(positive > 0, 1.0 / np.where(positive > 0, positive, 1.0), 0.0))
        U = analysis.vectors[torch.from_numpy(rows)]
        return U @ (inverse[:, :, None] * U.transpose(1, 2))

    def sample_W(self, analysis: Analysis, rows: np.ndarray, g: torch.Tensor, generator) -> torch.Tensor:
        """``W`` given ``(G, g)``: Matheron's rule on a draw of its Gaussian law given ``G``."""
        gram = analysis.gram[torch.from_numpy(rows)]
        values, basis = torch.linalg.eigh(gram)
        root = basis * values.clamp_min(0.0).sqrt()[:, None, :]  # root root^T = G
        m, m2 = self.problem.shape
        z = torch.randn(len(rows), m, m2, generator=generator, dtype=torch.float64)
        W0 = self.scale * z @ root.transpose(1, 2)
        A = self.functionals[: self.n]
        residual = g - torch.einsum("irc,prc->pi", A, W0)
        weights = torch.einsum("pij,pj->pi", self._pinv(analysis, rows), residual)
        # Omega A^T w = s_d^2 sum_i w_i A_i G
        correction = self.scale**2 * torch.einsum("pi,irc,pcd->prd", weights, A, gram)
        return W0 + correction
