"""Prior draws per second over the paper's G&C settings: authors' approach vs direct vs reparametrized.

One run, same process, same problem (m = m' = 5, n = 15, float32), each implementation computing
L_train and L_gen of every draw:

* ``authors``: a re-implementation of the approach of the paper's public code: every layer drawn,
  losses as the summed ``(batch, n, m, m')`` broadcast product, and the per-draw losses
  appended to Python lists (all draws for the prior mean, accepted ones for the posterior mean),
  in the batch sizes of the paper's configs (1e7 / 1e6 / 2e5 by width), capped at 2^20 draws so
  the broadcast fits in this machine's memory;
* ``authors, small batches``: the same with factorkit's cache-sized chunks (a kinder baseline);
* ``direct``: factorkit's rejection sampler drawing every layer (``backend='direct'``);
* ``reparam``: factorkit with the exact reparametrized draw (``backend='reparam'``, where it
  applies: width >= m');
* ``auto``: what factorkit uses by default.

Run: ``python benchmarks/bench_reparam.py [--draws 65536] [--quick]``.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch

from factorkit.fit.guess_check import Prior, default_chunk_size, guess_and_check
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem

EPS = 0.05
# batch sizes of the paper's width configs (widths 5..160); the depth configs use 1e7
AUTHORS_BATCH = {5: 10**7, 10: 10**7, 20: 10**6, 40: 10**6, 80: 200_000, 160: 200_000}
MEMORY_CAP = 2**20


def authors_approach(problem, model, prior, draws: int, chunk: int, seed: int) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(seed)
    A, y, B = problem.A, problem.y, problem.complement
    yb = (B * problem.W_star).sum((1, 2))
    prior_losses: list[float] = []
    accepted_losses: list[float] = []
    done = 0
    with torch.no_grad():
        while done < draws:
            count = min(chunk, draws - done)
            W = prior.finish(model.end_to_end(prior.sample_weights(model, count, generator)))
            train = ((A.unsqueeze(0) * W.unsqueeze(1)).sum((-1, -2)) - y).square().mean(1)
            gen = ((B.unsqueeze(0) * W.unsqueeze(1)).sum((-1, -2)) - yb).square().mean(1)
            prior_losses.extend(gen.tolist())
            accepted_losses.extend(gen[train < EPS].tolist())
            done += count
    return sum(prior_losses) / len(prior_losses), len(accepted_losses)


def rate(function, draws: int, repeats: int) -> float:
    function()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return draws / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=65_536)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="linear, unnormalized only")
    args = parser.parse_args()
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float32")
    activations = ["linear"] if args.quick else ["linear", "tanh", "leaky_relu"]
    priors = ["gaussian"] if args.quick else ["gaussian", "normalized_gaussian"]
    grid = [(k, 2) for k in (5, 10, 20, 40, 80, 160)] + [(5, d) for d in (3, 4, 6, 8, 10)]
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, threads {threads}, {args.draws} draws, m = m' = 5, n = 15")
    print(
        "| prior | activation | k | d | authors /s | authors, small batches /s | direct /s | reparam /s | "
        "auto | auto / authors | auto / authors small | auto / direct |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for prior_name in priors:
        prior = Prior.from_name(prior_name, target_norm=float(problem.W_star.norm()))
        for activation in activations:
            for width, depth in grid:
                model = DeepFactorization(5, 5, width, depth, activation)
                chunk = default_chunk_size(model, problem.device)
                batch = min(AUTHORS_BATCH[width] if depth == 2 else 10**7, MEMORY_CAP)
                # the paper's batches are large: time at least one full batch
                big = max(args.draws, min(batch, 4 * args.draws))
                rates = {
                    "authors": rate(partial(authors_approach, problem, model, prior, big, batch, 0), big, 1),
                    "authors_small": rate(
                        partial(authors_approach, problem, model, prior, args.draws, chunk, 0),
                        args.draws,
                        args.repeats,
                    ),
                }
                for backend in ("direct", "reparam", "auto"):
                    run = partial(
                        guess_and_check,
                        problem,
                        model,
                        eps=EPS,
                        prior=prior,
                        max_evaluations=args.draws,
                        keep_samples=False,
                        progress=False,
                        backend=backend,
                    )
                    rates[backend] = rate(run, args.draws, args.repeats)
                chosen = prior.backend_for(model, "auto")
                print(
                    f"| {prior_name} | {activation} | {width} | {depth} | {rates['authors']:,.0f} | "
                    f"{rates['authors_small']:,.0f} | {rates['direct']:,.0f} | {rates['reparam']:,.0f} | "
                    f"{chosen} | {rates['auto'] / rates['authors']:.1f}x | "
                    f"{rates['auto'] / rates['authors_small']:.1f}x | "
                    f"{rates['auto'] / rates['direct']:.2f}x |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
