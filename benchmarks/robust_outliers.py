"""Relative error of SubGM (l1) and GD (l2) against the fraction of dense outliers (not a timing).

50 x 50 rank-3 PSD truth, n = 5 m r = 750 unit-norm Gaussian measurements, a fraction p of y
replaced by N(0, (10 rms y)^2); symmetric factorization U U^T with the true rank, init 1e-3, 3000 steps;
l1: eta_t = 2 * 0.997^t; l2: eta_t = 300 * 0.999^t (its gradient is ~|r| times smaller; with
this step it recovers the clean problem to 1e-15). Writes docs/figures/robust_outliers.png.

Run: ``python benchmarks/robust_outliers.py``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from factorkit.fit.subgradient import subgradient_method
from factorkit.problems import corrupt, make_sensing_problem

FRACTIONS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


def main() -> None:
    problem = make_sensing_problem(50, 50, rank=3, n=750, psd=True, seed=0, dtype="float64")
    errors = {"l1": [], "l2": []}
    schedules = {"l1": (2.0, 0.997), "l2": (300.0, 0.999)}
    print("| outliers | SubGM (l1) rel. error | GD (l2) rel. error |")
    print("|---|---|---|")
    for fraction in FRACTIONS:
        noisy = corrupt(problem, outliers=fraction, seed=1)
        for loss in errors:
            step, decay = schedules[loss]
            result = subgradient_method(
                noisy, 3, loss=loss, init_scale=1e-3, step=step, decay=decay, steps=3000
            )
            errors[loss].append(result.rel_error)
        print(f"| {fraction:.1f} | {errors['l1'][-1]:.2e} | {errors['l2'][-1]:.2e} |", flush=True)
    fig, axis = plt.subplots(figsize=(4.8, 3.6))
    axis.semilogy(FRACTIONS, errors["l1"], marker="o", label="SubGM, l1 loss")
    axis.semilogy(FRACTIONS, errors["l2"], marker="s", label="GD, l2 loss")
    axis.set_xlabel("fraction of grossly corrupted measurements")
    axis.set_ylabel("||W - W*||_F / ||W*||_F")
    axis.legend()
    fig.tight_layout()
    out = Path(__file__).resolve().parent.parent / "docs" / "figures" / "robust_outliers.png"
    fig.savefig(out, dpi=120)
    print(out)


if __name__ == "__main__":
    main()
