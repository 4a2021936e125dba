"""Where does the ``eps = 0`` posterior's mass sit at width 5? Importance sampling of the hidden
layer with a proposal that reaches the low-rank strata, against the prior and long tempered SMC.

    python benchmarks/explore_funnel_proposal.py [--figure width_rank2] [--activation linear]
        [--seed 0] [--draws 200000] [--repeats 4] [--steps 40,160,640]

At ``eps = 0`` a depth-2 net's hidden layer ``F`` (``k x m'``) weighs ``w(F) = N(y; 0, Sigma(F))``,
unbounded near ``F`` of low rank whose row space holds ``W*``'s (:mod:`factorkit.fit.tail`); at
``width_rank2``'s width 5 (rank 2, ``n = 22``) the counted tail index is 8/7, so importance weights
from the prior have infinite variance and tempered SMC's answer moves with its effort. This
script tries an exact importance proposal built for those strata, a mixture of

* the prior (a fifth of the draws);
* **aligned**: ``R``, the row space of the minimum-nuclear-norm interpolant (data only, no
  ``W*``), splits ``F = [F_R, B]`` (``F_R = F Q_R``, ``B = F Q_perp``); under a Gaussian ``F``,
  ``F_R``, ``T = P B`` (``B``'s part in ``F_R``'s column space) and ``E = (I - P) B`` are
  independent Gaussians, and ``G = F^T F`` nears a stratum whose range holds ``R`` exactly when
  ``E``'s smallest singular values and ``T`` along their directions are small. The proposal keeps
  ``F_R``, draws ``E``'s singular values from a half log-uniform, half chi law (Haar singular
  vectors) and shrinks ``T`` along each of ``E``'s right singular vectors by ``s / (s + 0.3 sigma)``;
  its density ratio to the prior is closed form (the Wishart law of the singular values, a
  Gaussian for ``T``);
* **generic**: ``F``'s own singular values from the same law, Haar singular vectors (strata
  whose range does not hold ``R``).

Tanh and leaky ReLU hidden layers use a Gaussian reference of the prior's RMS entry for the two
proposal components and their exact prior density for the weights. Each row prints the estimate
of ``log p(h = y)``, its standard error, Kish's ESS, the Pareto shape ``k`` of the weights
(:func:`factorkit.fit.weights.pareto_k`; the variance is finite for ``k < 1/2``, the mean for
``k < 1``) and the posterior mean of ``L_gen`` (Rao-Blackwellized), for ``--repeats`` independent
sets of ``--draws`` draws of each proposal, the pooled estimate over them, and tempered SMC's
answer at each ``--steps`` (8 runs of 500, no effort check). One torch thread.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
import torch
from scipy.special import gammaln, multigammaln

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit.marginal import OutputLayerIntegral
from factorkit.fit.marginal_sampler import marginal_sample
from factorkit.fit.nuclear import min_nuclear_norm
from factorkit.fit.weights import kish_ess, log_mean_exp, normalized_weights, pareto_k

SLOPE = 0.2  # leaky ReLU's, as the paper's


class FunnelProposal:
    """The mixture proposal above for ``F`` (``k x m'``, ``k >= m'``): ``draw`` and the log
    density ratio ``log(q / p)`` to the prior law of ``F = s(sigma Z)``."""

    def __init__(self, k, m2, row_space, sigma, activation, shares=(0.2, 0.4, 0.4), low=1e-3, shrink=0.3):
        self.k, self.m2, self.activation, self.sigma = k, m2, activation, sigma
        basis = torch.linalg.qr(torch.cat([row_space, torch.eye(m2, dtype=torch.float64)], 1)).Q[:, :m2]
        self.r = row_space.shape[1]
        self.Q_R, self.Q_perp, self.p = basis[:, : self.r], basis[:, self.r :], m2 - self.r
        if activation == "linear":
            self.ref = sigma  # the reference Gaussian's scale: the prior's RMS entry
        elif activation == "tanh":
            z = torch.randn(10**6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
            self.ref = float(torch.tanh(sigma * z).square().mean().sqrt())
        else:
            self.ref = sigma * math.sqrt((1 + SLOPE**2) / 2)
        self.shares, self.shrink = shares, shrink
        self.low, self.high = self.ref * low, self.ref * math.sqrt(k) * 2

    def act(self, x):
        if self.activation == "linear":
            return x
        return torch.tanh(x) if self.activation == "tanh" else torch.where(x > 0, x, SLOPE * x)

    def log_prior(self, F):
        """The exact log density of ``F = s(sigma Z)``, entry by entry (``-inf`` off tanh's range)."""
        c, s = -0.5 * math.log(2 * math.pi), self.sigma
        if self.activation == "linear":
            return (c - math.log(s) - F.square() / (2 * s * s)).sum((1, 2))
        if self.activation == "tanh":
            inside = (F.abs() < 1).all(2).all(1)
            clamped = F.clamp(-1 + 1e-15, 1 - 1e-15)
            out = (c - math.log(s) - torch.atanh(clamped).square() / (2 * s * s)
                   - torch.log1p(-clamped.square())).sum((1, 2))  # fmt: skip
            return torch.where(inside, out, torch.full_like(out, -math.inf))
        scale = torch.where(F > 0, torch.full_like(F, s), torch.full_like(F, SLOPE * s))
        return (c - torch.log(scale) - F.square() / (2 * scale.square())).sum((1, 2))

    def log_reference(self, F):
        return (-0.5 * math.log(2 * math.pi) - math.log(self.ref) - F.square() / (2 * self.ref**2)).sum(
            (1, 2)
        )

    def log_wishart_sv(self, s, rows, cols):
        """Log density of the ordered singular values of a ``rows x cols`` matrix of i.i.d.
        ``N(0, ref^2)`` entries (Muirhead, Thm 3.2.17, through ``lambda = s^2``)."""
        v, lam = self.ref**2, s * s
        out = ((cols * cols / 2) * math.log(math.pi) - (rows * cols / 2) * math.log(2 * v)
               - multigammaln(rows / 2, cols) - multigammaln(cols / 2, cols))  # fmt: skip
        out = out + ((rows - cols - 1) / 2) * torch.log(lam).sum(1) - lam.sum(1) / (2 * v)
        for i in range(cols):
            for j in range(i + 1, cols):
                out = out + torch.log(lam[:, i] - lam[:, j])
        return out + (math.log(2) + torch.log(s)).sum(1)

    def log_h(self, s):
        """Each singular value's law: half log-uniform on [low, high], half ``ref * chi_k``."""
        span = math.log(self.high / self.low)
        flat = torch.where((s >= self.low) & (s <= self.high), -torch.log(s) - math.log(span), -math.inf)
        x = s / self.ref
        chi = ((self.k - 1) * torch.log(x) - x * x / 2 - (self.k / 2 - 1) * math.log(2) - gammaln(self.k / 2)
               - math.log(self.ref))  # fmt: skip
        return torch.logaddexp(flat, chi) - math.log(2)

    def draw_h(self, count, generator):
        flat = self.low * torch.exp(torch.rand(count, generator=generator, dtype=torch.float64)
                                    * math.log(self.high / self.low))  # fmt: skip
        chi = self.ref * torch.randn(count, self.k, generator=generator, dtype=torch.float64).norm(dim=1)
        return torch.where(torch.rand(count, generator=generator, dtype=torch.float64) < 0.5, flat, chi)

    def log_sv_proposal(self, s):
        return math.lgamma(s.shape[1] + 1) + self.log_h(s).sum(1)

    @staticmethod
    def haar(count, rows, cols, generator):
        q, r = torch.linalg.qr(torch.randn(count, rows, cols, generator=generator, dtype=torch.float64))
        return q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]

    def factor(self, s):
        return s / (s + self.shrink * self.ref)

    def draw(self, count, generator):
        k, m2, r, p = self.k, self.m2, self.r, self.p
        component = torch.multinomial(
            torch.tensor(self.shares, dtype=torch.float64), count, True, generator=generator
        )
        prior = self.act(self.sigma * torch.randn(count, k, m2, generator=generator, dtype=torch.float64))
        Z = self.ref * torch.randn(count, k, m2, generator=generator, dtype=torch.float64)
        s = torch.sort(self.draw_h(p * count, generator).reshape(count, p), dim=1, descending=True).values
        E = self.haar(count, k - r, p, generator) * s[:, None, :] @ self.haar(count, p, p, generator).mT
        F_R = Z @ self.Q_R
        Q = torch.linalg.qr(F_R, mode="complete").Q
        _, sv, Vh = torch.linalg.svd(E, full_matrices=False)
        T = (Q[:, :, :r].mT @ (Z @ self.Q_perp)) @ Vh.mT @ (self.factor(sv)[:, :, None] * Vh)
        aligned = F_R @ self.Q_R.mT + (Q[:, :, :r] @ T + Q[:, :, r:] @ E) @ self.Q_perp.mT
        s = torch.sort(self.draw_h(m2 * count, generator).reshape(count, m2), dim=1, descending=True).values
        generic = self.haar(count, k, m2, generator) * s[:, None, :] @ self.haar(count, m2, m2, generator).mT
        pick = component[:, None, None]
        return torch.where(pick == 1, aligned, torch.where(pick == 2, generic, prior))

    def log_ratio(self, F):
        """``log(q(F) / p(F))`` (``+inf`` where the prior's density is 0: such draws weigh 0)."""
        k, m2, r, p, v = self.k, self.m2, self.r, self.p, self.ref**2
        prior, reference = self.log_prior(F), self.log_reference(F)
        terms = [math.log(self.shares[0]) + prior]
        Q = torch.linalg.qr(F @ self.Q_R, mode="complete").Q
        B = F @ self.Q_perp
        _, s, Vh = torch.linalg.svd(Q[:, :, r:].mT @ B, full_matrices=False)
        T, factor = Q[:, :, :r].mT @ B, self.factor(s)
        along = T @ Vh.mT
        shrunk = (along.square() / factor[:, None, :].square()).sum((1, 2))
        log_T = (T.square().sum((1, 2)) - shrunk) / (2 * v) - r * torch.log(factor).sum(1)
        terms.append(math.log(self.shares[1]) + reference + self.log_sv_proposal(s)
                     - self.log_wishart_sv(s, k - r, p) + log_T)  # fmt: skip
        s = torch.linalg.svdvals(F)
        terms.append(
            math.log(self.shares[2]) + reference + self.log_sv_proposal(s) - self.log_wishart_sv(s, k, m2)
        )
        out = torch.logsumexp(torch.stack(terms), 0) - prior
        return torch.where(torch.isfinite(prior), out, torch.full_like(prior, math.inf))


