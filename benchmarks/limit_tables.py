"""Markdown tables of the limit studies, as quoted in docs/guide/study.md.

Run: ``python benchmarks/limit_tables.py runs/width_limit runs/depth_limit`` (after
``factorkit study width_limit`` and ``factorkit study depth_limit``).

* width: per width and activation, the gap between the random-guess L_gen (the prior's mean) and
  G&C's, mean over seeds (paired) with its 95% t interval;
* depth: per depth and eps, the median G&C L_gen with the median log10 V(eps), the median rank-1
  energy at the smallest eps, and the spread of the rank-1 RIP constant over the problems.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

from factorkit.experiments.summary import study_rows


def width_table(folder: Path) -> None:
    gaps = defaultdict(list)
    for row in study_rows(folder):
        gaps[(row["activation"], row["width"])].append(row["prior_gen_loss"] - row["gen_loss"])
    activations = sorted({a for a, _ in gaps}, key=["linear", "tanh", "leaky_relu"].index)
    print("| width | " + " | ".join(activations) + " |")
    print("|---|" + "---|" * len(activations))
    for width in sorted({w for _, w in gaps}):
        cells = []
        for activation in activations:
            values = np.array(gaps[(activation, width)])
            mean = values.mean()
            half = stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
            cells.append(f"{mean:.4f} ({mean - half:.4f}, {mean + half:.4f})")
        print(f"| {width} | " + " | ".join(cells) + " |")


def depth_table(folder: Path) -> None:
    rows = study_rows(folder)
    points = defaultdict(list)
    for row in rows:
        points[(row["depth"], row["eps"])].append(row)
    thresholds = sorted({e for _, e in points}, reverse=True)
    print(
        "| depth | "
        + " | ".join(f"eps {e:g}" for e in thresholds)
        + f" | rank-1 energy at eps {thresholds[-1]:g} |"
    )
    print("|---|" + "---|" * (len(thresholds) + 1))
    for depth in sorted({d for d, _ in points}):
        cells = []
        for eps in thresholds:
            members = points[(depth, eps)]
            gen = np.median([r["gen_loss"] for r in members])
            log10_volume = np.median([r["log_volume"] for r in members]) / math.log(10)
            cells.append(f"{gen:.4f} ({log10_volume:.1f})")
        energy = np.median([r["rank1_energy"] for r in points[(depth, thresholds[-1])]])
        print(f"| {depth} | " + " | ".join(cells) + f" | {energy:.3f} |")
    deltas = [max(r["rip_high"] - 1, 1 - r["rip_low"]) for r in rows]
    print(f"\nrank-1 RIP constant over the runs' problems: min {min(deltas):.2f}, median "
          f"{np.median(deltas):.2f}, max {max(deltas):.2f}; runs {len(rows)}, "
          f"smallest ESS {min(r['ess'] for r in rows):.0f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("width_folder", type=Path)
    parser.add_argument("depth_folder", type=Path)
    args = parser.parse_args()
    width_table(args.width_folder)
    print()
    depth_table(args.depth_folder)


if __name__ == "__main__":
    main()
