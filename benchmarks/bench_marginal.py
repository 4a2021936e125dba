"""G&C with the output layer integrated out (issue 29): speed, width without limit, an anchor.

Problem: the paper's (m = m' = 5, rank 1, n = 15 Gaussian measurements, seed 0); Gaussian prior
with the paper's fan-out layer scales. Three parts, each a table on stdout:

``speed``  effective samples per second of rejection, subset simulation (SMC) and the marginal
           sampler on the same cells (depth 2, width 160, linear / tanh / leaky ReLU) at the
           published eps = 0.02 and below (0.002, where rejection accepts nothing in its budget,
           and 0). ESS is that of the posterior mean of L_gen, the figure the study reports:
           rejection's accepted draws (i.i.d.); SMC's between-run ESS; the marginal sampler's
           posterior variance of L_gen over the squared standard error of its Rao-Blackwellized
           mean (``extra['ess_gen_loss']``). Ratios against SMC and rejection from the same run;
           rejection gets ``--budget`` seconds of draws.
``width``  the posterior mean of L_gen (Rao-Blackwellized, 95% interval) against random guessing
           (the prior mean of L_gen) for widths 5 to 1e5 (linear: the Bartlett factor costs
           nothing in the width) and as far as tanh / leaky ReLU go in ``--budget`` seconds a cell,
           at eps = 0 and 0.02: the width theorem says the gap closes.
``anchor`` log V(eps) on depth 2, width 5, linear (50 weights) by a maintained nested sampler
           (dynesty, ``pip install dynesty``: the likelihood ``-L_train``, stopped where it
           reaches ``-eps``; log X at the crossing, error sqrt(iterations) / nlive), subset
           simulation and the marginal sampler, side by side.

Run: ``python benchmarks/bench_marginal.py speed|width|anchor [--budget SECONDS]``.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np

from factorkit.fit.guess_check import guess_and_check
from factorkit.fit.marginal_sampler import marginal_sample
from factorkit.fit.prior import resolve_prior
from factorkit.fit.smc import subset_simulation
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem


def paper_problem(dtype: str = "float64"):
    return make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype=dtype)


def timed(function, *args, **kwargs):
    """``(result, seconds)`` of one call, its RuntimeWarnings (an ESS below target, poor mixing)
    silenced: the tables report ESS and errors themselves."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def speed(budget: float) -> None:
    problem = paper_problem()
    print("| cell | eps | sampler | seconds | ESS | ESS / s | log V (se) | L_gen (95%) | vs SMC | vs rej. |")
    print("|---|---|---|---:|---:|---:|---|---|---:|---:|")
    for activation in ("linear", "tanh", "leaky_relu"):
        model = DeepFactorization(5, 5, 160, 2, activation)
        for eps in (0.02, 0.002, 0.0):
            rates, rows = {}, []
            if eps > 0:
                pilot = guess_and_check(paper_problem("float32"), model, eps=eps, max_evaluations=2**17,
                                        seed=0, keep_samples=False, progress=False)  # fmt: skip
                draws = int(budget / (pilot.wall_time / pilot.evaluations))  # what fits in the budget
                rejection, seconds = timed(
                    guess_and_check, paper_problem("float32"), model, eps=eps, n_samples=200, seed=1,
                    keep_samples=False, progress=False, max_evaluations=draws,
                )  # fmt: skip
                rates["rejection"] = rejection.accepted / seconds
                rows.append(("rejection", seconds, rejection.accepted, rejection))
                smc, seconds = timed(subset_simulation, problem, model, eps=eps, prior="gaussian",
                                     n_particles=1000, runs=8, seed=2, keep_samples=False)  # fmt: skip
                rates["smc"] = smc.extra["ess"] / seconds
                rows.append(("smc", seconds, smc.extra["ess"], smc))
            marginal, seconds = timed(marginal_sample, problem, model, eps=eps, target_ess=200, seed=3,
                                      keep_samples=False)  # fmt: skip
            rates["marginal"] = marginal.extra["ess_gen_loss"] / seconds
            rows.append(("marginal", seconds, marginal.extra["ess_gen_loss"], marginal))
            for name, seconds, ess, result in rows:
                if eps == 0:
                    extra = result.extra
                    volume = f"log density {extra['log_density']:.2f} ({extra['log_density_se']:.2f})"
                else:
                    log_v, se = result.log_volume
                    volume = f"{log_v:.2f} ({se:.2f})" if math.isfinite(log_v) else "none accepted"
                low, high = result.gen_loss_interval()
                gen = f"{result.gen_loss_mean:.4f} ({low:.4f}, {high:.4f})" if ess else "-"
                vs_smc = rates[name] / rates["smc"] if "smc" in rates and rates["smc"] > 0 else math.nan
                vs_rej = rates[name] / rates["rejection"] if rates.get("rejection", 0) > 0 else math.inf
                print(
                    f"| {activation} 160x2 | {eps:g} | {name} | {seconds:.1f} | {ess:.0f} | "
                    f"{rates[name]:.3g} | "
                    f"{volume} | {gen} | {vs_smc:.3g} | {vs_rej:.3g} |",
                    flush=True,
                )


