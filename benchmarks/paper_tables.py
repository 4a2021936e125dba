"""Markdown tables of a `factorkit study paper` folder: time per figure, ESS per point, trends,
and where each depth figure's G&C time went (per activation, shallow and deep cells).

Run: ``python benchmarks/paper_tables.py runs/paper`` (after ``factorkit study paper``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from factorkit.experiments.summary import aggregate, study_metric, study_rows, trend_tests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    timing = json.loads((args.folder / "timing.json").read_text())
    rows_of = {f["figure"]: study_rows(args.folder / f["figure"]) for f in timing["figures"]}  # read once
    print("| figure | eps | G&C runs | rejection / SMC / marginal | ESS per run: min, median "
          "| G&C core-min | GD runs | GD core-min | evaluations |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for f in timing["figures"]:
        print(f"| {f['figure']} | {', '.join(f'{e:g}' for e in f['eps'])} | {f['gc_runs']} | "
              f"{f['rejection']} / {f['smc']} / {f.get('marginal', 0)} | "
              f"{f['ess_min']:.0f}, {f['ess_median']:.0f} | "
              f"{f['gc_core_s'] / 60:.1f} | {f['gd_runs']} | {f['gd_core_s'] / 60:.1f} | "
              f"{f['evaluations']:.2e} |")  # fmt: skip
    print()
    print("| figure | activation | G&C L_gen (first -> last point) | G&C Page p | GD L_gen (first -> last) | "
          "GD Page p | G&C ESS per point (min) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for f in timing["figures"]:
        rows = rows_of[f["figure"]]
        metric = study_metric(args.folder / f["figure"])
        records = aggregate(rows, metric)
        tests = {(t["method"], t["activation"]): t for t in trend_tests(rows, metric)}
        for activation in sorted({r["activation"] for r in records}):
            cells = {}
            for method in ("gc", "gd"):
                mine = [r for r in records if r["method"] == method and r["activation"] == activation]
                points = sorted(mine, key=lambda r: r["x"])
                test = tests.get((method, activation), {})
                page = test.get("page_p")
                trend = f"{points[0]['median']:.3f} -> {points[-1]['median']:.3f}" if points else ""
                cells[method] = (trend, "" if page is None or math.isnan(page) else f"{page:.1e}")
                if method == "gc":
                    ess = min((r["ess_total"] or 0) for r in points) if points else float("nan")
            (gc_trend, gc_p), (gd_trend, gd_p) = cells["gc"], cells["gd"]
            print(f"| {f['figure']} | {activation} | {gc_trend} | {gc_p} | {gd_trend} | {gd_p} | {ess:.0f} |")
    print()
    print("| figure | G&C core-min | share by activation, depths 2-6 / 7-10 | runs below the target ESS |")
    print("|---|---|---|---|")
    for f in timing["figures"]:
        gc = [r for r in rows_of[f["figure"]] if r["method"] == "gc"]
        if len({r["depth"] for r in gc}) < 2:  # width figures: one depth
            continue
        total = sum(r["wall_time"] or 0 for r in gc) or 1.0
        shares = []
        for activation in sorted({r["activation"] for r in gc}):
            mine = [r for r in gc if r["activation"] == activation]
            shallow = sum(r["wall_time"] or 0 for r in mine if r["depth"] < 7)
            deep = sum(r["wall_time"] or 0 for r in mine if r["depth"] >= 7)
            shares.append(f"{activation} {100 * shallow / total:.0f}% / {100 * deep / total:.0f}%")
        print(f"| {f['figure']} | {total / 60:.1f} | {'; '.join(shares)} | {f.get('below_target', '')} |")
    if timing.get("wall_seconds"):
        print(f"\nlast run's wall time: {timing['wall_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
