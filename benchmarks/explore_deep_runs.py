"""Where tempered SMC's ``eps = 0`` particles sit in heavy cells, and whether an outlying run is real.

    python benchmarks/explore_deep_runs.py [--part particles,outlier,prior] [--steps 10 160]

``particles``: the normalized prior's depth-3 linear cell (the paper's problem, m = m' = 5, rank 1,
n = 15, width 5, seed 0): four tempered runs of 500 at each ``--steps`` (pCN steps a temperature,
half of them singular-value moves), and per run ``log p``, the posterior mean of ``L_gen``, the
final population's mean log-weight, the quantiles (10/50/90%) of ``log10`` of the ratios of
``G = F^T F``'s four smallest eigenvalues to its largest, of the angle between ``G``'s top
eigenvector and ``W*``'s row direction, and of each layer's singular values.

``outlier``: ``width_rank2``'s tanh width-5 cell (rank 2, n = 22, depth 2, Gaussian prior, seed 0):
``--runs`` tempering runs at 40 steps (as ``bench_effort.py``: ``marginal_sample(method='smc',
check_effort=False, seed=3)``); the largest runs' ``log p``, and for the heaviest run's three
heaviest particles ``G``'s eigenvalues and the log-weight three ways: the sampler's (the Kronecker
route), ``Sigma``'s Cholesky in float64, and a 60-digit ``mpmath`` Cholesky.

``prior``: the same cell's ``log p`` by importance sampling from the prior, ``--prior-draws`` draws
in each of two streams, with the running estimate at doubling counts and the largest log-weights.

One torch thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import mpmath
import numpy as np
import torch

from factorkit.fit import marginal_sampler, normalized
from factorkit.fit.hidden import HiddenLayers
from factorkit.fit.marginal import Analysis, OutputLayerIntegral
from factorkit.fit.prior import resolve_prior
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem


def quantiles(values: torch.Tensor) -> str:
    return "/".join(f"{q:.2f}" for q in np.quantile(values.numpy(), [0.1, 0.5, 0.9]))


def particles(steps_list: list[int]) -> None:
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    model = DeepFactorization(5, 5, 5, 3, "linear")
    prior = resolve_prior("normalized_gaussian", problem)
    target = normalized.NormalizedInterpolation(problem, model, prior)
    hidden = HiddenLayers(model, dataclasses.replace(prior, normalize=False)).for_moves()
    direction = torch.linalg.svd(problem.W_star.to(torch.float64))[2][0]
    print("| steps | run | log p | L_gen | mean log w | log10 eig ratios (4 smallest) | log10 angle "
          "| log10 singular values, layer 1 | layer 2 |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---|---|---|---|")
    for steps in steps_list:
        generator = torch.Generator().manual_seed(0)
        for run in range(4):
            kept = {}
            temper = normalized.temper

            def spy(*args, temper=temper, kept=kept, **kwargs):
                out = temper(*args, **kwargs)
                kept["latent"], kept["value"] = out[0], out[1]
                return out

            normalized.temper = spy
            try:
                record = normalized._tempered_run(target, hidden, 500, steps, 0.3, generator)
            finally:
                normalized.temper = temper
            values, vectors = torch.linalg.eigh(hidden.gram(kept["latent"], 500))
            ratios = torch.log10(values[:, :4] / values[:, -1:])
            angle = torch.arccos((vectors[:, :, -1] @ direction).abs().clamp(max=1.0))
            layers = [torch.log10(torch.linalg.svdvals(u)) for u in kept["latent"]]
            cells = [
                steps, run, f"{record['log_volume']:.2f}", f"{float(record['draws']['rb'].mean()):.4f}",
                f"{float(kept['value'].mean()):.2f}", ", ".join(quantiles(ratios[:, i]) for i in range(4)),
                quantiles(torch.log10(angle)),
                *(", ".join(quantiles(s[:, i]) for i in range(s.shape[1])) for s in layers),
            ]  # fmt: skip
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)


def width_rank2_cell():
    problem = make_sensing_problem(5, 5, rank=2, n=22, seed=0, dtype="float64")
    model = DeepFactorization(5, 5, 5, 2, "tanh")
    prior = resolve_prior("gaussian", problem)
    return problem, model, prior


def outlier(runs: int) -> None:
    problem, model, prior = width_rank2_cell()
    made = []
    tempered_run = marginal_sampler._tempered_run

    def spy(*args, **kwargs):
        out = tempered_run(*args, **kwargs)
        made.append(out)
        return out

    marginal_sampler._tempered_run = spy
    try:
        result = marginal_sampler.marginal_sample(
            problem, model, eps=0.0, prior=prior, method="smc", runs=runs, target_ess=1, mcmc_steps=40,
            check_effort=False, seed=3, keep_samples=False,
        )  # fmt: skip
    finally:
        marginal_sampler._tempered_run = tempered_run
    log_volumes = np.array([run["log_volume"] for run in made])
    order = np.argsort(log_volumes)[::-1]
    largest = ", ".join(f"{v:.2f}" for v in log_volumes[order[:5]])
    print(f"{len(made)} runs at 40 steps: pooled log p {result.extra['log_density']:.3f}, median run "
          f"{np.median(log_volumes):.2f}, the largest {largest}")  # fmt: skip
    integral = OutputLayerIntegral(problem, model, prior, 0.0)
    heaviest = made[int(order[0])]
    log_weight = heaviest["log_weight"]
    print(f"heaviest run: final log-weights min / median / max {log_weight.min():.2f} / "
          f"{np.median(log_weight):.2f} / {log_weight.max():.2f}")  # fmt: skip
    top = torch.from_numpy(np.argsort(log_weight)[::-1][:3].copy())
    gram = heaviest["gram"][top]
    analysis = Analysis(gram, integral.covariance, integral.y, np.full(3, -np.inf))
    by_sigma = integral._density(analysis, route="sigma")
    covariance = integral.covariance(gram)[:, : integral.n, : integral.n]
    mpmath.mp.dps = 60
    y = mpmath.matrix(integral.y.tolist())
    print("| particle | G's eigenvalues | sampler | Sigma's Cholesky | mpmath, 60 digits |")
    print("|---:|---|---:|---:|---:|")
    for row in range(3):
        factor = mpmath.cholesky(mpmath.matrix(covariance[row].tolist()))
        white = mpmath.lu_solve(factor, y)
        log_det = 2 * sum(mpmath.log(factor[i, i]) for i in range(integral.n))
        exact = -0.5 * (integral.n * mpmath.log(2 * mpmath.pi) + log_det + (white.T * white)[0])
        eigen = ", ".join(f"{v:.2e}" for v in torch.linalg.eigvalsh(gram[row]).tolist())
        sampler = log_weight[int(top[row])]
        print(f"| {row} | {eigen} | {sampler:.3f} | {by_sigma[row]:.3f} | {float(exact):.3f} |")


def prior_draws(total: int) -> None:
    problem, model, prior = width_rank2_cell()
    integral = OutputLayerIntegral(problem, model, prior, 0.0)
    hidden = HiddenLayers(model, prior)
    batch = 2**16
    for stream in (1, 2):
        generator = torch.Generator().manual_seed(stream)
        start = time.perf_counter()
        log_weight = np.concatenate([
            integral.log_noisy_density(hidden.gram(hidden.draw(batch, generator), batch), 0.0)
            for _ in range(max(total // batch, 1))
        ])  # fmt: skip
        running = []
        counts = [batch * 4**i for i in range(20) if batch * 4**i < log_weight.size] + [log_weight.size]
        for count in counts:
            head = log_weight[:count]
            running.append(f"{count}: {head.max() + math.log(np.exp(head - head.max()).mean()):.2f}")
        print(f"stream {stream}: {log_weight.size} prior draws, log p by count {'; '.join(running)}; "
              f"largest log-weights {', '.join(f'{v:.2f}' for v in np.sort(log_weight)[-3:])} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="particles,outlier,prior")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 160])
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--prior-draws", type=float, default=6.4e7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    parts = args.part.split(",")
    unknown = set(parts) - {"particles", "outlier", "prior"}
    if unknown:
        parser.error(f"--part: unknown {sorted(unknown)}; expected particles, outlier or prior")
    if "particles" in parts:
        particles(args.steps)
    if "outlier" in parts:
        outlier(args.runs)
    if "prior" in parts:
        prior_draws(int(args.prior_draws))


if __name__ == "__main__":
    main()
