"""A direction proposal for the normalized eps = 0 sampler, measured (a prototype, not the sampler).

    python benchmarks/explore_normalized_direction.py [--depth 2] [--activation linear]

The shipped sampler (:mod:`factorkit.fit.normalized`) proposes the direction ``v`` of the
complement coordinates from the angular central Gaussian of ``z`` given the hidden layers ``F``; on
the paper's problem (m = m' = 5, n = 15, seed 0) that proposal is far broader than the direction's
weight ``Q_v^{-D/2}``, and its estimates of ``log p(h = y)`` fall ~2 below the eps -> 0 limit of
subset simulation (the strict xfail in ``tests/test_normalized.py``). This script measures the
proposal that would replace it, on the same problem and prior:

* ``Q_v = c0 + 2 b.v + v^T P v`` for every ``v`` from the basis whitened by ``s^2 F^T F`` (one
  triangular solve per ``F``);
* its minimiser ``v*`` on the sphere (the trust-region subproblem: eigenvectors of ``P`` and
  Newton on the secular equation ``|(P - lambda I)^{-1} b| = 1`` from the left, Moré-Sorensen);
* ``v = +-(v* + T u) / sqrt(1 + |u|^2)`` (gnomonic coordinates, surface element ``(1 + |u|^2)^{-k/2}
  du``; each sign with probability 1/2, so both hemispheres are covered and the weights are exact),
  ``u`` multivariate t with ``nu`` degrees of freedom at the Laplace precision
  ``D T^T (P - lambda* I) T / Q*``.

Printed: for 40 hidden draws, Kish's ESS of 4096 directions each (median and minimum), the old
proposal's beside it; then nested importance sampling over ``F`` (``--inner`` directions per hidden
draw), its ``log p(h = y)``, Kish's ESS over the hidden draws and the posterior mean of ``L_gen``;
then the reference: subset simulation at eps = 3e-4 and 1e-4, extrapolated to 0 (Richardson).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np
import torch

from factorkit.fit.hidden import HiddenLayers
from factorkit.fit.normalized import NormalizedInterpolation
from factorkit.fit.prior import resolve_prior
from factorkit.fit.smc import subset_simulation
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem


class GnomonicProposal:
    """The proposal above for one ``NormalizedInterpolation``; ``log_weights(gram, latents)``
    has the shipped method's meaning (``exp`` averages to ``p(h = y)``)."""

    def __init__(self, target: NormalizedInterpolation, nu: int):
        self.target, self.nu = target, nu
        m, m2 = target.problem.shape
        self.m, self.m2, self.k, self.D = m, m2, target.k, target.D
        rows = target.basis.reshape(self.k, m, m2)
        # the right-hand sides of the whitening: every basis row B_a^T, then x0^T (m' x (k m + m))
        self.rhs = torch.cat(
            [rows.transpose(1, 2).permute(1, 0, 2).reshape(m2, self.k * m), target.x_measured.T], 1
        )
        self.log_sphere = math.log(2) + self.k / 2 * math.log(math.pi) - math.lgamma(self.k / 2)

    def latent_shapes(self) -> list[tuple[int, ...]]:
        return [(self.k - 1,), (self.nu,), (1,)]

    def quadratic(self, gram: torch.Tensor):
        """``(P, b, c0, log |K|)`` per hidden draw."""
        count, k, m, m2 = len(gram), self.k, self.m, self.m2
        root = torch.linalg.cholesky(gram)
        white = torch.linalg.solve_triangular(root, self.rhs.expand(count, -1, -1), upper=False)
        white = white / math.sqrt(self.target.scale2)
        basis = white[:, :, : k * m].reshape(count, m2, k, m).permute(0, 2, 1, 3).reshape(count, k, m2 * m)
        x0 = white[:, :, k * m :].reshape(count, m2 * m)
        P = basis @ basis.transpose(1, 2)
        b = (basis @ x0[..., None])[..., 0]
        log_det_M = 2 * torch.log(torch.diagonal(root, dim1=1, dim2=2)).sum(1)
        log_det = 2 * self.target.log_det_T + m * log_det_M + self.D * math.log(self.target.scale2)
        return P, b, x0.square().sum(1), log_det

    @staticmethod
    def q(P, b, c0, v):
        return c0 + 2 * (b * v).sum(1) + (v[:, None, :] @ P @ v[..., None])[:, 0, 0]

    @staticmethod
    def mode(P, b):
        """The minimiser of ``Q_v`` on the sphere and its multiplier ``lambda*``."""
        values, vectors = torch.linalg.eigh(P)
        c = (vectors.transpose(1, 2) @ b[..., None])[..., 0]
        lowest, scale = values[:, 0], values[:, -1].abs()
        lam = lowest - c.norm(dim=1)  # |(P - lam)^{-1} b| <= 1 here: left of the root
        for _ in range(40):
            gap = values - lam[:, None]
            s2, s3 = (c.square() / gap.square()).sum(1), (c.square() / gap**3).sum(1)
            lam = torch.minimum(lam + (s2.rsqrt() - 1) / (s3 * s2.pow(-1.5)), lowest - 1e-14 * scale)
        d = -c / (values - lam[:, None])
        short = d.norm(dim=1) < 1  # the hard case: fill up along the lowest eigenvector
        d[:, 0] = torch.where(short, d[:, 0] + (1 - d.norm(dim=1).square().clamp(max=1)).sqrt(), d[:, 0])
        v = (vectors @ d[..., None])[..., 0]
        return v / v.norm(dim=1, keepdim=True), lam

    def log_weights(self, gram: torch.Tensor, latents: list[torch.Tensor]):
        P, b, c0, log_det = self.quadratic(gram)
        v_star, lam = self.mode(P, b)
        k, nu = self.k, self.nu
        e1 = torch.zeros_like(v_star)
        e1[:, 0] = 1
        w = v_star - e1
        w = w / w.norm(dim=1, keepdim=True).clamp(min=1e-300)
        tangent = (torch.eye(k, dtype=P.dtype) - 2 * w[:, :, None] * w[:, None, :])[:, :, 1:]
        q_star = self.q(P, b, c0, v_star)
        shifted = P - lam[:, None, None] * torch.eye(k, dtype=P.dtype)
        precision = self.D * tangent.transpose(1, 2) @ shifted @ tangent / q_star[:, None, None]
        eye = torch.eye(k - 1, dtype=P.dtype)
        precision = precision + 1e-12 * precision.diagonal(dim1=1, dim2=2).amax(1)[:, None, None] * eye
        chol = torch.linalg.cholesky(precision)
        normal, chi, sign = latents
        x = normal / (chi.square().sum(1) / nu).sqrt()[:, None]  # t_nu(0, I)
        u = torch.linalg.solve_triangular(chol.transpose(1, 2), x[..., None], upper=True)[..., 0]
        direction = torch.where(sign[:, :1] > 0, 1.0, -1.0).to(P.dtype)
        stretch = 1 + u.square().sum(1)
        v = direction * (v_star + (tangent @ u[..., None])[..., 0]) / stretch.sqrt()[:, None]
        p = k - 1
        log_t = (
            math.lgamma((nu + p) / 2) - math.lgamma(nu / 2) - p / 2 * math.log(nu * math.pi)
            - (nu + p) / 2 * torch.log1p(x.square().sum(1) / nu)
            + torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
        )  # fmt: skip
        log_proposal = math.log(0.5) + log_t + k / 2 * torch.log(stretch)  # against the surface measure
        log_weight = -0.5 * log_det - 0.5 * self.D * self.q(P, b, c0, v).log() - log_proposal
        return (log_weight + self.target.constant - self.log_sphere).numpy(), v


