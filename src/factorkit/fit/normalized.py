"""The interpolating posterior (``eps = 0``) of a normalized Gaussian prior, exactly.

A normalized prior draws ``G = W_d F`` (Gaussian output layer, hidden layers ``F``) and keeps
``W = c G / ||G||_F`` (``c = prior.target_norm``). Write ``w = vec(W)`` in the coordinates of the
measurements and of an orthonormal basis ``B`` of their complement: ``g = A(G)`` (``n`` numbers)
and ``z = B^T vec(G)`` (``k = m m' - n``); given ``F`` the pair ``(g, z)`` is Gaussian with the
covariance ``K(F)`` of :meth:`~factorkit.fit.marginal.OutputLayerIntegral.covariance`, and
``||G||^2 = q(g) + |z|^2`` with ``q(g) = g^T (A A^T)^{-1} g``. The measurements of ``W`` are
``h = c g / sqrt(q(g) + |z|^2)``.

**The reduction.** For a fixed ``z`` the map ``g -> h`` is a bijection onto ``{q(h) < c^2}``, with
inverse ``g = s h``, ``s = |z| / sqrt(c^2 - q(h))``, and Jacobian ``det(dg/dh) = s^n c^2 /
(c^2 - q(h))`` (``g = s h`` with ``s`` homogeneous of degree 0 in the direction: the matrix
determinant lemma and ``h . grad q = 2 q``). So the density of ``h`` at ``y`` is a closed form
given ``(F, z)``, and with ``z = r v`` the radius integrates out in closed form too
(``int r^{D-1} exp(-r^2 Q / 2) dr``, ``D = m m'``). What is left is the direction ``v`` on the
sphere ``S^{k-1}`` and the hidden layers:

    p(h = y) = c^2 rho^{-n-2} Gamma(D/2) / (2 pi^{D/2}) |S^{k-1}|
               E_F E_{v uniform} [ |K|^{-1/2} Q_v^{-D/2} ],
    Q_v = a_v^T K^{-1} a_v,   a_v = (y / rho, v),   rho^2 = c^2 - q(y).

``V(eps) / vol(ball of radius sqrt(n eps)) -> p(h = y)`` as ``eps -> 0``. The posterior draw that
``(F, v)`` stands for is ``W = A^+ y + rho B v``: it meets every measurement exactly, has norm
``c``, and its complement coordinates are ``rho v``, so ``L_gen = mean((rho v - B^T w*)^2)`` is
exact. At depth 1 (``G = W_1``, ``K`` proportional to the coordinates' Gram) ``Q_v`` does not
depend on ``v``: one number, no Monte Carlo (:func:`depth_one_log_density` checks it against
the coarea formula for a uniform direction).

Given ``F`` the direction's weight ``Q_v^{-D/2}`` (``D = m m'``) is concentrated near the
minimiser of ``Q_v`` on the sphere; :class:`Directions` integrates it by importance sampling
about that minimiser (gnomonic t proposal), ``64`` directions per hidden draw, and the hidden
layers are importance-weighted by that unbiased estimate, or moved with the directions' latents by
tempered SMC where those weights degenerate (exact: the extended target's hidden-layer marginal is
the posterior). Kish's ESS and the self-normalized standard error are reported as for the other
samplers. (A first version proposed ``v`` from the angular central Gaussian of ``z`` given ``F``,
:meth:`NormalizedInterpolation.log_weights`, still used at depth 1 where every direction weighs
the same: on the paper's problem it missed most of the mass, ``log p`` ~2 low; the slow test
``test_on_the_paper_problem_eps_zero_continues_the_smc_curve`` holds the sampler to subset
simulation extrapolated to ``eps = 0``.) At ``eps > 0`` the probability of the ball is an
``n``-dimensional integral of a non-Gaussian density (no
one-dimensional CDF); only ``eps = 0`` is built here.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from factorkit import _kernels
from factorkit.fit.hidden import HiddenLayers
from factorkit.fit.marginal import OutputLayerIntegral, split_whitened, stacked_columns
from factorkit.fit.marginal import normalized_applies as applies
from factorkit.fit.prior import Prior
from factorkit.fit.weights import (
    heavy_tail_checked,
    kish_ess,
    log_mean_exp,
    normalized_weights,
    pareto_k,
    run_record,
    systematic_resample,
    temper,
    tempered_runs,
    thin_svd,
)
from factorkit.problems.sensing import SensingProblem

# hidden-layer draws per batch of importance sampling
BATCH = 1024
# Newton steps on the secular equation of the direction's mode (quadratic convergence from the
# left: 40 leaves it at rounding level from any start the bound gives); they stop earlier once no
# draw's step exceeds MODE_TOLERANCE times its gap to P's lowest eigenvalue plus |lam|. The mode
# only centres the directions' proposal (their weights are exact for any centre); the contour of
# sphere_integral needs lam itself (its Q_lam is the minimum only at the root).
MODE_ITERATIONS = 40
MODE_TOLERANCE = 4 * torch.finfo(torch.float64).eps
# directions per hidden draw (Directions)
DIRECTIONS = 64


class NormalizedInterpolation:
    """``p(h = y | F, v)`` of a normalized Gaussian prior on ``problem`` (module docstring)."""

    def __init__(self, problem: SensingProblem, model, prior: Prior):
        reason = applies(model, prior)
        if reason is not None:
            raise ValueError(f"the normalized eps = 0 reduction does not apply: {reason}")
        problem = problem.to(device="cpu", dtype=torch.float64)
        self.problem, self.model, self.prior = problem, model, prior
        # the covariance of (g, z) given F is the Gaussian twin's (normalization comes after)
        self.integral = OutputLayerIntegral(problem, model, dataclasses.replace(prior, normalize=False), 0.0)
        self.n = n = problem.n
        D = problem.W_star.numel()
        if self.integral.functionals.shape[0] != D:
            raise ValueError(
                f"the measurements must be linearly independent: rank "
                f"{D - (self.integral.functionals.shape[0] - n)} of n = {n}"
            )
        self.D, self.k = D, D - n
        A = problem.A.reshape(n, D).to(torch.float64)
        self.gram_A = A @ A.T
        self.y = problem.y.to(torch.float64)
        c = prior.target_norm
        q = float(self.y @ torch.linalg.solve(self.gram_A, self.y))
        if q >= c**2:
            raise ValueError(
                f"no matrix of norm target_norm = {c:g} meets the measurements (the least-norm one has "
                f"norm {math.sqrt(q):.6g})"
            )
        self.rho = math.sqrt(c**2 - q)
        self.min_norm = torch.linalg.solve(self.gram_A, self.y) @ A  # A^+ y, flattened
        self.h_star = self.integral.h_star
        # the Kronecker form of K (log_weights): T, the rows of B, x = T^{-1} (y / rho, 0), and
        # the map vec(M) -> vec(K_zz / s^2) (K_zz[a, b] = s^2 sum_ij,l B_a[i, j] M[j, l] B_b[i, l])
        m, m2 = problem.shape
        self.scale2 = self.integral.scale**2
        self.log_det_T = float(torch.linalg.slogdet(self.integral.functionals.reshape(D, D))[1])
        self.basis = problem.complement.reshape(self.k, D).to(torch.float64)
        self.x_measured = (self.min_norm / self.rho).reshape(m, m2)
        rows = self.basis.reshape(self.k, m, m2)
        self.zz_map = self.scale2 * torch.einsum("aij,bil->jlab", rows, rows).reshape(m2 * m2, self.k**2)
        k = self.k
        self.constant = (
            2 * math.log(c)
            - (n + 2) * math.log(self.rho)
            + math.lgamma(D / 2)
            - math.log(2)
            - (D / 2) * math.log(math.pi)
            + math.log(2)
            + (k / 2) * math.log(math.pi)
            - math.lgamma(k / 2)
        )

    eps = 0.0  # the only threshold this reduction covers

    def log_weights(self, gram: torch.Tensor, xi: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """Log-weights of hidden-layer draws (``gram = F^T F``, ``P x m' x m'``) with standard
        normal ``xi`` (``P x k``) for their directions ``v = z / |z|``, ``z = chol(K_zz) xi``:
        ``exp`` of them averages to ``p(h = y)``. Returns them and ``v``.

        ``K`` is never formed: the rows of ``G`` are independent ``N(0, s^2 M)`` (``M = F^T F``), so
        ``vec(G)`` has covariance ``I_m (x) s^2 M`` and ``K = T (I_m (x) s^2 M) T^T`` with ``T`` the
        functionals' matrix: ``log |K| = 2 log |T| + m log |s^2 M|`` and ``Q_v = sum_i x_i^T (s^2
        M)^{-1} x_i`` over the rows ``x_i`` of ``X = T^{-1} a_v = A^+ y / rho + B v``, both from one
        ``m' x m'`` Cholesky factor; only ``K_zz`` (``k x k``, the proposal's) is formed, from
        ``M`` by one product (13-17x :func:`dense_log_weights` per weight,
        ``benchmarks/bench_normalized.py``)."""
        M = gram.to(torch.float64)
        count, k = len(M), self.k
        K_zz = (M.reshape(count, -1) @ self.zz_map).reshape(count, k, k)
        root_z, log_det_z, _ = _root(K_zz)
        z = (root_z @ xi[..., None])[..., 0]
        radius2 = z.square().sum(1)
        v = z / radius2.sqrt()[:, None]
        X = self.x_measured + (v @ self.basis).reshape(count, *self.problem.shape)
        root, log_det_M, failed = _root(M)
        Q = _solve_root(root, failed, X.transpose(1, 2)).square().sum((1, 2)) / self.scale2
        log_det = self.log_det_K(log_det_M)
        # target |K|^{-1/2} Q^{-D/2} over the proposal |K_zz|^{-1/2} (v^T K_zz^{-1} v)^{-k/2},
        # where v^T K_zz^{-1} v = |xi|^2 / |z|^2 (z = root_z xi)
        proposal = (xi.square().sum(1) / radius2).log()
        log_weight = -0.5 * log_det - 0.5 * self.D * Q.log() + 0.5 * log_det_z + 0.5 * k * proposal
        return log_weight.numpy() + self.constant, v

    def log_det_K(self, log_det_M: torch.Tensor) -> torch.Tensor:
        """``log |K|`` from ``log |F^T F|``: ``K = T (I_m (x) s^2 M) T^T``."""
        return 2 * self.log_det_T + self.problem.shape[0] * log_det_M + self.D * math.log(self.scale2)

    def prior_gen_loss(self, gram: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``L_gen`` of prior draws ``W = c G / ||G||`` (one per hidden-layer draw)."""
        root, _, _ = _root(self.integral.covariance(gram.to(torch.float64)))
        gz = (root @ torch.randn(len(gram), self.D, 1, generator=generator, dtype=torch.float64))[..., 0]
        g, z = gz[:, : self.n], gz[:, self.n :]
        q = (g * torch.linalg.solve(self.gram_A, g.T).T).sum(1)
        norm = (q + z.square().sum(1)).sqrt()[:, None]
        return (self.prior.target_norm * z / norm - self.h_star).square().mean(1)

    def matrices(self, v: torch.Tensor) -> torch.Tensor:
        """``W = A^+ y + rho B v`` for directions ``v`` (``P x k``): shape ``(P, m, m')``."""
        B = self.problem.complement.reshape(self.k, self.D).to(torch.float64)
        return (self.min_norm + self.rho * v @ B).reshape(-1, *self.problem.shape)

    def gen_loss(self, v: torch.Tensor) -> torch.Tensor:
        """Exact ``L_gen`` of ``W = A^+ y + rho B v`` (its complement coordinates are ``rho v``)."""
        return (self.rho * v - self.h_star).square().mean(1)


class Directions:
    """The direction's integral given the hidden layers, by importance sampling around its mode.

    Given ``F``, ``Q_v = c0 + 2 b.v + v^T P v`` on the sphere (``P, b, c0`` from the complement
    basis and ``x0 = A^+ y / rho`` whitened by ``s^2 F^T F``), and the direction's weight is
    ``Q_v^{-D/2}``: with ``D = m m'`` large it is concentrated near the minimiser ``v*`` of ``Q_v``,
    far more than the angular central Gaussian of ``z`` that :meth:`NormalizedInterpolation.log_weights`
    proposes from. Here ``v*`` solves the trust-region subproblem (``P``'s eigenvectors and Newton
    on the secular equation ``|(P - lambda I)^{-1} b| = 1`` from the left, Moré & Sorensen), and
    ``v = +-(v* + T u) / sqrt(1 + |u|^2)``: gnomonic coordinates about ``+-v*`` (each sign with
    probability 1/2, so each hemisphere is covered in full and the weights are exact; surface
    element ``(1 + |u|^2)^{-k/2} du``), ``u`` multivariate t with ``dof`` degrees of freedom at the
    Laplace precision ``D T^T (P - lambda* I) T / Q*``. ``count`` directions per hidden draw;
    their mean weight estimates the integral without bias, so a sampler over the hidden latents
    and these directions' latents together targets, in the hidden layers, exactly the posterior.
    (``benchmarks/explore_normalized_direction.py`` measures it against the older proposal.)"""

    def __init__(self, target: NormalizedInterpolation, count: int | None = None, dof: int = 1):
        self.target, self.count, self.dof = target, DIRECTIONS if count is None else count, dof
        m, m2 = target.problem.shape
        self.m, self.k, self.D = m, target.k, target.D
        rows = target.basis.reshape(self.k, m, m2)
        # the right-hand sides of the whitening: every basis row B_a^T, then x0^T (m' x (k m + m))
        self.rhs = stacked_columns(rows, target.x_measured)
        p = self.k - 1
        self.log_t = (
            math.lgamma((dof + p) / 2) - math.lgamma(dof / 2) - p / 2 * math.log(dof * math.pi)
        )  # the t density's constant
        self.log_sphere = math.log(2) + self.k / 2 * math.log(math.pi) - math.lgamma(self.k / 2)
        self.constant = target.constant - self.log_sphere + math.log(2)  # 2: the sign's probability

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [(self.count, self.k - 1), (self.count, self.dof), (self.count, 1)]

    def draw(self, n: int, generator: torch.Generator) -> list[torch.Tensor]:
        return [torch.randn(n, *shape, generator=generator, dtype=torch.float64) for shape in self.shapes]

    def _whitened(self, gram: torch.Tensor):
        """``(basis, x0, log |K|)``: the complement basis and ``A^+ y / rho`` whitened by
        ``s^2 F^T F``, so that ``Q_v = |x0 + basis^T v|^2``."""
        root, log_det_M, failed = _root(gram.to(torch.float64))
        white = _solve_root(root, failed, self.rhs.expand(len(gram), -1, -1)) / math.sqrt(self.target.scale2)
        return (*split_whitened(white, self.k, self.m), self.target.log_det_K(log_det_M))

    def _quadratic(self, gram: torch.Tensor):
        basis, x0, log_det = self._whitened(gram)
        P = basis @ basis.transpose(1, 2)
        b = (basis @ x0[..., None])[..., 0]
        return P, b, x0.square().sum(1), log_det

    @staticmethod
    def _mode(P: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _trust_region(*torch.linalg.eigh(P), b)[:2]

    def evaluate(self, gram: torch.Tensor, latent: list[torch.Tensor]):
        """``(log_weight, inner, v)``: per hidden draw the log of the mean weight of its directions
        (``exp`` averages to ``p(h = y)``, as :meth:`NormalizedInterpolation.log_weights`), the
        directions' own log-weights (``P x count``) and the directions (``P x count x k``)."""
        P, b, c0, log_det = self._quadratic(gram)
        v_star, lam = self._mode(P, b)
        k, dof = self.k, self.dof
        # Householder's reflection taking e_1 to v*: its last k - 1 columns span the tangent space
        w = v_star.clone()
        w[:, 0] -= 1
        w = w / w.norm(dim=1, keepdim=True).clamp(min=1e-300)
        tangent = (torch.eye(k, dtype=P.dtype) - 2 * w[:, :, None] * w[:, None, :])[:, :, 1:]
        q_star = c0 + 2 * (b * v_star).sum(1) + (v_star[:, None, :] @ P @ v_star[..., None])[:, 0, 0]
        shifted = P - lam[:, None, None] * torch.eye(k, dtype=P.dtype)
        precision = self.D * tangent.transpose(1, 2) @ shifted @ tangent / q_star[:, None, None]
        ridge = 1e-12 * precision.diagonal(dim1=1, dim2=2).amax(1)[:, None, None]
        chol, info = torch.linalg.cholesky_ex(precision + ridge * torch.eye(k - 1, dtype=P.dtype))
        if bool((info > 0).any()):  # a draw whose precision is not finite: the unit scale (still exact)
            chol[info > 0] = torch.eye(k - 1, dtype=P.dtype)
        normal, chi, sign = latent
        x = normal / (chi.square().sum(2, keepdim=True) / dof).sqrt()  # t_dof(0, I), P x count x (k-1)
        u = torch.linalg.solve_triangular(chol.transpose(1, 2), x.transpose(1, 2), upper=True).transpose(1, 2)
        stretch = 1 + u.square().sum(2)
        side = torch.where(sign > 0, 1.0, -1.0).to(P.dtype)
        v = side * (v_star[:, None, :] + u @ tangent.transpose(1, 2)) / stretch.sqrt()[..., None]
        Q = c0[:, None] + 2 * (v @ b[..., None])[..., 0] + ((v @ P) * v).sum(2)
        log_proposal = (
            self.log_t
            - (dof + k - 1) / 2 * torch.log1p(x.square().sum(2) / dof)
            + torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)[:, None]
            + k / 2 * torch.log(stretch)
        )
        inner = -0.5 * log_det[:, None] - 0.5 * self.D * Q.log() - log_proposal + self.constant
        log_weight = torch.logsumexp(inner, 1) - math.log(self.count)
        return log_weight.numpy(), inner, v

    def _integral(self, gram: torch.Tensor, mean: bool = False):
        """:func:`sphere_integral_least_squares` of the direction's weight given ``F``, and
        ``log |K|``."""
        basis, x0, log_det = self._whitened(gram)
        return sphere_integral_least_squares(basis, x0, self.D, mean), log_det

    def exact_log_weight(self, gram: torch.Tensor) -> torch.Tensor:
        """``log p(h = y | F)`` per hidden draw with the direction integrated in closed form
        (:func:`sphere_integral`): what :meth:`evaluate`'s mean weight estimates."""
        log_I, log_det = self._integral(gram)
        return self.target.constant - 0.5 * log_det + log_I - self.log_sphere

    def draw_given(self, gram: torch.Tensor, exact: torch.Tensor, generator: torch.Generator):
        """A direction for each hidden draw of a population that samples the hidden layers'
        posterior, and each draw's correction weight: ``count`` directions from the proposal, one
        kept in proportion to its weight, and the ratio of their mean weight to the exact one
        (``exact``: :meth:`exact_log_weight`). The ratio has mean 1 given ``F``, and the kept
        direction weighed by it is an exact draw of ``v`` given ``F``: ``E[ratio 1{v in A}] =
        P(v in A | F)`` (the same argument as :meth:`pick`'s). Returns the directions and the
        ratios (a population resampled by them samples ``(F, v)``)."""
        log_weight, inner, v = self.evaluate(gram, self.draw(len(gram), generator))
        share = torch.softmax(inner, 1)
        index = torch.multinomial(share, 1, generator=generator)[:, 0]
        return v[torch.arange(len(v)), index], np.exp(log_weight - exact.numpy())

    def pick(self, inner: torch.Tensor, v: torch.Tensor, gram: torch.Tensor, generator: torch.Generator):
        """One direction per hidden draw in proportion to its weight (with the hidden draw's
        weight, the mean of these, that is an exact draw of ``(F, v)``), and each draw's exact
        conditional mean of ``L_gen`` given its hidden layers (:meth:`conditional_gen_loss`)."""
        share = torch.softmax(inner, 1)
        index = torch.multinomial(share, 1, generator=generator)[:, 0]
        return v[torch.arange(len(v)), index], self.conditional_gen_loss(gram)

    def conditional_gen_loss(self, gram: torch.Tensor) -> torch.Tensor:
        """``E[L_gen | F]`` per hidden draw, exactly: ``L_gen = (rho^2 - 2 rho h*.v + |h*|^2) / k`` is
        affine in the direction (``|v| = 1``), and :func:`sphere_integral` gives the direction's
        mean under its weight ``Q_v^{-D/2}``. (The directions' weighted mean, used before, is a
        ratio estimator: biased at 64 directions, and far off where they miss the weight's mass.)"""
        (_, mean), _ = self._integral(gram, mean=True)
        target = self.target
        h_star = target.h_star.to(torch.float64)
        return (target.rho**2 + float(h_star.square().sum()) - 2 * target.rho * (mean @ h_star)) / self.k


def _trust_region(values: torch.Tensor, vectors: torch.Tensor, b: torch.Tensor | None,
                  c: torch.Tensor | None = None, margin: torch.Tensor | None = None):  # fmt: skip
    """The minimiser ``v*`` of ``v^T P v + 2 b.v`` on the unit sphere and its multiplier ``lam``
    (``P = vectors diag(values) vectors^T``): :meth:`Directions._mode`, also returning ``b`` in
    ``P``'s eigenbasis (``c``: given so, ``b`` unused). ``lam`` stays ``margin`` below the lowest
    eigenvalue (default ``1e-14`` of the largest: the absolute accuracy of ``eigh``'s values)."""
    if c is None:
        c = (vectors.transpose(1, 2) @ b[..., None])[..., 0]
    # the same arithmetic in NumPy where the kernels allow: ~15 Newton steps of a dozen small
    # operations each, where torch's per-call overhead was most of the time
    numpy = _kernels.numpy_path(values)
    xp = np if numpy else torch
    if numpy:
        values, vectors, c = values.numpy(), vectors.numpy(), c.numpy()
        margin = None if margin is None else margin.numpy()
    lowest, scale = values[:, 0], abs(values[:, -1])
    # |(P - lam)^{-1} b| <= 1 here: at or left of the root
    ceiling = lowest - (1e-14 * scale if margin is None else margin)
    c2 = c * c
    lam = ceiling - xp.sqrt(c2.sum(1))
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(MODE_ITERATIONS):
            gap = values - lam[:, None]
            inverse = 1 / gap
            terms = c2 * inverse * inverse
            s2, s3 = terms.sum(1), (terms * inverse).sum(1)
            root = 1 / xp.sqrt(s2)  # products, no powers: a general power was most of a step
            step = (root - 1) / (s3 * root * root * root)
            # b = 0 (s2 = 0): no root, the hard case below; the step is never finite there
            moved = xp.where(s2 > 0, xp.minimum(lam + step, ceiling), ceiling)
            # settled once no step exceeds rounding of the gap to the spectrum (which sets v*'s
            # accuracy) or of lam itself, not of the largest eigenvalue: on nearly singular F the
            # spectrum spans 15 decades
            settled = bool((abs(moved - lam) <= MODE_TOLERANCE * (abs(lowest - moved) + abs(moved))).all())
            lam = moved
            if settled:
                break
    d = -c / (values - lam[:, None])
    length2 = (d * d).sum(1)
    # the hard case: made up along the lowest eigenvector
    d[:, 0] = xp.where(length2 < 1, d[:, 0] + xp.sqrt(1 - xp.clip(length2, None, 1)), d[:, 0])
    v = (vectors @ d[..., None])[..., 0]
    v = v / xp.sqrt((v * v).sum(1))[:, None]
    if numpy:
        return torch.from_numpy(v), torch.from_numpy(lam), torch.from_numpy(c)
    return v, lam, c


CONTOUR_STEP = 0.2
"""Trapezoid step of :func:`sphere_integral`'s contour in ``t`` (``y = sigma sinh t``)."""
SADDLE_ITERATIONS = 16
"""Bisection steps for the contour's abscissa in ``asinh`` space (any point of the strip is exact;
near the saddle there is no cancellation: 12 already give every digit on the paper's draws)."""


def sphere_integral(values: torch.Tensor, vectors: torch.Tensor, b: torch.Tensor, c0: torch.Tensor, D: int,
                    mean: bool = False):  # fmt: skip
    """``log I`` per row, ``I = int_{S^{k-1}} Q_v^{-D/2} dsigma(v)`` over the unit sphere with
    ``Q_v = c0 + 2 b.v + v^T P v`` positive on it (``P = vectors diag(values) vectors^T``), by one
    contour integral; with ``mean``, also ``E[v]`` under the density ``Q_v^{-D/2} / I``.

    For any ``lam`` below ``P``'s eigenvalues, ``Q_v = Q_lam + (v - mu)^T (P - lam) (v - mu)`` on the
    sphere (``mu = -(P - lam)^{-1} b``, ``Q_lam = c0 + lam - b^T (P - lam)^{-1} b``; at the
    trust-region multiplier ``lam*`` of :func:`_trust_region`, ``Q_lam`` is ``Q``'s minimum). Write
    ``Q^{-D/2} = Gamma(D/2)^{-1} int s^{D/2 - 1} e^{-s Q} ds``; the sphere integral of the Gaussian
    kernel ``exp(-s (v - mu)^T (P - lam) (v - mu))`` is its total mass times twice the density at 1
    of ``|x|^2``, ``x ~ N(mu, (2 s (P - lam))^{-1})`` (Kume & Wood, Biometrika 92, 2005), which
    Levy's inversion of its moment generating function gives; with ``theta = s phi`` the integral
    over ``s`` is a Gamma integral, and

        I = 2 pi^{k/2} Gamma(n/2 + 1) / Gamma(D/2) (1 / 2 pi i) int_{c - i inf}^{c + i inf}
            prod_j (p_j - phi)^{-1/2} h(phi)^{-(n/2 + 1)} dphi,
        h(phi) = Q_lam - phi (sum_j mu_j^2 p_j / (p_j - phi) - 1),

    ``p_j`` the eigenvalues of ``P - lam``, ``mu_j`` ``mu``'s coordinates in its eigenbasis, ``n =
    D - k``; ``E[v_j] I`` is the same integral with the factor ``mu_j p_j / (p_j - phi)``. The line
    crosses the real axis at the saddle point of the integrand between the roots of ``h``
    (bisection), where it is real, positive and largest, so the trapezoid rule in ``y = sigma sinh
    t`` (``sigma`` the saddle's width) converges geometrically without cancellation. For a
    whitened least-squares problem (``P = basis basis^T``, ``b = basis x0``, ``c0 = |x0|^2``), use
    :func:`sphere_integral_least_squares`. Exact up to the rule's error (``tests/test_normalized.py``
    holds it to quadrature on the circle and to Monte Carlo on the sphere); no random numbers.
    """
    values, vectors, b = values.to(torch.float64), vectors.to(torch.float64), b.to(torch.float64)
    _, lam, c = _trust_region(values, vectors, b)
    p = values - lam[:, None]
    Q = c0.to(torch.float64) + lam - (c.square() / p).sum(1)
    return _sphere_contour(vectors, p, -c / p, Q, D, mean)


def sphere_integral_least_squares(basis: torch.Tensor, x0: torch.Tensor, D: int, mean: bool = False):
    """:func:`sphere_integral` for ``Q_v = |x0 + basis^T v|^2`` (``P = basis basis^T``, ``b = basis
    x0``, ``c0 = |x0|^2``), stable where ``basis`` is nearly singular. ``P``'s spectrum comes from the
    singular values of ``basis`` (:func:`~factorkit.fit.weights.thin_svd`: an SVD where they
    spread, its small values to ``eps S_max S_min``, not ``eigh(P)``'s ``eps S_max^2``), ``b`` in
    its eigenbasis as ``S (V^T x0)``, and ``Q_lam`` as ``|x0 + basis^T v_lam|^2 + lam (1 -
    |v_lam|^2)``, a residual: ``eigh(P)`` and ``c0 + lam - b^T (P - lam)^{-1} b`` lose every digit
    where ``F`` is nearly singular (``P``'s eigenvalues to 1e15: measured ``Q < 0``)."""
    basis, x0 = basis.to(torch.float64), x0.to(torch.float64)
    S, vectors, right = (x.flip(-1) for x in thin_svd(basis))  # ascending, as eigh's
    values = S.square()
    margin = 8 * torch.finfo(torch.float64).eps * S[:, -1] * S[:, 0] + 1e-300
    c = S * (x0[:, None, :] @ right)[:, 0]
    _, lam, c = _trust_region(values, vectors, None, c=c, margin=margin)
    p = values - lam[:, None]
    mu = -c / p
    v_lam = (vectors @ mu[..., None])[..., 0]
    residual = x0 + (v_lam[:, None, :] @ basis)[:, 0]
    Q = residual.square().sum(1) + lam * (1 - mu.square().sum(1))
    return _sphere_contour(vectors, p, mu, Q, D, mean)


def _derivatives(p, weight, Q, phi):
    """``h``, ``h'``, the gaps ``p_j - phi`` and ``sum_j w_j / (p_j - phi)^2`` at real ``phi``
    (``w_j = mu_j^2 p_j``; ``h(phi) = Q - phi (sum_j w_j / (p_j - phi) - 1)``)."""
    gap = p - phi[:, None]
    a0 = (weight / gap).sum(1)
    a1 = (weight / (gap * gap)).sum(1)
    return Q - phi * (a0 - 1), -(a0 - 1) - phi * a1, gap, a1


def _curvature(p, weight, Q, power, phi):
    """``d^2 log F / dphi^2`` at real ``phi``: the width of the line through ``phi``."""
    h, h1, gap, a1 = _derivatives(p, weight, Q, phi)
    inverse = 1 / gap
    h2 = -2 * a1 - 2 * phi * (weight * inverse**3).sum(1)
    return 0.5 * inverse.square().sum(1) - power * (h2 * h - h1.square()) / h.square()


def _sphere_contour(vectors, p, mu, Q, D, mean):
    """The contour integral of :func:`sphere_integral` given ``P``'s eigenvectors, the eigenvalues
    ``p`` of ``P - lam``, the centre ``mu`` in that eigenbasis and ``Q_lam``."""
    k = p.shape[1]
    power = (D - k) / 2 + 1
    weight = mu.square() * p  # mu_j^2 p_j
    # the saddle: d/dphi log F = 0 between the roots of h (F -> inf at both, log F convex there);
    # left of it the slope is negative, or h <= 0 with phi < 0. Bisection in x = asinh(phi / s0):
    # relative precision far from 0 and absolute near it, whatever the spectrum's scales
    # (in NumPy where the kernels allow: 16 steps of small operations, as _trust_region's)
    numpy = _kernels.numpy_path(p)
    xp = np if numpy else torch
    pp, ww, QQ = (p.numpy(), weight.numpy(), Q.numpy()) if numpy else (p, weight, Q)
    s0 = 1e-3 * xp.clip(xp.minimum(abs(QQ), pp[:, 0]), 1e-300, None)
    lo = xp.arcsinh((-4 * (abs(QQ) + ww.sum(1)) - 1.0) / s0)
    hi = xp.arcsinh(pp[:, 0] / s0)
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(SADDLE_ITERATIONS):
            mid = (lo + hi) / 2
            phi = s0 * xp.sinh(mid)
            h, h1, gap, _ = _derivatives(pp, ww, QQ, phi)
            slope = 0.5 * (1 / gap).sum(1) - power * h1 / h
            right = xp.where(h > 0, slope < 0, phi < 0)
            lo, hi = xp.where(right, mid, lo), xp.where(right, hi, mid)
    centre = s0 * xp.sinh((lo + hi) / 2)
    if numpy:
        centre = torch.from_numpy(centre)
    line = (p, weight, mu, Q, power, D)
    curvature = _curvature(p, weight, Q, power, centre)
    log_I, moment, valid = _on_the_line(*line, centre, curvature, CONTOUR_STEP, mean)
    if not bool(valid.all()):  # the line through 0 is always in the strip (Re h(i y) >= Q > 0)
        rows = (~valid).nonzero().squeeze(1)
        zero = torch.zeros(len(rows), dtype=torch.float64)
        sub = tuple(x[rows] if isinstance(x, torch.Tensor) else x for x in line)
        curvature = _curvature(sub[0], sub[1], sub[3], power, zero)
        again = _on_the_line(*sub, zero, curvature, CONTOUR_STEP / 2, mean)
        if not bool(again[2].all()):
            raise FloatingPointError("sphere_integral: the contour integral lost its precision on some rows")
        log_I[rows] = again[0]
        if mean:
            moment[rows] = again[1]
    constant = (
        math.log(2) + k / 2 * math.log(math.pi) + math.lgamma(power) - math.lgamma(D / 2) - math.log(math.pi)
    )
    log_I = log_I + constant
    if not mean:
        return log_I
    return log_I, (vectors @ moment[..., None])[..., 0]


CANCELLATION_LIMIT = 1e3
"""Largest ratio of the integral of ``|F|`` to that of ``Re F`` on the line accepted from the saddle
(about 1 there); a row above it, or whose ``h`` leaves the right half-plane on the line, is done
again on the line through 0 (always valid, more cancellation, a finer rule)."""


def _on_the_line(p, weight, mu, Q, power, D, centre, curvature, step, mean):
    """:func:`sphere_integral`'s line integral through ``centre`` (without its constant): ``log``
    of it, the direction's mean in ``P``'s eigenbasis (or ``None``) and whether each row is
    trustworthy (``h`` in the right half-plane at every node, no cancellation beyond
    :data:`CANCELLATION_LIMIT`, a finite positive value). Each row runs to its own reach (its
    scales' span decides its node count, 42-160 on the paper's draws), in groups of rows whose
    counts round up to the same multiple of :data:`NODE_GROUP`: the rule and the truncation of
    each row are what one row alone would get."""
    gap = p - centre[:, None]
    sigma = curvature.clamp_min(1e-300).rsqrt()
    reach = torch.maximum(gap.amax(1), centre.abs()).maximum(sigma) * 10 ** (1 + 40 / D)
    nodes = torch.ceil(torch.asinh(reach / sigma) / step).long() + 1
    nodes = (nodes + NODE_GROUP - 1) // NODE_GROUP * NODE_GROUP
    if not ROW_REACH:
        nodes = nodes.amax().expand_as(nodes)
    counts = nodes.unique()
    per_row = (gap, sigma, p, weight, mu, Q, centre)
    if len(counts) == 1:
        return _line_rows(*per_row, power, int(counts[0]), step, mean)
    log_I = torch.empty(len(p), dtype=torch.float64)
    valid = torch.empty(len(p), dtype=torch.bool)
    moment = torch.empty(p.shape, dtype=torch.float64) if mean else None
    for count in counts.tolist():
        rows = (nodes == count).nonzero().squeeze(1)
        part = _line_rows(*(x[rows] for x in per_row), power, count, step, mean)
        log_I[rows], valid[rows] = part[0], part[2]
        if mean:
            moment[rows] = part[1]
    return log_I, moment, valid


NODE_GROUP = 16
"""Rows of :func:`_on_the_line` whose node counts round up to the same multiple of this are
integrated together (one tensor pass a group; rows keep their own reach to this rounding)."""
ROW_REACH = True
"""Whether each row of :func:`_on_the_line` stops at its own reach (off: every row runs as far as
the population's farthest, as before 2026-12-07; the benchmarks' baseline)."""


def _line_rows(gap, sigma, p, weight, mu, Q, centre, power, steps, step, mean):
    """:func:`_on_the_line` for rows that share a node count ``steps``: by :func:`_line_rows_numpy`
    where :func:`factorkit._kernels.numpy_path` allows (the same arithmetic), else by torch."""
    if _kernels.numpy_path(p):
        return _line_rows_numpy(gap, sigma, p, weight, mu, Q, centre, power, steps, step, mean)
    return _line_rows_torch(gap, sigma, p, weight, mu, Q, centre, power, steps, step, mean)


def _line_rows_numpy(gap, sigma, p, weight, mu, Q, centre, power, steps, step, mean):
    """:func:`_line_rows_torch` in NumPy, in real arithmetic throughout: ``log h`` as ``log |h|`` and
    ``atan2`` (``h`` in the right half-plane on a valid row, so that is the principal branch torch's
    complex logarithm takes), ``F`` as its modulus times ``cos`` and ``sin`` of its phase, the
    spectrum on the first axis (its sums add whole slabs) and the sums weighted by it as
    ``einsum``. Torch's float64 ``log`` and ``atan`` and its complex logarithm are several times
    NumPy's per entry on the machines measured (``python benchmarks/bench_direction_integral.py
    --kernels``, its first table)."""
    gap, sigma, p, weight, mu, Q, centre = (x.numpy() for x in (gap, sigma, p, weight, mu, Q, centre))
    t = np.arange(steps, dtype=np.float64) * step
    y = sigma[:, None] * np.sinh(t)  # rows x nodes
    jacobian = sigma[:, None] * np.cosh(t)
    a = np.ascontiguousarray(gap.T)[:, :, None]  # spectrum x rows x 1
    r = a * a + y * y  # spectrum x rows x nodes
    inverse_r = 1 / r
    log_modulus = -0.25 * np.log(r, out=r).sum(0)
    quotient = np.divide(y, a, out=r)
    angle = 0.5 * np.arctan(quotient, out=quotient).sum(0)
    s_real = np.einsum("krn,rk->rn", inverse_r, weight * gap) - 1
    s_imag = y * np.einsum("krn,rk->rn", inverse_r, weight)
    # h = Q - (centre + i y) (s_real + i s_imag)
    h_real = Q[:, None] - (centre[:, None] * s_real - y * s_imag)
    h_imag = -(centre[:, None] * s_imag + y * s_real)
    log_F = log_modulus - power * np.log(np.hypot(h_real, h_imag))
    phase = angle - power * np.arctan2(h_imag, h_real)
    top = log_F[:, :1]  # the saddle: the largest modulus on the line
    modulus = np.exp(log_F - top)
    F_real = modulus * np.cos(phase)
    rule = np.full(steps, step)
    rule[0] /= 2  # the integrand is even in t: the trapezoid over the whole line
    measure = jacobian * rule
    total = (F_real * measure).sum(1)
    with np.errstate(invalid="ignore"):
        valid = (
            (h_real > 0).all(1)
            & (total > 0)
            & np.isfinite(total)
            & ((modulus * measure).sum(1) <= CANCELLATION_LIMIT * total)
        )
    log_I = top[:, 0] + np.log(np.maximum(total, 1e-300))
    if not mean:
        return torch.from_numpy(log_I), None, torch.from_numpy(valid)
    # Re(F mu_j p_j (a_j + i y) / r_j), summed over the nodes
    real_part = gap * np.einsum("rn,krn->rk", F_real * measure, inverse_r)
    imag_part = np.einsum("rn,krn->rk", modulus * np.sin(phase) * measure * y, inverse_r)
    moment = (mu * p) * (real_part - imag_part)
    return torch.from_numpy(log_I), torch.from_numpy(moment / total[:, None]), torch.from_numpy(valid)


def _line_rows_torch(gap, sigma, p, weight, mu, Q, centre, power, steps, step, mean):
    """:func:`_on_the_line` for rows that share a node count ``steps``, by torch's kernels."""
    t = torch.arange(steps, dtype=torch.float64) * step
    y = sigma[:, None] * torch.sinh(t)  # rows x nodes
    jacobian = sigma[:, None] * torch.cosh(t)
    # on the line phi = centre + i y, with a_j = p_j - centre > 0 and r_j = a_j^2 + y^2:
    # log(p_j - phi) = log(r_j) / 2 - i atan(y / a_j) and 1 / (p_j - phi) = (a_j + i y) / r_j, all
    # in real arithmetic (complex logarithms cost several times more per entry)
    a = gap[:, None, :]  # rows x 1 x k
    r = a.square() + y[..., None].square()  # rows x nodes x k
    inverse_r = 1 / r
    log_modulus = -0.25 * torch.log(r).sum(2)
    angle = 0.5 * torch.atan(y[..., None] / a).sum(2)
    s_real, s_imag = (weight[:, None, :] * a * inverse_r).sum(2), y * (weight[:, None, :] * inverse_r).sum(2)
    h_phi = Q[:, None] - torch.complex(centre[:, None].expand_as(y), y) * torch.complex(s_real - 1, s_imag)
    log_F = torch.complex(log_modulus, angle) - power * torch.log(h_phi)
    top = log_F.real[:, :1]  # the saddle: the largest modulus on the line
    F = torch.exp(log_F - top)
    rule = torch.full((steps,), step, dtype=torch.float64)
    rule[0] /= 2  # the integrand is even in t: the trapezoid over the whole line
    measure = jacobian * rule
    total = (F.real * measure).sum(1)
    valid = (
        (h_phi.real > 0).all(1)
        & (total > 0)
        & torch.isfinite(total)
        & ((F.abs() * measure).sum(1) <= CANCELLATION_LIMIT * total)
    )
    log_I = top[:, 0] + total.clamp_min(1e-300).log()
    if not mean:
        return log_I, None, valid
    # Re(F mu_j p_j (a_j + i y) / r_j)
    scaled = (mu * p)[:, None, :] * inverse_r
    moment = ((F.real * measure)[..., None] * scaled * a - (F.imag * measure * y)[..., None] * scaled).sum(1)
    return log_I, moment / total[:, None], valid


def _root(K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(R, log det K, failed)`` per matrix, ``R R^T = K``: Cholesky's factor, or where that fails
    (``failed``; deep nets' ``F^T F`` spans many decades) ``U diag(sqrt(values))`` from
    :func:`_spectrum`, whose floor makes such a draw's weight fall like that eigenvalue's power
    instead of failing."""
    root, info = torch.linalg.cholesky_ex(K)
    log_det = 2 * torch.log(torch.diagonal(root, dim1=-2, dim2=-1)).sum(-1)
    failed = info > 0
    if bool(failed.any()):
        values, vectors = _spectrum(K[failed])
        root[failed] = vectors * values.sqrt()[:, None, :]
        log_det[failed] = values.log().sum(-1)
    return root, log_det, failed


def _solve_root(root: torch.Tensor, failed: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``R^{-1} X`` per matrix for ``(R, _, failed)`` from :func:`_root`: a triangular solve, or
    where Cholesky failed (``R = U diag(sqrt(values))``) a general one."""
    if not bool(failed.any()):
        return torch.linalg.solve_triangular(root, X, upper=False)
    out = torch.empty(X.shape, dtype=root.dtype)
    ok = ~failed
    out[ok] = torch.linalg.solve_triangular(root[ok], X[ok], upper=False)
    out[failed] = torch.linalg.solve(root[failed], X[failed])
    return out


def dense_log_weights(target: NormalizedInterpolation, gram: torch.Tensor, xi: torch.Tensor):
    """:meth:`NormalizedInterpolation.log_weights` with ``K(F)`` formed whole (``D x D``, the
    output layer's covariance) and its determinant and quadratic form by dense LU: the module
    docstring's formula with none of the Kronecker shortcuts, the reference that method is tested
    and timed against (no fallback for singular ``K``)."""
    K = target.integral.covariance(gram.to(torch.float64))
    n, k, D = target.n, target.k, target.D
    K_zz = K[:, n:, n:]
    z = (torch.linalg.cholesky(K_zz) @ xi[..., None])[..., 0]
    v = z / z.norm(dim=1, keepdim=True)
    a = torch.cat([(target.y / target.rho).expand(len(gram), n), v], dim=1)
    Q = (a * torch.linalg.solve(K, a)).sum(1)
    proposal = (xi.square().sum(1) / z.square().sum(1)).log()
    log_det, log_det_z = torch.linalg.slogdet(K)[1], torch.linalg.slogdet(K_zz)[1]
    log_weight = -0.5 * log_det - 0.5 * D * Q.log() + 0.5 * log_det_z + 0.5 * k * proposal
    return log_weight.numpy() + target.constant, v


def _spectrum(K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (raised to at least the largest's rounding level) and eigenvectors of ``K``."""
    values, vectors = torch.linalg.eigh(K)
    floor = values[:, -1:] * (K.shape[-1] * torch.finfo(K.dtype).eps)
    return torch.maximum(values, floor), vectors


def depth_one_log_density(problem: SensingProblem, target_norm: float) -> float:
    """``log p(h = y)`` for ``W`` uniform on the sphere of radius ``c = target_norm`` (depth 1:
    every normalized Gaussian prior), by the coarea formula, independently of the reduction:
    the set ``{||w|| = c, A w = y}`` is a sphere of radius ``rho`` and dimension ``k - 1``, the
    surface density of ``w`` is ``1 / (c^{D-1} |S^{D-1}|)`` and the normal Jacobian of ``w -> A w``
    on the sphere is ``sqrt(det(A A^T)) rho / c``."""
    problem = problem.to(device="cpu", dtype=torch.float64)
    n, D = problem.n, problem.W_star.numel()
    k = D - n
    A = problem.A.reshape(n, D)
    gram = A @ A.T
    q = float(problem.y @ torch.linalg.solve(gram, problem.y))
    rho = math.sqrt(target_norm**2 - q)

    def log_sphere(dim: int) -> float:  # surface area of the unit sphere in R^dim
        return math.log(2) + (dim / 2) * math.log(math.pi) - math.lgamma(dim / 2)

    log_det = float(torch.linalg.slogdet(gram)[1])
    return (
        (k - 1) * math.log(rho)
        + log_sphere(k)
        - (D - 1) * math.log(target_norm)
        - log_sphere(D)
        - 0.5 * log_det
        - math.log(rho / target_norm)
    )


def normalized_zero_sample(
    problem: SensingProblem,
    model,
    prior: Prior,
    *,
    method: str = "auto",
    n_samples: int = 1000,
    target_ess: float = 200,
    hidden_draws: int = 2**18,
    n_particles: int = 500,
    runs: int = 8,
    mcmc_steps: int = 10,
    target_acceptance: float = 0.3,
    check_effort: bool = True,
    fraction: float | None = None,
    path: str = "power",
    tail_alpha: float | None = None,
    generator: torch.Generator,
) -> dict:
    """The interpolating posterior of a normalized Gaussian prior: the ``state`` the marginal
    sampler builds its result from (:func:`factorkit.fit.marginal_sampler.marginal_sample`, which
    documents the options; ``log_volume`` here is the log density ``log p(h = y)``).

    Depth 1 is exact (every direction has the same weight). Deeper, ``'importance'`` draws ``F``
    from the prior and weighs it by :class:`Directions`' estimate of its direction integral (one
    direction kept per draw, in proportion to its weight); ``'smc'`` tempers that log-weight over
    the standard-normal latents of the hidden layers and of the directions with the pCN moves of
    the other samplers; ``'auto'`` starts importance sampling and hands over to SMC as soon as
    its ESS so far projects less than ``target_ess`` within ``hidden_draws``, or where its
    finished run's weights have a Pareto shape above :data:`~factorkit.fit.weights.PARETO_K_LIMIT`.
    ``fraction``: the ESS share each temperature keeps (default
    :data:`~factorkit.fit.weights.TEMPER_FRACTION`; the caller passes
    :func:`~factorkit.fit.weights.heavy_fraction` of the weight's counted tail index); ``path``:
    the tempering's targets (:func:`~factorkit.fit.weights.temper`: ``'power'`` or ``'capped'``;
    ``tail_alpha``, the weight's tail index, ends the capped path with the excess's levels)."""
    target = NormalizedInterpolation(problem, model, prior)
    hidden = HiddenLayers(model, dataclasses.replace(prior, normalize=False))
    if hidden.kind == "identity":
        state = _importance(target, hidden, n_samples, n_samples, n_samples, generator, give_up=False)
        state["method"] = "exact"
    else:
        state = None
        if method in ("auto", "importance"):
            state = _importance(target, hidden, target_ess, hidden_draws, n_samples, generator,
                                give_up=method == "auto")  # fmt: skip
        if state is None:
            hidden = hidden.for_moves()
            state = _tempered(target, hidden, n_particles, runs, mcmc_steps, target_acceptance, target_ess,
                              generator, check_effort, fraction, path, tail_alpha)  # fmt: skip
    gram = hidden.gram(hidden.draw(PRIOR_DRAWS, generator), PRIOR_DRAWS)
    prior_gen = target.prior_gen_loss(gram, generator)
    state["prior_gen"] = (float(prior_gen.mean()), float(prior_gen.std() / math.sqrt(PRIOR_DRAWS)))
    return state


PRIOR_DRAWS = 4096  # prior draws for the prior mean of L_gen reported beside the posterior's


def _draws(target: NormalizedInterpolation, v: torch.Tensor, rb: torch.Tensor | None = None) -> dict:
    """The matrices of directions ``v``; ``rb``: each draw's conditional mean of ``L_gen`` given
    its hidden layers (default: its own ``L_gen``, which ``(F, v)`` determines)."""
    W = target.matrices(v)
    train, gen = target.problem.losses(W)
    return {"W": W, "train": train, "gen": gen, "rb": gen.clone() if rb is None else rb}


def _importance(target, hidden, target_ess, hidden_draws, n_samples, generator, give_up: bool) -> dict | None:
    """Importance sampling over the hidden layers from their prior; at depth 1 (no hidden layer)
    one direction per draw (all weigh the same), otherwise :class:`Directions` per hidden draw."""
    directions = Directions(target) if hidden.kind != "identity" else None
    log_weights, chosen, rbs = [], [], []
    drawn, ess = 0, 0.0
    while drawn < hidden_draws and ess < target_ess:
        count = min(BATCH, hidden_draws - drawn)
        gram = hidden.gram(hidden.draw(count, generator), count)
        if directions is None:
            xi = torch.randn(count, target.k, generator=generator, dtype=torch.float64)
            log_weight, v = target.log_weights(gram, xi)
            rb = target.gen_loss(v)
        else:
            log_weight, inner, all_v = directions.evaluate(gram, directions.draw(count, generator))
            v, rb = directions.pick(inner, all_v, gram, generator)
        log_weights.append(log_weight)
        chosen.append(v)
        rbs.append(rb)
        drawn += count
        ess = kish_ess(normalized_weights(np.concatenate(log_weights)))
        if give_up and ess / drawn * hidden_draws < target_ess:
            return None
    log_weight = np.concatenate(log_weights)
    shape = pareto_k(log_weight)
    if not heavy_tail_checked(shape, give_up, drawn):
        return None
    v, rb_all = torch.cat(chosen), torch.cat(rbs).numpy()
    weights = normalized_weights(log_weight)
    raw = np.exp(log_weight - log_weight.max())
    rb = float((weights * rb_all).sum())
    rows = torch.from_numpy(systematic_resample(weights, n_samples, generator))
    return {
        "method": "importance",
        "draws": _draws(target, v[rows], torch.from_numpy(rb_all)[rows]),
        "log_volume": log_mean_exp(log_weight),
        "log_volume_se": float(raw.std(ddof=1) / raw.mean() / math.sqrt(drawn))
        if drawn > 1
        else float("nan"),
        "ess": min(ess, float(n_samples)),
        "kish_ess": ess,
        "evaluations": drawn,
        "weight_spread": float(weights.max()),
        "pareto_k": shape,
        "rb": rb,
        "rb_se": math.sqrt(float((weights**2 * (rb_all - rb) ** 2).sum())),
    }


EXACT_WEIGHT = True
"""Whether tempered SMC weighs the hidden layers by the direction integral in closed form
(:meth:`Directions.exact_log_weight`: the latents are the hidden layers' alone and the target is
smooth) rather than by the 64 directions' estimate (the hidden layers' and the directions' latents
together: the pseudo-marginal target before 2026-12-07, whose estimate falls short by more than a
factor e on 6% of the paper's prior draws, ``benchmarks/bench_direction_integral.py``)."""


def _tempered_run(
    target, hidden, n_particles, mcmc_steps, target_acceptance, generator, fraction=None, path="power",
    tail_alpha=None,
) -> dict:  # fmt: skip
    """Tempered SMC over the hidden latents toward ``p(h = y | F)``, exact
    (:meth:`Directions.exact_log_weight`), then one direction per particle with its correction
    weight (:meth:`Directions.draw_given`) and a resampling by those: an exact draw of ``(F, v)``.
    With matrix hidden latents, half of each temperature's moves are singular-value moves of
    those (:func:`~factorkit.fit.weights.temper`). ``direction_ess``: Kish's share of the
    correction weights (1: the directions fit every particle).
    With ``EXACT_WEIGHT`` off: over the hidden latents and the directions' latents together, the
    log-weight :meth:`Directions.evaluate`'s (an unbiased estimate of the direction's integral, so
    the extended target's hidden-layer marginal is the posterior's)."""
    directions = Directions(target)
    layers = len(hidden.shapes)
    if EXACT_WEIGHT:
        latent, value, log_volume, levels, evaluations = temper(
            lambda latent, floor: directions.exact_log_weight(hidden.gram(latent, n_particles)),
            hidden.draw(n_particles, generator), n_particles, mcmc_steps, target_acceptance, generator,
            nothing="no particle has a finite weight at eps = 0", screen=False, matrices=hidden.matrices,
            fraction=fraction, path=path, tail_alpha=tail_alpha,
        )  # fmt: skip
        gram = hidden.gram(latent, n_particles)
        v, correction = directions.draw_given(gram, value, generator)
        shares = normalized_weights(np.log(correction))
        rows = torch.from_numpy(systematic_resample(shares, n_particles, generator))
        record = run_record(value[rows], log_volume, levels, evaluations + n_particles)
        record["direction_ess"] = kish_ess(shares) / n_particles
        return {"draws": _draws(target, v[rows], directions.conditional_gen_loss(gram[rows])), **record}

    def evaluate(latent: list[torch.Tensor]):
        return directions.evaluate(hidden.gram(latent[:layers], n_particles), latent[layers:])

    start = [*hidden.draw(n_particles, generator), *directions.draw(n_particles, generator)]
    latent, value, log_volume, levels, evaluations = temper(
        lambda latent, floor: torch.from_numpy(evaluate(latent)[0]), start, n_particles, mcmc_steps,
        target_acceptance, generator, nothing="no particle has a finite weight at eps = 0", screen=False,
        matrices=hidden.matrices, fraction=fraction, path=path, tail_alpha=tail_alpha,
    )  # fmt: skip
    _, inner, v = evaluate(latent)
    v, rb = directions.pick(inner, v, hidden.gram(latent[:layers], n_particles), generator)
    return {"draws": _draws(target, v, rb), **run_record(value, log_volume, levels, evaluations)}


def _tempered(
    target,
    hidden,
    n_particles,
    runs,
    mcmc_steps,
    target_acceptance,
    target_ess,
    generator,
    check_effort,
    fraction=None,
    path="power",
    tail_alpha=None,
) -> dict:
    fits = []

    def more(count, steps):
        made = [
            _tempered_run(
                target, hidden, n_particles, steps, target_acceptance, generator, fraction, path, tail_alpha
            )
            for _ in range(count)
        ]
        fits.extend(run["direction_ess"] for run in made if "direction_ess" in run)
        return made

    state = tempered_runs(more, runs, target_ess, n_particles, mcmc_steps, check_effort, generator)
    if fits:  # the worst run's share of effective correction weights
        state["direction_ess"] = min(fits)
    return state


__all__ = [
    "Directions",
    "NormalizedInterpolation",
    "applies",
    "dense_log_weights",
    "depth_one_log_density",
    "normalized_zero_sample",
    "sphere_integral",
    "sphere_integral_least_squares",
]
