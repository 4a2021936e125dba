"""The normalized ``eps = 0`` posterior's direction integral given the hidden layers: the contour
formula (:func:`factorkit.fit.normalized.sphere_integral`, deterministic) against the 64-direction
importance estimate the sampler moves with (:class:`factorkit.fit.normalized.Directions`).

    python benchmarks/bench_direction_integral.py [--cell depth:2:linear] [--seed 0]
        [--draws 500] [--runs 32 12] [--steps 10 40]
    python benchmarks/bench_direction_integral.py --rows depth:2:linear depth:3:linear [--row-seeds 0 1]
    python benchmarks/bench_direction_integral.py --contour-only [--cell depth:3:linear]
    python benchmarks/bench_direction_integral.py --kernels depth:2:linear depth:3:linear [--row-seeds 0 1]

Three tables on one cell of the depth figure (normalized Gaussian prior, width 5, ``eps = 0``),
one torch thread:

1. **Accuracy and cost** of the contour per trapezoid step (``normalized.CONTOUR_STEP``) on
   ``--draws`` prior draws of the hidden layers: the largest difference in ``log I`` and in the
   direction's mean from a step of 0.05, and milliseconds per call, beside one call of
   ``Directions.evaluate`` on the same draws; then ``exact_log_weight`` with each row of the
   contour to its own reach and every row to the farthest (``normalized.ROW_REACH``).
2. **Where the estimate misses**: the directions' log-weight (the log of the mean of 64 weights,
   averaged over 50 independent sets in the linear domain: 3,200 directions a draw) against the
   contour's exact ``log p(h = y | F)``, over the same draws: the median and the largest shortfall,
   and the share of draws more than 1 (a factor e) below; on the four with the largest shortfall,
   a third estimate by importance sampling from a projected normal (:func:`projected_normal`).
3. **Tempered SMC with either weight** (500 particles, the study's temperature rule and moves;
   ``--runs`` runs at each of ``--steps`` moves a temperature): with the exact weight the
   latents are the hidden layers' alone (the direction integrated out), with the estimate they
   are the hidden layers' and 64 directions' (the sampler's extended target). Per row: seconds
   a run, the pooled ``log p(h = y)`` (``log mean`` over runs) with the runs' standard error, the
   pooled posterior mean of ``L_gen`` (each draw's exact conditional mean, pooled by the runs'
   constants) and its ESS per second.
4. ``--rows``: the study's own ``eps = 0`` rows of those cells (``study paper --zero-depth``'s
   job: the effort check and the added runs included), with each weight: seconds, ``log p(h =
   y)``, the posterior mean of ``L_gen``, the ESS and the moves a temperature the effort check
   settled on.
5. ``--kernels``: the contour's transcendental functions per entry, torch's against NumPy's
   (:func:`elementwise`), then the exact weight with NumPy's kernels (the default) against torch's
   (``torch_kernels()``), per draw and on the study's rows (:func:`kernels`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
import warnings

import numpy as np
import torch

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit import normalized
from factorkit.fit.hidden import HiddenLayers
from factorkit.fit.smc import effective_sample_size
from factorkit.fit.weights import log_mean_exp, log_mean_se, run_weights, temper


def zero_cell(cell: str):
    """The study's ``eps = 0`` cell named ``figure:depth:activation``."""
    figure, depth, activation = cell.split(":")
    return paper_cell(figure, zero_depth=True, depth=int(depth), activation=activation, eps=0)


def setup(cell: str, seed: int):
    problem, model, prior = gc_setup(zero_cell(cell).params, seed, "cpu")
    target = normalized.NormalizedInterpolation(problem, model, prior)
    hidden = HiddenLayers(model, dataclasses.replace(prior, normalize=False))
    return target, hidden, normalized.Directions(target)