def kish(log_weight: np.ndarray) -> float:
    w = np.exp(log_weight - log_weight.max())
    return float(w.sum() ** 2 / (w**2).sum())


def log_mean(log_weight: np.ndarray, axis=None) -> np.ndarray:
    top = log_weight.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis=axis) + np.log(np.exp(log_weight - top).mean(axis=axis))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--activation", default="linear")
    parser.add_argument("--nu", type=int, nargs="+", default=[1, 2, 4, 8, 30])
    parser.add_argument("--inner", type=int, default=256, help="directions per hidden draw (nested)")
    parser.add_argument("--hidden", type=int, default=2048, help="hidden draws (nested)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    prior = resolve_prior("normalized_gaussian", problem)
    model = DeepFactorization(5, 5, 5, args.depth, args.activation)
    target = NormalizedInterpolation(problem, model, prior)
    hidden = HiddenLayers(model, dataclasses.replace(prior, normalize=False))
    generator = torch.Generator().manual_seed(0)
    grams = hidden.gram(hidden.draw(40, generator), 40)

    def per_hidden_draw(weigh) -> str:
        sizes = [kish(weigh(gram.expand(4096, -1, -1).clone())) for gram in grams]
        return f"median {np.median(sizes):.0f}, min {min(sizes):.0f}"

    print(f"depth {args.depth} {args.activation}: Kish's ESS of 4096 directions for each of 40 hidden draws")
    old = per_hidden_draw(
        lambda g: target.log_weights(
            g, torch.randn(len(g), target.k, generator=generator, dtype=torch.float64)
        )[0]
    )
    print(f"  angular central Gaussian (shipped): {old}")
    for nu in args.nu:
        proposal = GnomonicProposal(target, nu)

        def weigh(g, proposal=proposal):
            latents = [torch.randn(len(g), *s, generator=generator, dtype=torch.float64)
                       for s in proposal.latent_shapes()]  # fmt: skip
            return proposal.log_weights(g, latents)[0]

        print(f"  gnomonic t, nu = {nu}: {per_hidden_draw(weigh)}")

    proposal = GnomonicProposal(target, args.nu[0])
    start = time.perf_counter()
    per_draw, gens = [], []
    for first in range(0, args.hidden, 32):
        count = min(32, args.hidden - first)
        gram = hidden.gram(hidden.draw(count, generator), count).repeat_interleave(args.inner, 0)
        latents = [torch.randn(len(gram), *s, generator=generator, dtype=torch.float64)
                   for s in proposal.latent_shapes()]  # fmt: skip
        log_weight, v = proposal.log_weights(gram, latents)
        log_weight = log_weight.reshape(count, args.inner)
        gen = target.gen_loss(v).numpy().reshape(count, args.inner)
        w = np.exp(log_weight - log_weight.max(1, keepdims=True))
        per_draw.append(log_mean(log_weight, axis=1))
        gens.append((w * gen).sum(1) / w.sum(1))
    per_draw, gens = np.concatenate(per_draw), np.concatenate(gens)
    w = np.exp(per_draw - per_draw.max())
    print(
        f"nested importance sampling (nu = {args.nu[0]}, {args.inner} directions x {args.hidden} "
        f"hidden draws, {time.perf_counter() - start:.0f} s): log p(h = y) {float(log_mean(per_draw)):.3f}, "
        f"Kish's ESS over hidden draws {kish(per_draw):.0f}, L_gen {(w * gens).sum() / w.sum():.4f}"
    )

    def log_ball(eps: float) -> float:
        return (problem.n / 2) * math.log(math.pi * problem.n * eps) - math.lgamma(problem.n / 2 + 1)

    seen = {}
    for eps in (3e-4, 1e-4):
        result = subset_simulation(problem, model, eps=eps, prior=prior, n_particles=1000, runs=16, seed=1,
                                   keep_samples=False)  # fmt: skip
        seen[eps] = (result.extra["log_volume"] - log_ball(eps), result.extra["log_volume_se"])
        value, se = seen[eps]
        print(f"subset simulation, eps = {eps:g}: log V - log vol(ball) {value:.3f} +- {se:.3f}, "
              f"L_gen {result.gen_loss_mean:.4f}")  # fmt: skip
    limit = (3 * seen[1e-4][0] - seen[3e-4][0]) / 2
    se = math.hypot(1.5 * seen[1e-4][1], 0.5 * seen[3e-4][1])
    print(f"  extrapolated to eps = 0: {limit:.3f} +- {se:.3f}")


if __name__ == "__main__":
    main()
