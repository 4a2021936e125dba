"""Loss evaluations per effective sample of the G&C posterior: subset simulation vs rejection.

Problem: m = m' = 5, rank 1, n = 15 Gaussian measurements (seed 0); model: depth 2, width 5,
linear, Gaussian prior, float64. A pilot SMC run maps the target volumes V = 1e-3, 1e-5, 1e-8 to
thresholds eps (interpolating its level ladder). Then, at each eps:

* rejection: evaluations per accepted draw (i.i.d., so one accepted draw is one effective
  sample), measured at V = 1e-3 and 1e-5 and extrapolated as 1 / V at 1e-8;
* SMC: total evaluations of ``--runs`` independent runs divided by the effective sample size
  of the pooled posterior mean of L_gen (between-run variance estimate).

Run: ``python benchmarks/bench_smc.py [--particles 1000] [--runs 16]``.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np

from factorkit.fit.auto import sample_posterior
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem

TARGETS = (1e-3, 1e-5, 1e-8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    model = DeepFactorization(5, 5, 5, 2)
    pilot = sample_posterior(
        problem,
        model,
        eps=1e-4,
        prior="gaussian",
        sampler="smc",
        n_particles=4000,
        runs=2,
        seed=99,
        keep_samples=False,
    )
    ladder = pilot.extra["level_log"][0]
    log_eps = np.log([level["threshold"] for level in ladder])[::-1]
    log_v = np.array([level["log_volume"] for level in ladder])[::-1]
    print(
        f"{model.depth}-layer width-{model.width} linear, m = m' = 5, n = 15; "
        f"SMC: {args.particles} particles, {args.runs} runs, {args.steps} pCN steps, p0 = 0.1"
    )
    print(
        "| target V | eps | rejection V (measured) | rejection evals / sample | SMC log V +- se "
        "| SMC evals | SMC ESS | SMC evals / ESS | ratio | rejection s / sample | SMC s / ESS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for target in TARGETS:
        eps = float(np.exp(np.interp(math.log(target), log_v, log_eps)))
        if target >= 1e-5:
            budget = int(min(4e7, 400 / target))
            start = time.perf_counter()
            rejection = sample_posterior(
                problem.to(dtype="float32"),
                model,
                eps=eps,
                prior="gaussian",
                max_evaluations=budget,
                seed=1,
                keep_samples=False,
                progress=False,
            )
            rejection_seconds = (time.perf_counter() - start) / max(rejection.accepted, 1)
            rejection_cost = rejection.evaluations / max(rejection.accepted, 1)
            measured = (
                f"{rejection.acceptance_rate:.2e} ({rejection.accepted} of {rejection.evaluations:.1e})"
            )
        else:
            rejection_cost = 1 / target
            rejection_seconds = float("nan")
            measured = "(extrapolated: 1 / V)"
        start = time.perf_counter()
        smc = sample_posterior(
            problem,
            model,
            eps=eps,
            prior="gaussian",
            sampler="smc",
            n_particles=args.particles,
            runs=args.runs,
            mcmc_steps=args.steps,
            seed=2,
            keep_samples=False,
        )
        smc_seconds = time.perf_counter() - start
        log_volume, se = smc.log_volume
        ess = smc.extra["ess"]
        smc_cost = smc.evaluations / ess
        rejection_time = "extrapolated" if math.isnan(rejection_seconds) else f"{rejection_seconds:.2e}"
        print(
            f"| {target:.0e} | {eps:.3e} | {measured} | {rejection_cost:,.0f} "
            f"| {log_volume:.2f} +- {se:.2f} (log {target:.0e} = {math.log(target):.2f}) "
            f"| {smc.evaluations:,} | {ess:,.0f} | {smc_cost:,.0f} | {rejection_cost / smc_cost:,.0f}x "
            f"| {rejection_time} | {smc_seconds / ess:.2e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