def importance(integral, proposal, draws, generator, prior_only):
    """One importance run of ``draws`` draws: its log-weights and Rao-Blackwellized ``L_gen``."""
    if prior_only:
        F = proposal.act(proposal.sigma * torch.randn(draws, proposal.k, proposal.m2, generator=generator,
                                                      dtype=torch.float64))  # fmt: skip
        log_ratio = torch.zeros(draws, dtype=torch.float64)
    else:
        F = proposal.draw(draws, generator)
        log_ratio = proposal.log_ratio(F)
    log_weight = integral.analyse(F.mT @ F).log_weight - log_ratio.numpy()
    log_weight = np.where(np.isfinite(log_weight), log_weight, -np.inf)
    weights = normalized_weights(log_weight)
    rows = np.flatnonzero(weights >= 1e-12 * weights.max())
    analysis = integral.analyse((F.mT @ F)[torch.from_numpy(rows)], log_weight=log_weight[rows])
    local = np.arange(rows.size)
    rb = integral.conditional_gen_loss(analysis, local, integral.sample_g(analysis, local, generator)).numpy()
    w = weights[rows] / weights[rows].sum()
    mean = float((w * rb).sum())
    raw = np.exp(log_weight - log_weight.max())
    return {
        "log_density": log_mean_exp(log_weight),
        "se": float(raw.std() / raw.mean() / math.sqrt(draws)),
        "ess": kish_ess(weights),
        "k": pareto_k(log_weight),
        "rb": mean,
        "rb_se": math.sqrt(float((w**2 * (rb - mean) ** 2).sum())),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--figure", default="width_rank2")
    parser.add_argument("--activation", default="linear")
    parser.add_argument("--width", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--steps", default="40,160,640", help="tempered SMC references ('' for none)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", RuntimeWarning)
    cell = paper_cell(args.figure, activation=args.activation, width=args.width, depth=2)
    problem, model, prior = gc_setup({**cell.params, "width": args.width, "depth": 2}, args.seed, "cpu")
    problem = problem.to(device="cpu", dtype=torch.float64)
    integral = OutputLayerIntegral(problem, model, prior, 0.0)
    interpolant = min_nuclear_norm(problem, tol=1e-9, max_iter=5000).W
    _, values, Vh = torch.linalg.svd(interpolant)
    rank = int((values > 1e-4 * values[0]).sum())
    proposal = FunnelProposal(model.width, model.m2, Vh[:rank].mT.contiguous(), prior.scales(model)[0],
                              args.activation)  # fmt: skip
    print(f"{args.figure}, {args.activation}, width {args.width}, seed {args.seed}: interpolant rank {rank}")
    print("| proposal | repeat | log p(h = y) (se) | Kish ESS | Pareto k | L_gen (se) | seconds |")
    print("|---|---|---|---|---|---|---|")
    generator = torch.Generator().manual_seed(1)
    for name in ("prior", "funnel"):
        runs = []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            run = importance(integral, proposal, args.draws, generator, prior_only=name == "prior")
            runs.append(run)
            seconds = time.perf_counter() - start
            print(f"| {name} | {repeat} | {run['log_density']:.3f} ({run['se']:.3f}) | {run['ess']:.0f} | "
                  f"{run['k']:.2f} | {run['rb']:.4f} ({run['rb_se']:.4f}) | {seconds:.1f} |",
                  flush=True)  # fmt: skip
        logs = np.array([r["log_density"] for r in runs])
        weight = np.exp(logs - logs.max())
        pooled = float((weight * np.array([r["rb"] for r in runs])).sum() / weight.sum())
        print(f"| {name} | pooled | {log_mean_exp(logs):.3f} | | | {pooled:.4f} | |")
    for steps in (int(s) for s in args.steps.split(",") if s):
        start = time.perf_counter()
        ref = marginal_sample(problem, model, eps=0.0, prior=prior, method="smc", mcmc_steps=steps, runs=8,
                              target_ess=1, check_effort=False, seed=7, keep_samples=False).extra  # fmt: skip
        density = f"{ref['log_density']:.3f} ({ref['log_density_se']:.3f})"
        print(f"| tempered SMC, {steps} steps | 8 runs | {density} | {ref['ess']:.0f} | | "
              f"{ref['gen_loss_rb']:.4f} ({ref['gen_loss_rb_se']:.4f}) | {time.perf_counter() - start:.1f} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