WIDTHS = (5, 40, 320, 2560, 20480, 100_000)


def width(budget: float) -> None:
    problem = paper_problem()
    print("| activation | width | eps | L_gen (95%) | random guess | gap (95%) | ESS | seconds |")
    print("|---|---:|---:|---|---:|---|---:|---:|")
    for activation in ("linear", "tanh", "leaky_relu"):
        for eps in (0.02, 0.0):
            for k in WIDTHS:
                model = DeepFactorization(5, 5, k, 2, activation)
                result, seconds = timed(marginal_sample, problem, model, eps=eps, target_ess=400, seed=4,
                                        keep_samples=False)  # fmt: skip
                low, high = result.gen_loss_interval()
                guess, guess_se = result.prior_gen_loss_mean, result.prior_gen_loss_se
                gap = result.gen_loss_mean - guess
                half = math.hypot((high - low) / 2, 1.96 * guess_se)
                print(
                    f"| {activation} | {k} | {eps:g} | {result.gen_loss_mean:.4f} ({low:.4f}, {high:.4f}) | "
                    f"{guess:.4f} | {gap:+.4f} ({gap - half:+.4f}, {gap + half:+.4f}) | "
                    f"{result.extra['ess']:.0f} | {seconds:.1f} |",
                    flush=True,
                )
                if seconds > budget:  # wider nets of this activation cost more still
                    break


def anchor(budget: float) -> None:
    import dynesty
    from scipy import stats

    problem = paper_problem()
    model = DeepFactorization(5, 5, 5, 2)
    prior = resolve_prior("gaussian", problem)
    scales = prior.scales(model)
    A = problem.A.numpy().reshape(problem.n, 25)
    y = problem.y.numpy()

    def transform(u):
        z = stats.norm.ppf(u)
        W1 = scales[0] * z[:25].reshape(5, 5)
        W2 = scales[1] * z[25:].reshape(5, 5)
        return np.concatenate([W1.ravel(), W2.ravel()])

    def loglike(theta):
        W = theta[25:].reshape(5, 5) @ theta[:25].reshape(5, 5)
        r = A @ W.ravel() - y
        return -float(r @ r) / len(y)

    print(
        "| eps | nested sampling (dynesty) log V | SMC log V | marginal log V | dynesty calls "
        "| seconds (dynesty / SMC / marginal) |"
    )
    print("|---:|---|---|---|---:|---|")
    for eps in (0.02, 0.005):
        start = time.perf_counter()
        nlive = 500
        sampler = dynesty.NestedSampler(
            loglike, transform, 50, nlive=nlive, sample="rslice", rstate=np.random.default_rng(5)
        )
        sampler.run_nested(dlogz=0.0, logl_max=-eps, print_progress=False, add_live=False,
                           maxcall=int(budget * 3e4))  # fmt: skip
        results = sampler.results
        logl, logvol = np.asarray(results.logl), np.asarray(results.logvol)
        crossing = int(np.searchsorted(logl, -eps))
        if crossing >= logl.size:
            nested = "not reached"
        else:
            log_v = float(logvol[crossing])
            nested = f"{log_v:.2f} ({math.sqrt(crossing) / nlive:.2f})"
        dyn_seconds = time.perf_counter() - start
        start = time.perf_counter()
        smc = subset_simulation(
            problem, model, eps=eps, prior="gaussian", n_particles=1000, runs=8, seed=6, keep_samples=False
        )
        smc_seconds = time.perf_counter() - start
        start = time.perf_counter()
        marginal = marginal_sample(problem, model, eps=eps, target_ess=1000, seed=7, keep_samples=False)
        marginal_seconds = time.perf_counter() - start
        print(
            f"| {eps:g} | {nested} | {smc.extra['log_volume']:.2f} ({smc.extra['log_volume_se']:.2f}) | "
            f"{marginal.extra['log_volume']:.3f} ({marginal.extra['log_volume_se']:.3f}) | "
            f"{int(results.ncall.sum())} | "
            f"{dyn_seconds:.0f} / {smc_seconds:.1f} / {marginal_seconds:.1f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("speed", "width", "anchor"))
    parser.add_argument("--budget", type=float, default=60.0, help="seconds a cell may take (roughly)")
    args = parser.parse_args()
    {"speed": speed, "width": width, "anchor": anchor}[args.part](args.budget)


if __name__ == "__main__":
    main()
