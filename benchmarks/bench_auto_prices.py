"""The prices behind ``sampler='auto'`` (:mod:`factorkit.fit.auto`): what one SMC loss evaluation
and the marginal sampler's counted work cost in microseconds, fitted on the paper's cells.

``smc``: per cell, one ``subset_simulation`` call (8 runs, ``p0 = 0.25``, no ESS extension),
microseconds per loss evaluation, against ``SMC_PARAMETER_US`` times the model's weights.
``marginal``: per cell where the marginal sampler's pilot predicts importance sampling (at most
``MOST_DRAWS`` hidden draws), one
``marginal_sample`` run (target ESS 200), its seconds, hidden-layer draws (at least a first
batch of 1,024) and counted work
(``extra['work']``; at most three times the draws the pilot predicts, so a misprediction shows
as a ratio near 3 without a run of minutes); a non-negative least-squares fit of the seconds on a
constant (the posterior draws of ``W``), draws, Ruben terms and contour nodes (relative errors),
against the constants in ``auto.py``; then each cell's predicted time from the *pilot* (what
``auto`` sees) against the measured one.
Cells: the unnormalized depth figure (width 5, depths 2-10, seeds 0-1; the marginal sampler's
deep ground) and the width figures (rank 1, rank 2, completion; widths 5, 20, 160; eps 0.02).
One thread.

``probe``: the planner's machine probe (:func:`factorkit.experiments.paper.probe_us`) beside
tempered ``eps = 0`` rows of the two marginal samplers, as the study runs them (the normalized
prior's depth-2 linear cell of the depth figure, ``width_rank2``'s width-5 linear and tanh cells;
seeds 0-1): each row's microseconds per evaluation against ``NORMALIZED_MOVE_US`` /
``MARGINAL_MOVE_US``, and the probe's reference figure those constants imply (the probe's
measurement times the constant over the rows' measured price), which is
``PROBE_REFERENCE_US``. Run two at once to load both cores as a study does.

Run: ``python benchmarks/bench_auto_prices.py smc|marginal|probe`` (``smc --moves joint``: SMC's
former pCN kernel, every layer at once).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from scipy.optimize import nnls

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit import auto
from factorkit.fit.marginal_sampler import FIRST_BATCH, marginal_sample
from factorkit.fit.smc import MOVES, subset_simulation

ACTIVATIONS = ("linear", "tanh", "leaky_relu")
MOST_DRAWS = 30_000  # cells whose pilot predicts more are skipped (minutes a run; auto takes SMC there)


def _setup(figure: str, activation: str, change: dict, seed: int = 0):
    params = {**paper_cell(figure, activation=activation).params, **change}
    return params, *gc_setup(params, seed, "cpu")


def smc(moves: str) -> None:
    cells = [("depth_unnormalized", {"depth": d}, a) for d in (2, 4, 6, 8, 10) for a in ACTIVATIONS[::2]]
    cells += [("depth", {"depth": d}, a) for d in (2, 6, 10) for a in ("linear", "tanh")]
    cells += [("width", {"width": w, "eps": 0.02}, a) for w in (5, 20, 80, 160) for a in ("linear", "tanh")]
    print("| cell | weights | us per SMC evaluation | predicted | ratio |")
    print("|---|---:|---:|---:|---:|")
    for figure, change, activation in cells:
        params, problem, model, prior = _setup(figure, activation, change)
        start = time.perf_counter()
        result = subset_simulation(problem, model, eps=params["eps"], prior=prior, p0=0.25, runs=8, seed=0,
                                   keep_samples=False, moves=moves)  # fmt: skip
        measured = (time.perf_counter() - start) / result.evaluations * 1e6
        predicted = auto.smc_evaluation_us(model)
        label = f"{figure} {activation} " + " ".join(f"{k} {v}" for k, v in change.items())
        ratio = predicted / measured
        print(f"| {label} | {model.n_parameters()} | {measured:.2f} | {predicted:.2f} | {ratio:.2f} |")


def marginal() -> None:
    cells = [("depth_unnormalized", {"depth": d}, a, s)
             for s in (0, 1) for d in range(2, 11) for a in ACTIVATIONS]  # fmt: skip
    cells += [(f, {"width": w, "eps": 0.02}, a, 0) for w in (5, 20, 160)
              for f in ("width", "width_rank2", "width_completion") for a in ACTIVATIONS]  # fmt: skip
    rows = []
    for figure, change, activation, seed in cells:
        params, problem, model, prior = _setup(figure, activation, change, seed)
        cost = auto.marginal_cost(problem, model, prior, params["eps"], target_ess=200, n_particles=500,
                                  runs=8, mcmc_steps=10, seed=seed)  # fmt: skip
        label = f"{figure} {activation} " + " ".join(f"{k} {v}" for k, v in change.items()) + f" seed {seed}"
        if cost.method != "importance" or cost.draws > MOST_DRAWS:
            print(f"skipped ({cost.method}, {cost.draws:.3g} draws): {label}", flush=True)
            continue
        print(f"running: {label}", flush=True)
        start = time.perf_counter()
        try:
            result = marginal_sample(problem, model, eps=params["eps"], prior=prior, target_ess=200,
                                     seed=seed, keep_samples=False, method="importance",
                                     hidden_draws=math.ceil(3 * cost.draws) + 1024)  # fmt: skip
        except RuntimeError as error:  # the tilted ball rejection gives up on very spread spectra
            print(f"failed after {time.perf_counter() - start:.1f} s: {label}: {error}", flush=True)
            continue
        seconds = time.perf_counter() - start
        smc_us = auto.smc_evaluation_us(model)
        rows.append((label, seconds, result.evaluations, result.extra["work"], cost, smc_us))
    features = np.array([[1.0, max(draws, FIRST_BATCH), work["ruben"], work["contour"]]
                         for _, _, draws, work, _, _ in rows])  # fmt: skip
    seconds = np.array([row[1] for row in rows])
    fitted, _ = nnls(features / seconds[:, None], np.ones_like(seconds))
    constants = 1e-6 * np.array([auto.MARGINAL_RUN_US, auto.MARGINAL_DRAW_US, auto.MARGINAL_RUBEN_US,
                                 auto.MARGINAL_CONTOUR_US])  # fmt: skip
    run, draw, term, node = fitted * 1e6
    print(f"\nfit (us): per run {run:.0f}, per draw {draw:.1f}, per Ruben term and eigenvalue {term:.4f}, "
          f"per contour node and eigenvalue {node:.4f}")  # fmt: skip
    print(f"auto.py (us): {', '.join(f'{c * 1e6:g}' for c in constants)}")
    ratio_fit, ratio_constants = features @ fitted / seconds, features @ constants / seconds
    print(f"predicted / measured from the run's own counts: fit {ratio_fit.min():.2f}-{ratio_fit.max():.2f}, "
          f"auto.py's constants {ratio_constants.min():.2f}-{ratio_constants.max():.2f}\n")  # fmt: skip
    print("| cell | seconds | draws (pilot's prediction) | predicted s from the pilot | ratio | "
          "SMC evaluations as long |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for label, run_seconds, draws, _, cost, smc_us in rows:
        predicted = cost.microseconds * 1e-6
        print(f"| {label} | {run_seconds:.2f} | {draws} ({cost.draws:.0f}) | {predicted:.2f} | "
              f"{predicted / run_seconds:.2f} | {run_seconds * 1e6 / smc_us:.3g} |")  # fmt: skip


def probe() -> None:
    import warnings

    from factorkit.experiments.paper import PROBE_REFERENCE_US, probe_us
    from factorkit.experiments.run.jobs import Job, run_gc

    before = probe_us()
    rows = {"normalized": [], "gaussian": []}
    for figure, key, value, activation, kind in [
        ("depth", "depth", 2, "linear", "normalized"),
        ("width_rank2", "width", 5, "linear", "gaussian"),
        ("width_rank2", "width", 5, "tanh", "gaussian"),
    ]:
        cell = paper_cell(figure, zero_depth=True, eps=0, activation=activation, **{key: value})
        for seed in (0, 1):
            with warnings.catch_warnings():  # the study's own row (its wall time: the sampler's call)
                warnings.simplefilter("ignore", RuntimeWarning)
                (row,) = run_gc(Job(cell, (seed,)), "probe", "cpu")
            us = row["wall_time"] / row["evaluations"] * 1e6
            rows[kind].append(us)
            print(
                f"{figure} {activation} {key} {value} seed {seed}: {row['evaluations']:,} evaluations, "
                f"{us:.2f} us each",
                flush=True,
            )
    after = probe_us()
    constants = {"normalized": auto.NORMALIZED_MOVE_US, "gaussian": auto.MARGINAL_MOVE_US}
    print(
        "| weight | probe us per draw (before, after) | rows' us per evaluation | constant | "
        "implied probe reference | PROBE_REFERENCE_US |"
    )
    print("|---|---|---|---|---|---|")
    for index, kind in enumerate(("normalized", "gaussian")):
        measured = sum(rows[kind]) / len(rows[kind])
        probe_mean = (before[index] + after[index]) / 2
        print(
            f"| {kind} | {before[index]:.2f}, {after[index]:.2f} | {measured:.2f} | {constants[kind]} | "
            f"{probe_mean * constants[kind] / measured:.2f} | {PROBE_REFERENCE_US[index]} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=("smc", "marginal", "probe"))
    parser.add_argument("--moves", default=MOVES, help=f"smc: the pCN kernel (default {MOVES!r})")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.part == "smc":
        smc(args.moves)
    elif args.part == "probe":
        probe()
    else:
        marginal()


if __name__ == "__main__":
    main()
