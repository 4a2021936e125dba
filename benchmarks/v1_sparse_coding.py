"""The V1 experiment of "Beyond l1 sparse coding in V1" (Rentzeperis et al., PLoS Comput. Biol. 2023),
on the photographs that ship with scikit-learn.

    python benchmarks/v1_sparse_coding.py [--quick] [--out docs/figures]

Whitened 8x8 patches (``factorkit.problems.patches``; ``--size 16`` for 16x16): 20,000 to learn
from, 5,000 held out. For each overcompleteness (64, 128, 256 atoms: 1x, 2x, 4x) and each penalty
(l1, l0, l_1/2, CEL0, and OMP as the greedy l0 baseline) a dictionary is learned with
``DictionaryLearning`` defaults at five strengths, chosen so the penalties' dead zones (the largest
input their prox sets to 0) are the same five thresholds; the held-out patches are then coded in
that dictionary with the same penalty. Each run gives a point (mean active coefficients per patch,
relative squared error ``||x - z D||^2 / ||x||^2``). The table reads every curve at equal sparsity
(log-linear interpolation at 4 and 8 active coefficients); the figures are the curves and the 2x l0
atoms.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from factorkit.methods.sparse_coding import DictionaryLearning  # noqa: E402
from factorkit.problems.patches import (
    natural_patches,  # noqa: E402
    save_atoms_image,  # noqa: E402
)

THRESHOLDS = (0.3, 0.6, 1.0, 1.6, 2.5)  # dead zones swept (patches have unit variance per pixel)
OMP_COUNTS = (1, 2, 4, 8, 16)
PENALTIES = ("l1", "l0", "l_half", "cel0", "omp")
LABELS = {"l1": "l1 (soft)", "l0": "l0 (hard)", "l_half": "l_1/2", "cel0": "CEL0", "omp": "OMP (greedy l0)"}


def alpha_for(penalty: str, threshold: float) -> float:
    """The strength whose prox at step 1 zeroes exactly ``|x| <= threshold``."""
    if penalty == "l1":
        return threshold
    if penalty in ("l0", "cel0"):
        return threshold**2 / 2  # hard threshold sqrt(2 alpha); CEL0 (unit atoms) the same
    # half thresholding: threshold = (54^(1/3) / 4) (2 alpha)^(2/3)
    return (threshold * 4 / 54 ** (1 / 3)) ** 1.5 / 2


def run(train, test, atoms: int, penalty: str, strength: float) -> dict:
    if penalty == "omp":
        model = DictionaryLearning(atoms, algorithm="omp", n_nonzero_coefs=int(strength), random_state=0)
    else:
        model = DictionaryLearning(atoms, penalty=penalty, alpha=alpha_for(penalty, strength), random_state=0)
    started = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - started
    codes = model.transform(test)
    residual = test - codes @ model.components_
    return {
        "atoms": atoms,
        "penalty": penalty,
        "strength": strength,
        "active": float((codes != 0).sum(1).mean()),
        "error": float((residual**2).sum() / (test**2).sum()),
        "seconds": seconds,
        "model": model,
    }


def at_sparsity(points: list[dict], active: float) -> float:
    """The error at ``active`` coefficients, interpolated linearly in log(active); NaN outside."""
    points = sorted((p["active"], p["error"]) for p in points if p["active"] > 0)
    xs = np.log([a for a, _ in points])
    ys = np.array([e for _, e in points])
    if not xs.min() <= math.log(active) <= xs.max():
        return math.nan
    return float(np.interp(math.log(active), xs, ys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 patches, 1x and 2x only")
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--size", type=int, default=8, help="patch side (16: 256, 512, 1024 atoms)")
    args = parser.parse_args()
    n_train = 5_000 if args.quick else 20_000
    pixels = args.size**2
    overcomplete = tuple(factor * pixels for factor in ((1, 2) if args.quick else (1, 2, 4)))
    patches = natural_patches(args.size, n_train + 5_000, seed=0).astype(np.float64)
    train, test = patches[:n_train], patches[n_train:]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for atoms in overcomplete:
        for penalty in PENALTIES:
            for strength in OMP_COUNTS if penalty == "omp" else THRESHOLDS:
                result = run(train, test, atoms, penalty, strength)
                results.append(result)
                print(
                    f"{atoms:4d} atoms {penalty:7s} {strength:5.2f}: {result['active']:6.2f} active, "
                    f"error {result['error']:.4f} ({result['seconds']:.1f} s)",
                    flush=True,
                )
    # ----- curves
    figure, axes = plt.subplots(1, len(overcomplete), figsize=(4.2 * len(overcomplete), 3.6), sharey=True)
    for axis, atoms in zip(np.atleast_1d(axes), overcomplete, strict=True):
        for penalty in PENALTIES:
            points = sorted(
                (r["active"], r["error"]) for r in results if r["atoms"] == atoms and r["penalty"] == penalty
            )
            axis.plot(*zip(*points, strict=True), marker="o", label=LABELS[penalty])
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_title(f"{atoms} atoms ({atoms // pixels}x overcomplete)")
        axis.set_xlabel("mean active coefficients per patch")
    np.atleast_1d(axes)[0].set_ylabel("held-out relative squared error")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(
        out / f"v1_sparsity_error{'' if args.size == 8 else f'_{args.size}x{args.size}'}.png", dpi=110
    )
    # ----- atoms: the 2x l0 dictionary at the middle strength
    middle = next(
        r for r in results if r["atoms"] == 128 and r["penalty"] == "l0" and r["strength"] == THRESHOLDS[2]
    )
    save_atoms_image(middle["model"].components_, out / "v1_atoms_l0_2x.png")
    # ----- table at equal sparsity
    print("\n| atoms | active | " + " | ".join(LABELS[p] for p in PENALTIES) + " | l1 / best other |")
    print("|---:|---:|" + "---:|" * (len(PENALTIES) + 1))
    table = []
    for atoms in overcomplete:
        for active in (4.0, 8.0):
            errors = {
                p: at_sparsity([r for r in results if r["atoms"] == atoms and r["penalty"] == p], active)
                for p in PENALTIES
            }
            others = [v for p, v in errors.items() if p != "l1" and not math.isnan(v)]
            ratio = errors["l1"] / min(others) if others and not math.isnan(errors["l1"]) else math.nan
            table.append({"atoms": atoms, "active": active, **errors, "l1_over_best": ratio})
            cells = " | ".join("-" if math.isnan(errors[p]) else f"{errors[p]:.3f}" for p in PENALTIES)
            print(f"| {atoms} | {active:.0f} | {cells} | {ratio:.2f} |")
    for r in results:
        del r["model"]
    (out / f"v1_results{'' if args.size == 8 else f'_{args.size}x{args.size}'}.json").write_text(
        json.dumps({"runs": results, "table": table}, indent=1)
    )


if __name__ == "__main__":
    main()
