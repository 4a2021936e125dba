"""The saddlepoint of the ball probability on the unnormalized depth figure's spectra, and what the
tilted draw of ``g`` accepts there.

Per cell (depths 2-10, linear / tanh / leaky ReLU, seed 0; the published eps 0.01), 2,048 prior
draws of the hidden layers, the spectrum of ``Sigma_gg`` and the centre ``U^T y`` of each:

- the rows where the former ``ball.py`` (``--former``, default ``50b6c9b``, read by ``git show``)
  gives another ``log P`` than today's: its root finder (Newton on ``log K'(-e^w)``, bisecting
  only when a step left the bracket) could end its 100 steps far from the saddlepoint, and the
  contour on that line lost every digit (the largest value it reported on them, against today's).
- ``|K'/t - 1|``: the largest residual of :func:`factorkit.fit.ball.saddlepoint` now.
- the tilted proposal's acceptance ``P / Chernoff`` (:meth:`OutputLayerIntegral.ball_draws`) over
  the prior draws (minimum, median) and weighted by the draws' posterior weights ``P`` (the draws
  the sampler resamples and then draws ``g`` for).

``--width``: the width figures' cells instead (rank 1, rank 2, completion; widths 5, 20, 80, 160;
eps 0.02). ``--sample``: the importance sampler on the three deep leaky ReLU cells whose runs
failed before, beside SMC. ``--ruben``: the contour against Ruben's series, an independent method,
on the depth and width figures' prior draws at three thresholds.

Run: ``python benchmarks/explore_ball_saddlepoint.py [--width] [--draws N]`` (about 3 minutes, one
thread); ``--sample`` about 2 minutes; ``--ruben --draws 256`` about half an hour (the series runs
row by row, up to 20,000 terms).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit.ball import _cumulants, log_ball_probability, saddlepoint, split_spectrum
from factorkit.fit.hidden import HiddenLayers
from factorkit.fit.marginal import OutputLayerIntegral


def former_module(revision: str):
    """``factorkit.fit.ball`` as it was at ``revision`` (``git show``; run from the repository)."""
    import importlib.util
    import subprocess
    import tempfile
    from pathlib import Path

    source = subprocess.run(["git", "show", f"{revision}:src/factorkit/fit/ball.py"], check=True,
                            capture_output=True, text=True, cwd=Path(__file__).parent).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "former_ball.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("former_ball", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prior_spectra(figure: str, change: dict, activation: str, draws: int, seed: int):
    """A cell of ``figure`` (its paper settings with ``change``; problem seed 0): its settings,
    problem, model and prior, and the Gram matrices of ``draws`` prior draws of its hidden layers
    (``seed``)."""
    params = {**paper_cell(figure, activation=activation).params, **change}
    problem, model, prior = gc_setup(params, 0, "cpu")
    hidden = HiddenLayers(model, prior)
    gram = hidden.gram(hidden.draw(draws, torch.Generator().manual_seed(seed)), draws)
    return params, problem, model, prior, gram


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2048)
    parser.add_argument("--former", default="50b6c9b", help="the revision whose ball.py to compare")
    parser.add_argument("--width", action="store_true", help="the width figures' cells at eps 0.02 instead")
    parser.add_argument("--sample", action="store_true", help="the importance runs on the cells that failed")
    parser.add_argument("--ruben", action="store_true", help="the contour against Ruben's series instead")
    args = parser.parse_args()
    if args.sample:
        return sample()
    if args.ruben:
        return against_ruben(args.draws)
    former = former_module(args.former)
    torch.set_num_threads(1)
    print("| cell | rows the former code got wrong | largest former log P on them (true) | "
          "max abs(K'/t - 1) | acceptance min | median | posterior-weighted |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    if args.width:
        figures = ("width", "width_rank2", "width_completion")
        changes = [(figure, {"width": w, "eps": 0.02}) for figure in figures for w in (5, 20, 80, 160)]
    else:
        changes = [("depth_unnormalized", {"depth": depth}) for depth in range(2, 11)]
    for figure, change in changes:
        for activation in ("linear", "tanh", "leaky_relu"):
            params, problem, model, prior, gram = prior_spectra(figure, change, activation, args.draws, 0)
            integral = OutputLayerIntegral(problem, model, prior, params["eps"])
            values, centre = integral.sigma_spectrum(gram)
            log_p = log_ball_probability(values, centre, integral.radius2)
            positive, inside, c0, _ = split_spectrum(values, centre)
            t = integral.radius2 - c0
            below = np.isfinite(log_p) & (t > 0) & (t < (positive + inside**2).sum(1))
            lam, c2, tb = positive[below], inside[below] ** 2, t[below]
            was = former.log_ball_probability(values, centre, integral.radius2)
            wrong = ~np.isclose(was, log_p, rtol=1e-8, atol=1e-10) & ~(np.isneginf(was) & np.isneginf(log_p))
            worst = ""
            if wrong.any():
                i = np.flatnonzero(wrong)[np.argmax(was[wrong])]
                worst = f"{was[i]:.1f} ({log_p[i]:.1f})"
            s = saddlepoint(lam, c2, tb)
            K, K1, _ = _cumulants(s, lam, c2)
            tilted = log_p[below] < np.log(0.1)  # the draws ball_draws tilts
            log_acc = (log_p[below] - (K - s * tb))[tilted]
            weight = np.exp(log_p[below][tilted] - log_p[below][tilted].max())
            acceptance = np.exp(log_acc)
            label = " ".join(f"{key} {value}" for key, value in change.items())
            print(f"| {figure} {label} {activation} | {wrong.sum()} / {args.draws} | {worst} | "
                  f"{np.abs(K1 / tb - 1).max():.1e} | {acceptance.min():.4f} | {np.median(acceptance):.3f} | "
                  f"{(weight * acceptance).sum() / weight.sum():.3f} |", flush=True)  # fmt: skip


def against_ruben(draws: int, max_terms: int = 20_000) -> None:
    """The contour against Ruben's series (an independent method: no saddlepoint in it) on
    ``draws`` prior draws of each cell of the unnormalized depth figure (depths 2-10, seed 0) and
    the width figures (widths 5 and 20), at the published eps, 1e-3 and 1e-5: rows where the
    series converges in ``max_terms`` terms, the largest difference in ``log P`` relative to
    ``max(1, |log P|)``, and rows where the contour is not finite but the series is."""
    import warnings

    warnings.simplefilter("ignore")
    cells = [("depth_unnormalized", {"depth": d}) for d in range(2, 11)]
    cells += [(f, {"width": w}) for f in ("width", "width_rank2", "width_completion") for w in (5, 20)]
    print("| cell | eps | Ruben converged | largest difference | contour not finite |")
    print("|---|---:|---:|---:|---:|")
    for figure, change in cells:
        for activation in ("linear", "tanh", "leaky_relu"):
            params, problem, model, prior, gram = prior_spectra(figure, change, activation, draws, 1)
            for eps in (params["eps"], 1e-3, 1e-5):
                integral = OutputLayerIntegral(problem, model, prior, eps)
                values, centre = integral.sigma_spectrum(gram)
                contour = log_ball_probability(values, centre, integral.radius2, method="contour")
                ruben = np.full(draws, np.nan)
                for i in range(draws):  # one row at a time: a row the series cannot finish raises
                    try:
                        row = slice(i, i + 1)
                        ruben[i] = log_ball_probability(values[row], centre[row], integral.radius2,
                                                        method="ruben", max_terms=max_terms)[0]  # fmt: skip
                    except RuntimeError:
                        pass
                both = np.isfinite(ruben) & np.isfinite(contour)
                gap = np.abs(contour[both] - ruben[both]) / np.maximum(1.0, np.abs(ruben[both]))
                label = " ".join(f"{key} {value}" for key, value in change.items())
                print(f"| {figure} {label} {activation} | {eps:g} | {both.sum()} / {draws} | "
                      f"{gap.max() if gap.size else float('nan'):.1e} | "
                      f"{(np.isfinite(ruben) & ~np.isfinite(contour)).sum()} |", flush=True)  # fmt: skip


def sample() -> None:
    """``marginal_sample(method='importance', hidden_draws=20000)`` on the three deep leaky ReLU cells
    whose runs failed before the fix (the unnormalized depth figure, seed as the cell's), beside
    SMC's ``subset_simulation`` with its defaults on the same problem."""
    import warnings

    from factorkit.fit.marginal_sampler import marginal_sample
    from factorkit.fit.smc import subset_simulation

    for depth, seed in ((6, 0), (6, 1), (7, 1)):
        params = {**paper_cell("depth_unnormalized", activation="leaky_relu").params, "depth": depth}
        problem, model, prior = gc_setup(params, seed, "cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the ESS falls short of 200 within 20,000 draws: it says so
            result = marginal_sample(problem, model, eps=params["eps"], prior=prior, target_ess=200,
                                     seed=seed, keep_samples=False, method="importance",
                                     hidden_draws=20_000)  # fmt: skip
        extra = result.extra
        smc = subset_simulation(problem, model, eps=params["eps"], prior=prior, seed=seed, keep_samples=False)
        gen = smc.accepted_gen_loss.double()
        gen_se = float(gen.std()) / math.sqrt(smc.extra["ess"])  # the draws' spread at SMC's ESS
        print(f"leaky_relu depth {depth} seed {seed}: marginal ESS {extra['ess']:.1f} (Pareto shape "
              f"{extra['pareto_k']:.2f}), log V {extra['log_volume']:.3f} +- {extra['log_volume_se']:.3f}, "
              f"L_gen {extra['gen_loss_rb']:.4f} +- {extra['gen_loss_rb_se']:.4f}; SMC (ESS "
              f"{smc.extra['ess']:.0f}) log V {smc.log_volume[0]:.3f} +- {smc.log_volume[1]:.3f}, "
              f"L_gen {float(gen.mean()):.4f} +- {gen_se:.4f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
