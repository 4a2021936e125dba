"""The direction proposals of the normalized eps = 0 sampler, measured on the paper's problem.

    python benchmarks/explore_normalized_direction.py [--depth 2] [--activation linear]

Given the hidden layers ``F`` the direction ``v`` of the complement coordinates weighs
``Q_v^{-D/2}``. The first sampler proposed ``v`` from the angular central Gaussian of ``z`` given
``F`` (:meth:`factorkit.fit.normalized.NormalizedInterpolation.log_weights`, kept for depth 1); on
the paper's problem (m = m' = 5, n = 15, seed 0) that is far broader than the weight, and its
estimates of ``log p(h = y)`` fell ~2 below the eps -> 0 limit of subset simulation. The sampler
now uses :class:`factorkit.fit.normalized.Directions` (gnomonic t about the minimiser of ``Q_v``
on the sphere). Printed: for 40 hidden draws, Kish's ESS of 4096 directions each (median and
minimum) for the old proposal and for ``Directions`` with t of ``--nu`` degrees of freedom; then
nested importance sampling over ``F`` (``--inner`` directions per hidden draw): its
``log p(h = y)``, Kish's ESS over the hidden draws and the posterior mean of ``L_gen``; then the
sampler itself (tempered SMC); then the reference, subset simulation at ``--eps`` (3e-4 and 1e-4)
extrapolated to 0 (Richardson).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np
import torch

from factorkit.fit import normalized
from factorkit.fit.hidden import HiddenLayers
from factorkit.fit.normalized import Directions, NormalizedInterpolation, normalized_zero_sample
from factorkit.fit.prior import resolve_prior
from factorkit.fit.smc import subset_simulation
from factorkit.fit.weights import kish_ess, log_mean_exp, normalized_weights
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem


def kish(log_weight: np.ndarray) -> float:
    return kish_ess(normalized_weights(log_weight))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--activation", default="linear")
    parser.add_argument("--nu", type=int, nargs="+", default=[1, 2, 4, 8, 30])
    parser.add_argument("--inner", type=int, default=256, help="directions per hidden draw (nested)")
    parser.add_argument("--hidden", type=int, default=2048, help="hidden draws (nested)")
    parser.add_argument("--target-ess", type=float, default=200, help="the sampler's (tempered SMC)")
    parser.add_argument("--directions", type=int, default=None, help="the sampler's per hidden draw")
    parser.add_argument("--runs", type=int, default=16, help="subset-simulation runs per threshold")
    parser.add_argument("--eps", type=float, nargs=2, default=[3e-4, 1e-4], help="the reference's thresholds")
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
        sizes = [kish(weigh(gram[None])) for gram in grams]
        return f"median {np.median(sizes):.0f}, min {min(sizes):.0f}"

    print(f"depth {args.depth} {args.activation}: Kish's ESS of 4096 directions for each of 40 hidden draws")

    def old_weights(gram):  # one direction per copy of the hidden draw
        copies = gram.expand(4096, -1, -1).clone()
        return target.log_weights(
            copies, torch.randn(4096, target.k, generator=generator, dtype=torch.float64)
        )[0]

    def inner_weights(directions, gram):  # the 4096 directions of one hidden draw
        return directions.evaluate(gram, directions.draw(1, generator))[1][0].numpy()

    old = per_hidden_draw(old_weights)
    print(f"  angular central Gaussian (the first sampler's): {old}")
    for nu in args.nu:
        directions = Directions(target, count=4096, dof=nu)
        print(
            f"  Directions, t with nu = {nu}: {per_hidden_draw(lambda g, d=directions: inner_weights(d, g))}"
        )

    directions = Directions(target, count=args.inner, dof=args.nu[0])
    start = time.perf_counter()
    per_draw, gens = [], []
    for first in range(0, args.hidden, 32):
        count = min(32, args.hidden - first)
        gram = hidden.gram(hidden.draw(count, generator), count)
        log_weight, inner, v = directions.evaluate(gram, directions.draw(count, generator))
        share = torch.softmax(inner, 1)
        per_draw.append(log_weight)
        gens.append((share * target.gen_loss(v.reshape(-1, target.k)).reshape(share.shape)).sum(1).numpy())
    per_draw, gens = np.concatenate(per_draw), np.concatenate(gens)
    w = np.exp(per_draw - per_draw.max())
    print(
        f"nested importance sampling (nu = {args.nu[0]}, {args.inner} directions x {args.hidden} "
        f"hidden draws, {time.perf_counter() - start:.0f} s): log p(h = y) {log_mean_exp(per_draw):.3f}, "
        f"Kish's ESS over hidden draws {kish(per_draw):.0f}, L_gen {(w * gens).sum() / w.sum():.4f}"
    )

    def log_ball(eps: float) -> float:
        return (problem.n / 2) * math.log(math.pi * problem.n * eps) - math.lgamma(problem.n / 2 + 1)

    if args.directions is not None:
        normalized.DIRECTIONS = args.directions
    start = time.perf_counter()
    # the sampler's 10-step runs, without the effort check (bench_effort.py measures that)
    state = normalized_zero_sample(
        problem, model, prior, method="smc", target_ess=args.target_ess, check_effort=False,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    print(
        f"the sampler (tempered SMC, {normalized.DIRECTIONS} directions per hidden draw, target ESS "
        f"{args.target_ess:g}, {time.perf_counter() - start:.0f} s): "
        f"log p(h = y) {state['log_volume']:.3f} +- {state['log_volume_se']:.3f}, ESS {state['ess']:.0f}, "
        f"L_gen {state['rb']:.4f} +- {state['rb_se']:.4f}"
    )

    seen = {}
    high, low = args.eps
    for eps in (high, low):
        result = subset_simulation(problem, model, eps=eps, prior=prior, n_particles=1000, runs=args.runs,
                                   seed=7, keep_samples=False)  # fmt: skip
        gen_low, gen_high = result.gen_loss_interval()
        seen[eps] = (result.extra["log_volume"] - log_ball(eps), result.extra["log_volume_se"],
                     result.gen_loss_mean, (gen_high - gen_low) / (2 * 1.96))  # fmt: skip
        value, se, gen, gen_se = seen[eps]
        print(f"subset simulation, eps = {eps:g}, {args.runs} runs: log V - log vol(ball) {value:.3f} "
              f"+- {se:.3f}, L_gen {gen:.4f} +- {gen_se:.4f}")  # fmt: skip
    ratio = high / low  # Richardson for an O(eps) term
    limit = [(ratio * seen[low][i] - seen[high][i]) / (ratio - 1) for i in (0, 2)]
    ses = [math.hypot(ratio * seen[low][i], seen[high][i]) / (ratio - 1) for i in (1, 3)]
    print(f"  extrapolated to eps = 0: log p {limit[0]:.3f} +- {ses[0]:.3f}, ", end="")
    print(f"L_gen {limit[1]:.4f} +- {ses[1]:.4f}")


if __name__ == "__main__":
    main()
