"""Tempering the weight against annealing the measurement noise, to the ``eps = 0`` posterior.

    python benchmarks/bench_noise_path.py [--part toy,cells,defaults] [--runs 16] [--steps 10,40]

``toy``: a six-dimensional funnel with a known answer (``tests/test_noise_path.py``: ``Sigma =
diag(|u_i|^1.5)``, ``y_i = 0.01``; weights of tail index 4/3 per coordinate): ``log Z`` and the
posterior share of coordinates below 0.01 by quadrature, against 48 runs of 400 particles of each
path (:func:`factorkit.fit.weights.temper`, :func:`factorkit.fit.noise_path.anneal_noise`) at each
``--steps``, pooled by their normalizing constants.

``cells``: the width figures' width-5 ``eps = 0`` cells where the weight's variance is infinite or
its tail heavy (``width_rank2`` linear, tanh and leaky ReLU, counted tail index 8/7; ``width`` and
``width_completion`` linear, seed 0): ``marginal_sample(method='smc', check_effort=False)`` with
``--runs`` runs of 500 at 40 moves a level along each path: ``log p(y)``, the posterior mean of
``L_gen`` with their standard errors, the levels per run and the seconds.

``defaults``: the same cells through ``marginal_sample`` with its defaults (``method='auto'``, the
effort check), tempering the weight (``path='power'``, the default and what the study gets) and
along the noise path: the answers, the time, and whether the effort check saw the answer move.

One torch thread; every figure of a row from the same process.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
import torch
from scipy import integrate, stats

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit.marginal_sampler import marginal_sample
from factorkit.fit.noise_path import anneal_noise
from factorkit.fit.weights import temper

CELLS = [
    ("width_rank2", "linear"),
    ("width_rank2", "tanh"),
    ("width_rank2", "leaky_relu"),
    ("width", "linear"),
    ("width_completion", "linear"),
]
DIM, Y = 6, 0.01


def header(*names) -> None:
    print("| " + " | ".join(names) + " |")
    print("|" + "---|" * len(names))


def row(*cells) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def _answer(extra) -> tuple[str, str]:
    return (f"{extra['log_density']:.3f} ({extra['log_density_se']:.3f})",
            f"{extra['gen_loss_rb']:.4f} ({extra['gen_loss_rb_se']:.4f})")  # fmt: skip


def toy(steps_list, runs=48, particles=400) -> None:
    def density(u):
        return stats.norm.pdf(u) * stats.norm.pdf(Y, scale=u**0.75)

    pieces = [0, 1e-4, 1e-3, 1e-2, 0.1, 1, 12]
    parts = [
        2 * integrate.quad(density, a, b, limit=200)[0] for a, b in zip(pieces, pieces[1:], strict=False)
    ]
    log_z, deep = DIM * math.log(sum(parts)), sum(parts[:3]) / sum(parts)

    def log_weight(latent, noise=0.0):
        lam = latent[0].abs() ** 1.5 + noise
        return -0.5 * (DIM * math.log(2 * math.pi) + lam.log().sum(1) + (Y**2 / lam).sum(1))

    def spectrum(latent):
        return (latent[0].abs() ** 1.5).numpy(), np.full(latent[0].shape, Y)

    print(f"toy funnel: log Z {log_z:.3f}, posterior share below 0.01 {deep:.4f} (quadrature)")
    print(
        "| path | moves a level | levels | evaluations a run | log Z (se) | share below 0.01 (se) | seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    for steps in steps_list:
        for path in ("power", "noise"):
            generator = torch.Generator().manual_seed(5)
            logs, shares, levels, evaluations = [], [], [], 0
            start = time.perf_counter()
            for _ in range(runs):
                latent = [torch.randn(particles, DIM, generator=generator, dtype=torch.float64)]
                if path == "power":
                    out = temper(lambda L, _f: log_weight(L), latent, particles, steps, 0.3, generator,
                                 nothing="none", screen=False)  # fmt: skip
                else:
                    out = anneal_noise(log_weight, spectrum, latent, particles, steps, 0.3, generator)
                logs.append(out[2])
                shares.append(float((out[0][0].abs() < 0.01).double().mean()))
                levels.append(len(out[3]))
                evaluations += out[4]
            seconds = time.perf_counter() - start
            logs, shares = np.array(logs), np.array(shares)
            z = np.exp(logs - logs.max())
            v = z / z.sum()
            pooled = float((v * shares).sum())
            se = math.sqrt(runs / (runs - 1) * float((v**2 * (shares - pooled) ** 2).sum()))
            se_log = z.std(ddof=1) / math.sqrt(runs) / z.mean()
            log_pooled = logs.max() + math.log(z.mean())
            row(path, steps, f"{np.mean(levels):.1f}", f"{evaluations / runs:,.0f}",
                f"{log_pooled:.3f} ({se_log:.3f})", f"{pooled:.4f} ({se:.4f})", f"{seconds:.1f}")  # fmt: skip


def _cell(figure, activation, seed=0):
    cell = paper_cell(figure, activation=activation, width=5, depth=2)
    return gc_setup({**cell.params, "width": 5, "depth": 2}, seed, "cpu")


def cells(runs: int, steps: int) -> None:
    print(f"\nwidth-5 eps = 0 cells, seed 0: {runs} runs of 500, {steps} moves a level, no effort check")
    header("figure", "activation", "path", "levels a run", "log p(y) (se)", "L_gen (se)", "seconds")
    for figure, activation in CELLS:
        problem, model, prior = _cell(figure, activation)
        for path in ("power", "noise"):
            start = time.perf_counter()
            extra = marginal_sample(problem, model, eps=0.0, prior=prior, method="smc", mcmc_steps=steps,
                                    runs=runs, target_ess=1e-9, check_effort=False, seed=7,
                                    keep_samples=False, path=path).extra  # fmt: skip
            row(figure, activation, path, f"{np.mean(extra['temperatures']):.1f}", *_answer(extra),
                f"{time.perf_counter() - start:.1f}")  # fmt: skip


def defaults() -> None:
    print("\nthe same cells through marginal_sample's defaults (method='auto', the effort check), seed 0")
    header("figure", "activation", "path", "method, runs", "moves kept", "moved", "log p(y) (se)",
           "L_gen (se)", "ESS", "seconds")  # fmt: skip
    for figure, activation in CELLS:
        problem, model, prior = _cell(figure, activation)
        for path in ("power", "noise"):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                run = marginal_sample(
                    problem, model, eps=0.0, prior=prior, seed=0, keep_samples=False, path=path
                )
            extra = run.extra
            effort = extra.get("effort", {})
            moved = any(check["moved"] for check in effort.get("checks", []))
            runs = len(extra.get("temperatures", [])) or "-"
            row(figure, activation, path, f"{extra['method']} {runs}", effort.get("mcmc_steps", "-"),
                "yes" if moved else "no", *_answer(extra), f"{extra['ess']:.0f}",
                f"{time.perf_counter() - start:.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", default="toy,cells,defaults")
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--steps", default="10,40", help="the toy's moves a level")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", RuntimeWarning)
    parts = args.part.split(",")
    if "toy" in parts:
        toy([int(s) for s in args.steps.split(",")])
    if "cells" in parts:
        cells(args.runs, 40)
    if "defaults" in parts:
        defaults()


if __name__ == "__main__":
    main()
