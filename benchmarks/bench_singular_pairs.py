"""The singular-value move's decompositions, two tables.

First: :func:`factorkit.fit.weights.thin_svd` (the smaller Gram matrix's eigen-decomposition,
the other vectors as ``u v / s``, an SVD only for matrices with a value below ``SINGULAR_RTOL``
of their largest) against ``torch.linalg.svd``, on 500 standard normal latents of the shapes the
marginal samplers move (a width-5 net's ``5 x 5`` layers, a width-160 net's first layer ``160 x 5``
and a middle one ``20 x 20``), one thread, interleaved, best of five rounds of 20. Printed:
milliseconds each way, the ratio, the share of matrices the SVD still decides, and the largest
difference of the reconstruction ``left diag(s) right^T`` against the matrix (relative to its
largest singular value).

Second: :class:`factorkit.fit.weights.SingularCache` on the paper's own tempered runs. A
singular-value move keeps its singular vectors, so a block of consecutive moves (half of each
temperature's moves) can decompose each matrix once and update the value the accepted moves
changed; without the cache (``SINGULAR_CACHE`` off, the baseline) every move decomposes every
matrix it picks. The cells are ``width_rank2``'s width-5 ``eps = 0`` points (seed 0, each
activation, its problem, model and prior as ``study paper`` builds them), sampled by the marginal
sampler's tempered SMC at 10 and at 40 moves a temperature (the effort check's two settings), a
fixed number of runs, no runs added. Both ways draw the same random numbers; the decompositions
differ only by rounding, so the runs agree while they have not branched on a rounding
difference, and a run's temperatures (hence its evaluations) may differ. Printed: microseconds
per weight evaluation each way (one process, one torch thread, alternating which goes first) and
the ratio, with each way's mean ``log V`` over its runs.

With ``--law``, a third table instead: the two ways as samplers, on the unmixed cells where the
paper run's rows differ most (``width_rank2`` width 5 ``eps = 0``: leaky ReLU seed 6 at 10 moves,
128 runs a way; tanh seed 4 at 40 moves, 64 runs), each way from its own seed: the runs' ``log V``
as two samples (two-sample KS) and each way's pooled posterior mean of ``L_gen``.

Run: ``python benchmarks/bench_singular_pairs.py [--runs 8] [--law]``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from bench_marginal_density import best  # the script's folder is on sys.path
from scipy import stats

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit import weights
from factorkit.fit.marginal_sampler import marginal_sample
from factorkit.fit.weights import SINGULAR_RTOL, thin_svd


def decompositions() -> None:
    generator = torch.Generator().manual_seed(0)
    print("| shape | SVD ms | thin_svd ms | speed-up | by SVD | max reconstruction error |")
    print("|---|---|---|---|---|---|")
    for shape in [(5, 5), (160, 5), (20, 20)]:
        u = torch.randn(500, *shape, generator=generator, dtype=torch.float64)
        sv, left, right = thin_svd(u)
        error = (left @ torch.diag_embed(sv) @ right.transpose(1, 2) - u).abs().amax((1, 2)) / sv[:, 0]
        poor = float((sv[:, -1] <= SINGULAR_RTOL * sv[:, 0]).double().mean())
        t_svd, t_ours = math.inf, math.inf
        for _ in range(5):
            t_svd = min(t_svd, best(lambda: torch.linalg.svd(u, full_matrices=False)))  # noqa: B023
            t_ours = min(t_ours, best(lambda: thin_svd(u)))  # noqa: B023
        name = f"{shape[0]} x {shape[1]}"
        print(
            f"| {name} | {t_svd:.2f} | {t_ours:.2f} | {t_svd / t_ours:.1f}x | {poor:.1%} "
            f"| {float(error.max()):.1e} |"
        )


def width5(activation: str, seed: int) -> tuple:
    """``width_rank2``'s width-5 ``eps = 0`` cell of ``activation``: its problem, model and prior
    for ``seed``, as ``study paper`` builds them."""
    cell = paper_cell("width_rank2", width=5, eps=0.0, activation=activation)
    return gc_setup(cell.params, seed, "cpu")


def tempered(problem, model, prior, steps: int, runs: int, cache: bool, seed: int = 0):
    """Seconds and result of ``runs`` tempered runs at ``steps`` moves a temperature (no runs
    added, no effort check), the cache on or off."""
    weights.SINGULAR_CACHE = cache
    try:
        start = time.perf_counter()
        result = marginal_sample(
            problem, model, eps=0.0, prior=prior, method="smc", runs=runs, mcmc_steps=steps,
            check_effort=False, target_ess=1.0, seed=seed, keep_samples=False,
        )  # fmt: skip
        return time.perf_counter() - start, result
    finally:
        weights.SINGULAR_CACHE = True


def blocks(runs: int) -> None:
    print(
        "\n| cell | moves a temperature | no cache us/evaluation | cache us/evaluation | speed-up "
        "| log V (no cache) | log V (cache) |"
    )
    print("|---|---|---|---|---|---|---|")
    for activation in ("linear", "tanh", "leaky_relu"):
        problem, model, prior = width5(activation, 0)
        for steps in (10, 40):
            per = {}
            for order in ((False, True), (True, False)):
                for cache in order:
                    seconds, result = tempered(problem, model, prior, steps, runs, cache)
                    log_v = float(np.mean(result.extra["log_volume_runs"]))
                    old = per.get(cache, (math.inf, log_v))
                    per[cache] = min(old, (seconds / result.evaluations * 1e6, log_v))
            print(
                f"| width_rank2 width 5 {activation} | {steps} | {per[False][0]:.2f} | {per[True][0]:.2f} "
                f"| {per[False][0] / per[True][0]:.2f}x | {per[False][1]:.2f} | {per[True][1]:.2f} |",
                flush=True,
            )


def law() -> None:
    print(
        "| cell | moves | runs a way | KS p (runs' log V) | log V mean, sd (no cache) | (cache) "
        "| rb (no cache) | rb (cache) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for activation, seed, steps, runs in (("leaky_relu", 6, 10, 128), ("tanh", 4, 40, 64)):
        problem, model, prior = width5(activation, seed)
        out = {}
        for cache, stream in ((False, 1), (True, 2)):
            _, result = tempered(problem, model, prior, steps, runs, cache, seed=1000 * stream + seed)
            out[cache] = (np.array(result.extra["log_volume_runs"]), result.extra["gen_loss_rb"])
        p = stats.ks_2samp(out[False][0], out[True][0]).pvalue
        summary = [f"{v[0].mean():.2f}, {v[0].std():.2f}" for v in (out[False], out[True])]
        print(
            f"| width_rank2 width 5 {activation} seed {seed} | {steps} | {runs} | {p:.2f} | {summary[0]} "
            f"| {summary[1]} | {out[False][1]:.4f} | {out[True][1]:.4f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--law", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.law:
        law()
        return
    decompositions()
    blocks(args.runs)


if __name__ == "__main__":
    main()