def accuracy(target, directions, gram) -> None:
    P, b, c0, _ = directions._quadratic(gram)
    values, vectors = torch.linalg.eigh(P)  # the plain form: the paper's prior draws are benign
    print("| step | max |log I - ref| | max |E v - ref| | ms a call |")
    print("|---|---|---|---|")
    kept, reference = normalized.CONTOUR_STEP, None
    try:
        for step in (0.05, 0.1, 0.2, 0.3, 0.4):
            normalized.CONTOUR_STEP = step
            normalized.sphere_integral(values, vectors, b, c0, target.D, mean=True)  # warm
            start = time.perf_counter()
            log_I, mean = normalized.sphere_integral(values, vectors, b, c0, target.D, mean=True)
            ms = (time.perf_counter() - start) * 1e3
            reference = reference or (log_I, mean)
            print(f"| {step} | {float((log_I - reference[0]).abs().max()):.1e} | "
                  f"{float((mean - reference[1]).abs().max()):.1e} | {ms:.1f} |")  # fmt: skip
    finally:
        normalized.CONTOUR_STEP = kept
    generator = torch.Generator().manual_seed(1)
    start = time.perf_counter()
    directions.evaluate(gram, directions.draw(len(gram), generator))
    print(
        f"\nDirections.evaluate on the same {len(gram)} draws: {(time.perf_counter() - start) * 1e3:.1f} ms\n"
    )
    row_reach(directions, gram)


def row_reach(directions, gram, repeats: int = 5) -> None:
    """``Directions.exact_log_weight`` with each row of the contour to its own reach against every
    row to the population's farthest (``normalized.ROW_REACH``): best of ``repeats``, interleaved,
    and the largest difference in the log-weight."""
    best, values = {}, {}
    try:
        for repeat in range(repeats):
            for flag in (False, True) if repeat % 2 == 0 else (True, False):
                normalized.ROW_REACH = flag
                start = time.perf_counter()
                values[flag] = directions.exact_log_weight(gram)
                best[flag] = min(best.get(flag, math.inf), time.perf_counter() - start)
    finally:
        normalized.ROW_REACH = True
    difference = float((values[True] - values[False]).abs().max())
    print(f"exact_log_weight on {len(gram)} draws: every row to the farthest reach "
          f"{best[False] * 1e3:.1f} ms, each row to its own {best[True] * 1e3:.1f} ms "
          f"({best[False] / best[True]:.2f}x); largest difference {difference:.1e}\n")  # fmt: skip


