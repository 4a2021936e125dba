"""How heavy is the eps = 0 weight's tail under the prior? Hill's estimate of its tail index.

    python benchmarks/explore_weight_tail.py [--draws 1048576] [--cells 2:linear 3:linear:10:15:1 ...]
        [--prior normalized_gaussian]

At ``eps = 0`` (Gaussian prior) each prior draw of the hidden layers weighs
``w = N(y; 0, Sigma(F))`` and ``p(h = y) = E[w]``. If ``P(w > t)`` falls like ``t^-alpha``,
importance sampling from the prior has infinite variance for ``alpha < 2`` and ``E[w]`` itself is
infinite for ``alpha < 1``; either way the mass sits where the prior rarely goes, which is what
makes tempered SMC's answer move with its effort (``bench_effort.py``). For each cell
``depth:activation[:width[:n[:rank]]]`` (defaults: width 5, n = 15, rank 1; m = m' = 5, Gaussian
sensing, seed 0) this draws ``--draws`` hidden layers and prints Hill's estimate
``1 / mean(log w_(i) - log w_(k))`` over the ``k`` largest weights for ``k`` = 100, 1000, 10000,
beside the index :func:`factorkit.fit.tail.weight_tail_index` counts for linear cells (and the
stratum's rank that sets it). A pure power tail gives the same number at every ``k``; a lighter
one (log-normal-like, a power with logarithmic factors) gives estimates that rise as ``k`` falls,
so a small ``k``'s value is the one closest to the asymptotic index. The count is asymptotic:
where it is large (a light tail), ``2^20`` draws only reach the body, and Hill's estimates sit below it.

``--prior normalized_gaussian``: the depth figures' prior, whose weight ``p(h = y | F)`` is the
direction integral of :class:`factorkit.fit.normalized.Directions` (importance sampling about its
mode, ``--directions`` per hidden draw: an unbiased estimate, whose own error is small next to
the hidden layers' spread), against the count with one condition more (the sphere).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from factorkit.fit.hidden import HiddenLayers
from factorkit.fit.marginal import OutputLayerIntegral
from factorkit.fit.normalized import Directions, NormalizedInterpolation
from factorkit.fit.prior import resolve_prior
from factorkit.fit.tail import weight_tail_index
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem

BATCH = 65536


def hill(log_weight: np.ndarray, k: int) -> float:
    """Hill's estimate of the tail index from the ``k`` largest of ``exp(log_weight)``."""
    top = np.sort(log_weight)[::-1]
    return float(1.0 / np.mean(top[:k] - top[k]))


def log_weights(problem, model, prior, draws: int, directions: int) -> np.ndarray:
    """The ``eps = 0`` log-weights of ``draws`` prior draws of the hidden layers (seed 0)."""
    hidden = HiddenLayers(model, prior)
    generator = torch.Generator().manual_seed(0)
    if prior.normalize:
        integral = Directions(NormalizedInterpolation(problem, model, prior), count=directions)
        batch = BATCH // 8
    else:
        integral, batch = OutputLayerIntegral(problem, model, prior, 0.0), BATCH
    out = []
    for _ in range(max(1, draws // batch)):
        gram = hidden.gram(hidden.draw(batch, generator), batch)
        if prior.normalize:
            out.append(integral.evaluate(gram, integral.draw(batch, generator))[0])
        else:
            out.append(integral.analyse(gram).log_weight)
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2**20)
    parser.add_argument("--cells", nargs="+", default=["2:linear", "3:linear", "4:linear", "6:tanh"])
    parser.add_argument("--prior", default="gaussian", choices=["gaussian", "normalized_gaussian"])
    parser.add_argument("--directions", type=int, default=16, help="per hidden draw (normalized prior)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| depth | activation | width | n | rank | counted (stratum rank) | Hill k = 100 | k = 1000 "
          "| k = 10000 | seconds |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cell in args.cells:
        depth, activation, *rest = cell.split(":")
        width, n, rank = (list(map(int, rest)) + [5, 15, 1][len(rest) :])[:3]
        problem = make_sensing_problem(5, 5, rank=rank, n=n, seed=0, dtype="float64")
        prior = resolve_prior(args.prior, problem)
        model = DeepFactorization(5, 5, width, int(depth), activation)
        tail = weight_tail_index(problem, model, prior)
        counted = "-" if tail is None else f"{tail.alpha:.2f} ({tail.rank})"
        start = time.perf_counter()
        log_weight = log_weights(problem, model, prior, args.draws, args.directions)
        indices = " | ".join(f"{hill(log_weight, k):.2f}" for k in (100, 1000, 10000))
        seconds = time.perf_counter() - start
        print(f"| {depth} | {activation} | {width} | {n} | {rank} | {counted} | {indices} | {seconds:.0f} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
