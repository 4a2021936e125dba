"""Do two runs of the same study agree within Monte Carlo error? (e.g. direct vs reparam draws)

For every G&C (cell, seed) present in both result stores, compares the posterior mean L_gen
(z = difference / combined standard error, from the stored 95% intervals) and the acceptance
rate (two-proportion z). Under agreement the z's are standard normal: the script prints their
RMS, the count beyond |z| > 2.58 (1% each) and a Kolmogorov-Smirnov test of z against N(0, 1).

Run: ``python benchmarks/compare_backends.py RUN_DIR_A RUN_DIR_B``.
"""

from __future__ import annotations

import argparse
import json
import math

from scipy import stats

from factorkit.experiments.store import load_rows


def _cell(row: dict) -> tuple:
    settings = json.loads(row["settings"])
    settings.pop("backend", None)
    return (json.dumps(settings, sort_keys=True), row["seed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    args = parser.parse_args()
    first = {_cell(r): r for r in load_rows(args.first) if r["method"] == "gc" and r["gen_loss_ci_low"]}
    second = {_cell(r): r for r in load_rows(args.second) if r["method"] == "gc" and r["gen_loss_ci_low"]}
    # identical results mean the same draw stream (both used the same backend): nothing to test
    common = sorted(k for k in set(first) & set(second) if first[k]["gen_loss"] != second[k]["gen_loss"])
    z_gen, z_rate = [], []
    for key in common:
        a, b = first[key], second[key]
        se_a = (a["gen_loss_ci_high"] - a["gen_loss_ci_low"]) / (2 * 1.96)
        se_b = (b["gen_loss_ci_high"] - b["gen_loss_ci_low"]) / (2 * 1.96)
        z_gen.append((a["gen_loss"] - b["gen_loss"]) / math.hypot(se_a, se_b))
        pooled = (a["accepted"] + b["accepted"]) / (a["evaluations"] + b["evaluations"])
        se = math.sqrt(pooled * (1 - pooled) * (1 / a["evaluations"] + 1 / b["evaluations"]))
        z_rate.append((a["acceptance_rate"] - b["acceptance_rate"]) / se)
    print(f"{len(common)} G&C runs in both stores with different draw streams")
    for name, zs in (("posterior mean L_gen", z_gen), ("acceptance rate", z_rate)):
        rms = math.sqrt(sum(z * z for z in zs) / len(zs))
        beyond = sum(abs(z) > 2.58 for z in zs)
        print(
            f"{name}: RMS z = {rms:.2f}, |z| > 2.58 in {beyond} of {len(zs)}, "
            f"KS vs N(0,1) p = {stats.kstest(zs, 'norm').pvalue:.3f}"
        )


if __name__ == "__main__":
    main()
