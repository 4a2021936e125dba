"""SubGM with the rank over-estimated: relative error against the number of measurements (not a timing).

50 x 50 rank-3 PSD truth, 30% dense outliers (``corrupt(..., outliers=0.3)``), factor rank
r' = 3 (exact) and r' = 9 (3x over-estimated), n from 5 m r = 750 to 15 m r = 2250 unit-norm
Gaussian measurements; one SubGM schedule for all: U_0 = 1e-8 B, eta_t = 3 * 0.998^t, 5000 steps.
Three problem seeds per point; the figure shows each run and the median.
Writes docs/figures/robust_overparam.png and prints a markdown table.

Run: ``python benchmarks/robust_overparam.py``.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from factorkit.fit.subgradient import subgradient_method
from factorkit.problems import corrupt, make_sensing_problem

SIZES = [750, 1000, 1250, 1500, 2250]
RANKS = [3, 9]
SEEDS = [0, 1, 2]


def main() -> None:
    errors = {rank: {n: [] for n in SIZES} for rank in RANKS}
    for n in SIZES:
        for seed in SEEDS:
            problem = make_sensing_problem(50, 50, rank=3, n=n, psd=True, seed=seed, dtype="float64")
            noisy = corrupt(problem, outliers=0.3, seed=seed + 1)
            for rank in RANKS:
                result = subgradient_method(
                    noisy, rank, init_scale=1e-8, step=3.0, decay=0.998, steps=5000, log_every=5000
                )
                errors[rank][n].append(result.rel_error)
    print("| n | n / (m r) | r' = 3: median (max) | r' = 9: median (max) |")
    print("|---|---|---|---|")
    for n in SIZES:
        cells = [f"{statistics.median(errors[r][n]):.1e} ({max(errors[r][n]):.1e})" for r in RANKS]
        print(f"| {n} | {n / 150:.2g} | {cells[0]} | {cells[1]} |")
    fig, axis = plt.subplots(figsize=(4.8, 3.6))
    for rank, marker in zip(RANKS, "os", strict=True):
        medians = [statistics.median(errors[rank][n]) for n in SIZES]
        (line,) = axis.semilogy(SIZES, medians, marker=marker, label=f"r' = {rank}")
        for n in SIZES:
            axis.semilogy([n] * len(SEEDS), errors[rank][n], ".", color=line.get_color(), alpha=0.5)
    axis.axhline(1e-3, color="grey", lw=0.8, ls="--")
    axis.set_xlabel("number of measurements n (m r = 150)")
    axis.set_ylabel("||W - W*||_F / ||W*||_F")
    axis.set_title("SubGM, 30% outliers, true rank 3", fontsize=9)
    axis.legend()
    fig.tight_layout()
    out = Path(__file__).resolve().parent.parent / "docs" / "figures" / "robust_overparam.png"
    fig.savefig(out, dpi=120)
    print(out)


if __name__ == "__main__":
    main()
