"""Where the interpolating posterior does not exist: what G&C's threshold posterior does as eps -> 0.

    python benchmarks/explore_interpolating_limit.py [--depths 2 5] [--eps 1e-2 1e-3 1e-4 1e-5 1e-6]

:mod:`factorkit.fit.tail` counts the tail index ``alpha`` of the ``eps = 0`` weight under the
prior: ``E_F[N(y; 0, Sigma(F))]`` is finite iff ``alpha > 1``. Where it is, ``V(eps)`` over the
volume of the ball of radius ``sqrt(n eps)`` tends to it as ``eps -> 0``; where it is not, the
ratio grows like ``eps^-gamma`` (``gamma = (vanishing - cost) / 2``, the counted stratum's) and
the posterior concentrates on ``W = W*``. For each depth (linear, width 5, the paper's problem:
m = m' = 5, rank 1, n = 15, seed 0) this runs the marginal sampler's tempered SMC (8 runs of 500
particles, ``check_effort=False``) at each ``eps > 0``, where the weight ``P(accept | F) <= 1`` is
bounded and the posterior exists, and prints ``log V(eps) - log vol(ball)`` and the posterior mean
of ``L_gen``, each with its standard error, beside the count.
"""

from __future__ import annotations

import argparse
import time

import torch

from factorkit.fit.ball import log_ball_volume
from factorkit.fit.marginal_sampler import marginal_sample
from factorkit.fit.prior import resolve_prior
from factorkit.fit.tail import weight_tail_index
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--eps", type=float, nargs="+", default=[1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
    args = parser.parse_args()
    torch.set_num_threads(1)
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    prior = resolve_prior("gaussian", problem)
    print("| depth | alpha (counted) | gamma (counted) | eps | log V - log vol(ball) | L_gen | seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for depth in args.depths:
        model = DeepFactorization(5, 5, 5, depth)
        tail = weight_tail_index(problem, model, prior)
        gamma = max(0.0, (tail.vanishing - tail.cost) / 2)
        for eps in args.eps:
            start = time.perf_counter()
            result = marginal_sample(problem, model, eps=eps, prior=prior, method="smc", runs=8,
                                     check_effort=False, seed=0, keep_samples=False)  # fmt: skip
            extra = result.extra
            ratio = extra["log_volume"] - log_ball_volume(problem.n, problem.n * eps)
            cells = [
                str(depth), f"{tail.alpha:.2f}", f"{gamma:.2f}", f"{eps:g}",
                f"{ratio:.2f} +- {extra['log_volume_se']:.2f}",
                f"{extra['gen_loss_rb']:.4f} +- {extra['gen_loss_rb_se']:.4f}",
                f"{time.perf_counter() - start:.0f}",
            ]  # fmt: skip
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