def projected_normal(directions, gram, draws: int = 400_000, nu: float = 4.0, uniform: float = 0.1):
    """An independent check of one draw's ``log p(h = y | F)``: importance sampling of the direction
    from ``x / |x|``, ``x ~ N(v*, nu Q* / D (P - lam*)^{-1})`` (the radial normalization follows
    the sphere's curvature, which the gnomonic proposal does not), with a ``uniform`` share of
    uniform directions; the projected normal's density by its radial integral (a fine grid).
    Returns the estimate and its standard error (delta method)."""
    target, k, D = directions.target, directions.k, directions.D
    P, b, c0, log_det = directions._quadratic(gram)
    values, vectors = torch.linalg.eigh(P)
    v_star, lam, _ = normalized._trust_region(values, vectors, b)
    P, b, c0, v_star, values, vectors = P[0], b[0], c0[0], v_star[0], values[0], vectors[0]
    q_star = float(c0 + 2 * b @ v_star + v_star @ P @ v_star)
    shifted = (values - lam[0]).clamp_min(1e-300)
    covariance = vectors @ torch.diag(nu * q_star / D / shifted) @ vectors.T
    precision = vectors @ torch.diag(D * shifted / (nu * q_star)) @ vectors.T
    root, log_det_cov = (
        torch.linalg.cholesky((covariance + covariance.T) / 2),
        float(torch.logdet(covariance)),
    )
    generator = torch.Generator().manual_seed(9)
    grid = torch.linspace(0, 1, 401, dtype=torch.float64)[1:]
    logs = []
    for _ in range(draws // 100_000):
        x = v_star + torch.randn(90_000, k, generator=generator, dtype=torch.float64) @ root.T
        v = torch.cat(
            [
                x / x.norm(dim=1, keepdim=True),
                torch.randn(10_000, k, generator=generator, dtype=torch.float64),
            ]
        )
        v = v / v.norm(dim=1, keepdim=True)
        A, B, C = ((v @ precision) * v).sum(1), v @ (precision @ v_star), float(v_star @ precision @ v_star)
        reach = (B + (B * B + 4 * A * (k - 1)).sqrt()) / (2 * A) + 12 / A.sqrt()
        r = reach[:, None] * grid
        radial = (k - 1) * r.log() - (A[:, None] * r * r - 2 * B[:, None] * r + C) / 2
        top = radial.amax(1, keepdim=True)
        log_radial = top[:, 0] + ((radial - top).exp().sum(1) * reach / len(grid)).log()
        log_q = torch.logaddexp(
            math.log(1 - uniform) - k / 2 * math.log(2 * math.pi) - 0.5 * log_det_cov + log_radial,
            torch.full_like(log_radial, math.log(uniform) - directions.log_sphere),
        )
        Q = c0 + 2 * v @ b + ((v @ P) * v).sum(1)
        logs.append(-D / 2 * Q.log() - log_q)
    logs = torch.cat(logs)
    w = (logs - logs.max()).exp()
    log_I = float(logs.max() + w.mean().log())
    estimate = target.constant - 0.5 * float(log_det[0]) + log_I - directions.log_sphere
    return estimate, float(w.std() / w.mean()) / math.sqrt(len(w))


def shortfall(target, directions, gram) -> None:
    generator = torch.Generator().manual_seed(2)
    sets = torch.stack(
        [
            torch.from_numpy(directions.evaluate(gram, directions.draw(len(gram), generator))[0])
            for _ in range(50)
        ]
    )
    estimate = torch.logsumexp(sets, 0) - math.log(len(sets))
    gap = directions.exact_log_weight(gram) - estimate
    for i in gap.argsort(descending=True)[:4].tolist():
        estimate, se = projected_normal(directions, gram[i : i + 1])
        log_I = float(directions.exact_log_weight(gram[i : i + 1])[0])
        print(f"draw {i}: contour {log_I:.3f}, directions {log_I - float(gap[i]):.3f}, "
              f"projected-normal importance {estimate:.3f} +- {se:.3f}")  # fmt: skip
    share = float((gap > 1).double().mean())
    print(f"directions' log-weight (3,200 directions a draw) below the contour's: "
          f"median {float(gap.median()):.3f}, largest {float(gap.max()):.2f}, above 1 on {share:.1%} "
          f"of {len(gram)} draws; largest excess {float(-gap.min()):.3f}\n")  # fmt: skip


def tempered(target, hidden, directions, runs: int, steps: int, seed: int) -> None:
    moving = hidden.for_moves()
    n = 500
    generator = torch.Generator().manual_seed(seed)
    for kind in ("exact", "directions"):
        constants, rbs = [], []
        start = time.perf_counter()
        for _ in range(runs):
            if kind == "exact":
                latent, _, log_volume, _, _ = temper(
                    lambda latent, floor: directions.exact_log_weight(moving.gram(latent, n)),
                    moving.draw(n, generator), n, steps, 0.3, generator, nothing="no finite weight",
                    screen=False, matrices=moving.matrices,
                )  # fmt: skip
                rb = directions.conditional_gen_loss(moving.gram(latent, n))
            else:  # the pseudo-marginal target (normalized.EXACT_WEIGHT off)
                kept, normalized.EXACT_WEIGHT = normalized.EXACT_WEIGHT, False
                try:
                    run = normalized._tempered_run(target, moving, n, steps, 0.3, generator)
                finally:
                    normalized.EXACT_WEIGHT = kept
                log_volume, rb = run["log_volume"], run["draws"]["rb"]
            constants.append({"log_volume": log_volume})
            rbs.append(rb)
        seconds = time.perf_counter() - start
        weights = run_weights(constants)
        ess = effective_sample_size(rbs, n, weights)
        pooled = float((weights * torch.stack([r.double().mean() for r in rbs])).sum())
        logs = np.array([c["log_volume"] for c in constants])
        print(f"| {kind} | {steps} | {runs} | {seconds / runs:.2f} | {log_mean_exp(logs):.3f} +- "
              f"{log_mean_se(logs):.3f} | {pooled:.5f} | {ess / seconds:.1f} |", flush=True)  # fmt: skip


def study_rows(cells: list[str], seeds: list[int]) -> None:
    """The depth figure's ``eps = 0`` rows as ``study paper --zero-depth`` runs them (the runner's
    job, the effort check and the added runs included), with each weight."""
    from factorkit.experiments.run.jobs import Job, run_gc

    print("| cell | seed | weight | s | log p(h = y) | L_gen | ESS | moves a temperature |")
    print("|---|---|---|---|---|---|---|---|")
    kept = normalized.EXACT_WEIGHT
    try:
        for cell in cells:
            spec = zero_cell(cell)
            for seed in seeds:
                for exact in (True, False):
                    normalized.EXACT_WEIGHT = exact
                    start = time.perf_counter()
                    row = run_gc(Job(spec, (seed,)), "bench", "cpu")[0]
                    effort = json.loads(row.get("effort") or "{}")
                    seconds, weight = time.perf_counter() - start, "exact" if exact else "directions"
                    print(f"| {cell} | {seed} | {weight} | {seconds:.1f} | {row['log_density']:.3f} | "
                          f"{row['gen_loss']:.5f} | {row['ess']:.0f} | {effort.get('mcmc_steps')} |",
                          flush=True)  # fmt: skip
    finally:
        normalized.EXACT_WEIGHT = kept


def elementwise(repeats: int) -> None:
    """Nanoseconds an entry of the contour's transcendental functions, torch's against NumPy's, on
    arrays of its size (500 rows, 80 nodes, 10 eigenvalues; the complex logarithm on one entry a
    node), float64, best of ``repeats``."""
    generator = np.random.default_rng(0)
    real = generator.uniform(0.01, 30.0, 500 * 80 * 10)
    plane = real[: 500 * 80] + 1j * generator.uniform(-30.0, 30.0, 500 * 80)
    pairs = [
        ("log", torch.log, np.log, real),
        ("atan", torch.atan, np.arctan, real),
        ("complex log", torch.log, np.log, plane),
    ]
    print("| function | entries | ns an entry, torch | ns an entry, NumPy | ratio |")
    print("|---|---|---|---|---|")
    for name, torch_f, numpy_f, values in pairs:
        tensor, best = torch.from_numpy(values), {}
        for repeat in range(repeats + 1):
            for kind, function, argument in (("torch", torch_f, tensor), ("numpy", numpy_f, values)):
                start = time.perf_counter()
                function(argument)
                if repeat:  # the first pass warms up
                    best[kind] = min(best.get(kind, math.inf), time.perf_counter() - start)
        print(f"| {name} | {len(values):,} | {best['torch'] / len(values) * 1e9:.2f} | "
              f"{best['numpy'] / len(values) * 1e9:.2f} | {best['torch'] / best['numpy']:.1f} |")  # fmt: skip
    print()


def kernels(cells: list[str], seeds: list[int], draws: int, repeats: int = 5) -> None:
    """The exact weight through NumPy (the default) against torch's kernels
    (``factorkit._kernels.torch_kernels()``: the contour's nodes and the mode's Newton steps), one
    process, interleaved: ``exact_log_weight`` and ``conditional_gen_loss`` on ``draws`` prior draws,
    best of ``repeats``, with the largest differences; then the study's own ``eps = 0`` row of each
    cell and seed each way (the same seeded run: the same evaluations and answers where the
    rounding flips no accept decision)."""
    import contextlib

    from factorkit._kernels import torch_kernels
    from factorkit.experiments.run.jobs import Job, run_gc

    elementwise(repeats)
    print("| cell | us a draw, torch | us a draw, NumPy | ratio | max diff log w | max rel diff E[L_gen] |")
    print("|---|---|---|---|---|---|")
    for cell in cells:
        _, hidden, directions = setup(cell, 0)
        gram = hidden.gram(hidden.draw(draws, torch.Generator().manual_seed(0)), draws)
        best, values = {}, {}
        for repeat in range(repeats + 1):
            for numpy in (True, False) if repeat % 2 else (False, True):
                with contextlib.nullcontext() if numpy else torch_kernels():
                    start = time.perf_counter()
                    values[numpy] = (directions.exact_log_weight(gram), directions.conditional_gen_loss(gram))
                    if repeat:  # the first pass warms up
                        best[numpy] = min(best.get(numpy, math.inf), time.perf_counter() - start)
        log_w = float((values[True][0] - values[False][0]).abs().max())
        gen = float(((values[True][1] - values[False][1]) / values[False][1]).abs().max())
        print(f"| {cell} | {best[False] / draws * 1e6:.1f} | {best[True] / draws * 1e6:.1f} | "
              f"{best[False] / best[True]:.2f} | {log_w:.1e} | {gen:.1e} |", flush=True)  # fmt: skip
    print("\n| cell | seed | kernels | s | evaluations | log p(h = y) | L_gen | ESS |")
    print("|---|---|---|---|---|---|---|---|")
    for cell in cells:
        spec = zero_cell(cell)
        for seed in seeds:
            for numpy in (True, False):
                with contextlib.nullcontext() if numpy else torch_kernels():
                    (row,) = run_gc(Job(spec, (seed,)), "bench", "cpu")
                print(f"| {cell} | {seed} | {'NumPy' if numpy else 'torch'} | {row['wall_time']:.1f} | "
                      f"{row['evaluations']:,} | {row['log_density']:.4f} | {row['gen_loss']:.5f} | "
                      f"{row['ess']:.0f} |", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cell", default="depth:2:linear", help="figure:depth:activation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--runs", type=int, nargs="+", default=[32, 12])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--rows", nargs="*", metavar="FIGURE:DEPTH:ACTIVATION",
                        help="only the study's rows of these cells (table 4), seeds --row-seeds")  # fmt: skip
    parser.add_argument("--row-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--contour-only", action="store_true", help="table 1 alone")
    parser.add_argument("--kernels", nargs="*", metavar="FIGURE:DEPTH:ACTIVATION",
                        help="only NumPy's kernels against torch's on these cells (table 5), rows of "
                             "seeds --row-seeds")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", RuntimeWarning)
    if args.kernels:
        kernels(args.kernels, args.row_seeds, args.draws)
        return
    if args.rows:
        study_rows(args.rows, args.row_seeds)
        return
    target, hidden, directions = setup(args.cell, args.seed)
    gram = hidden.gram(hidden.draw(args.draws, torch.Generator().manual_seed(0)), args.draws)
    print(f"cell {args.cell}, seed {args.seed}: k = {target.k}, D = {target.D}\n")
    accuracy(target, directions, gram)
    if args.contour_only:
        return
    shortfall(target, directions, gram)
    print("| weight | steps | runs | s a run | log p(h = y) | L_gen | ESS per s |")
    print("|---|---|---|---|---|---|---|")
    for runs, steps in zip(args.runs, args.steps, strict=True):
        tempered(target, hidden, directions, runs, steps, args.seed + 1)


if __name__ == "__main__":
    main()
