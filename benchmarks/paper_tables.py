"""Markdown tables of a `factorkit study paper` folder: time per figure, ESS per point, trends,
where each depth figure's G&C time went (per activation, shallow and deep cells), what a lower ESS
target would have saved (the SMC rows rerun in projection to the target by their own ESS per run),
how each figure's ``eps = 0`` rows were sampled (importance runs kept with the largest Pareto
shape of their weights, tempered runs and the effort checks that saw their answer move, and the
loss evaluations the tempered rows spent on their first runs, the effort check and added runs),
and what a unit of each G&C sampler cost per depth (seconds per marginal hidden-layer draw against seconds per
SMC loss evaluation, pilots included: the exchange rate ``auto`` prices per cell from the marginal
pilot's counted work, :class:`factorkit.fit.auto.MarginalCost`).

Run: ``python benchmarks/paper_tables.py runs/paper`` (after ``factorkit study paper``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from factorkit.experiments.paper import PAPER_GC
from factorkit.experiments.summary import aggregate, study_metric, study_rows, trend_tests
from factorkit.fit.smc import extension_bounds, projected_runs

TARGETS = (200, 100, 50)


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
    # G&C at the published threshold; its eps = 0 curve (where the figure has one) in a column of its own
    print("| figure | activation | G&C L_gen (first -> last point) | G&C Page p | GD L_gen (first -> last) | "
          "GD Page p | G&C ESS per point (min) | G&C at eps = 0 (first -> last) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for f in timing["figures"]:
        rows = rows_of[f["figure"]]
        metric = study_metric(args.folder / f["figure"])
        records = aggregate(rows, metric)
        published = max(f["eps"])
        tests = {(t["method"], t["activation"], t["eps"]): t for t in trend_tests(rows, metric)}
        for activation in sorted({r["activation"] for r in records}):
            cells = {}
            for method, eps in (("gc", published), ("gd", None), ("gc", 0.0)):
                mine = [r for r in records if r["method"] == method and r["activation"] == activation
                        and (method == "gd" or r["eps"] == eps)]  # fmt: skip
                points = sorted(mine, key=lambda r: r["x"])
                test = tests.get((method, activation, eps), {})
                page = test.get("page_p")
                trend = f"{points[0]['median']:.3f} -> {points[-1]['median']:.3f}" if points else ""
                cells[method, eps] = (trend, "" if page is None or math.isnan(page) else f"{page:.1e}")
                if (method, eps) == ("gc", published):
                    ess = min((r["ess_total"] or 0) for r in points) if points else float("nan")
            (gc_trend, gc_p), (gd_trend, gd_p) = cells["gc", published], cells["gd", None]
            zero = cells["gc", 0.0][0] if published > 0 else ""
            print(f"| {f['figure']} | {activation} | {gc_trend} | {gc_p} | {gd_trend} | {gd_p} | {ess:.0f} "
                  f"| {zero} |")  # fmt: skip
    print()
    print("| figure | G&C core-min | share by activation, depths 2-6 / 7-10 | runs below the target ESS |")
    print("|---|---|---|---|")
    for f, gc in _depth_figures(rows_of, timing):
        total = sum(r["wall_time"] or 0 for r in gc) or 1.0
        shares = []
        for activation in sorted({r["activation"] for r in gc}):
            mine = [r for r in gc if r["activation"] == activation]
            shallow = sum(r["wall_time"] or 0 for r in mine if r["depth"] < 7)
            deep = sum(r["wall_time"] or 0 for r in mine if r["depth"] >= 7)
            shares.append(f"{activation} {100 * shallow / total:.0f}% / {100 * deep / total:.0f}%")
        print(f"| {f['figure']} | {total / 60:.1f} | {'; '.join(shares)} | {f.get('below_target', '')} |")
    print()
    print(_eps_zero_rows(rows_of, timing))
    print()
    print(_lower_targets(rows_of, timing))
    print()
    print(_exchange_rates(rows_of, timing))
    if timing.get("wall_seconds"):
        print(f"\nlast run's wall time: {timing['wall_seconds'] / 60:.1f} min")


def _eps_zero_rows(rows_of: dict, timing: dict) -> str:
    """Per figure with ``eps = 0`` G&C rows: how many, the importance-sampled ones (a ``pareto_k``)
    with their largest Pareto shape, and the tempered ones (an ``effort`` record) with the count
    whose effort check saw the answer move."""
    lines = ["| figure | eps = 0 rows | importance (largest Pareto k) | tempered | moved with the effort | "
             "tempered evaluations: first runs / check / added (millions) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for f in timing["figures"]:
        zero = [r for r in rows_of[f["figure"]] if r["method"] == "gc" and r["eps"] == 0]
        if not zero:
            continue
        shapes = [r["pareto_k"] for r in zero if r.get("pareto_k") is not None]
        tempered = [json.loads(r["effort"]) for r in zero if r.get("effort")]
        moved = sum(any(check.get("moved") for check in e.get("checks", [])) for e in tempered)
        largest = f" ({max(shapes):.2f})" if shapes else ""
        spent = " / ".join(
            f"{sum(e.get('phases', {}).get(phase, {}).get('evaluations', 0) for e in tempered) / 1e6:.2f}"
            for phase in ("first", "check", "added")
        )  # runs stored before 2026-12-07 (twentieth session) have no phases: 0
        lines.append(
            f"| {f['figure']} | {len(zero)} | {len(shapes)}{largest} | {len(tempered)} | {moved} | {spent} |"
        )
    return "\n".join(lines)


def _depth_figures(rows_of: dict, timing: dict):
    """``(figure entry, its G&C rows)`` of every figure with a depth axis (width figures have one depth)."""
    for f in timing["figures"]:
        gc = [r for r in rows_of[f["figure"]] if r["method"] == "gc"]
        if len({r["depth"] for r in gc}) > 1:
            yield f, gc


def _lower_targets(rows_of: dict, timing: dict) -> str:
    """G&C core-minutes and the Monte Carlo share of each point's variance had SMC stopped at a
    lower ESS target: every SMC row (``eps > 0``) rerun in projection with its own ESS per run
    (:func:`~factorkit.fit.smc.projected_runs` from the paper's first runs to its cap, each run
    costing its mean time), its interval's variance scaled by the ESS ratio; the other rows as
    measured. The share: the mean over seeds of the rows' Monte Carlo variances (each from its 95%
    interval) over the seeds' variance of ``L_gen``, per point; median, 90th percentile, largest."""
    first, particles = PAPER_GC["runs"], PAPER_GC["particles"]
    cap = extension_bounds(first)[1]
    seconds = dict.fromkeys(TARGETS, 0.0)
    points: dict = {}
    seen = set()
    for f in timing["figures"]:
        for r in rows_of[f["figure"]]:
            if r["method"] != "gc" or r["status"] != "ok" or r["key"] in seen:
                continue  # a row two figures share counts once
            seen.add(r["key"])
            low, high = r["gen_loss_ci_low"], r["gen_loss_ci_high"]
            variance = ((high - low) / 3.92) ** 2 if low is not None and high is not None else math.nan
            for target in TARGETS:
                time, ess = r["wall_time"] or 0.0, r["ess"] or math.nan
                if r["sampler"] == "smc" and r["eps"] > 0 and r["accepted"]:
                    runs = max(1, round(r["accepted"] / particles))
                    planned = projected_runs(ess / runs, target, first, cap)
                    time, ess = time * planned / runs, ess / runs * planned
                seconds[target] += time
                cell = (f["figure"], r["width"], r["depth"], r["activation"], r["eps"], target)
                points.setdefault(cell, []).append((r["gen_loss"], variance * (r["ess"] or math.nan) / ess))
    lines = [
        "| SMC's ESS target | G&C core-min | Monte Carlo share of a point's variance: median, 90%, largest |",
        "|---|---|---|",
    ]
    for target in TARGETS:
        shares = []
        for (*_, t), values in points.items():
            losses = [v[0] for v in values]
            if t != target or len(losses) < 3:
                continue
            mean = sum(losses) / len(losses)
            spread = sum((x - mean) ** 2 for x in losses) / (len(losses) - 1)
            share = sum(v[1] for v in values) / len(values) / spread if spread > 0 else math.nan
            if not math.isnan(share):
                shares.append(share)
        shares.sort()
        quantile = lambda q: shares[min(len(shares) - 1, int(q * len(shares)))]  # noqa: B023, E731
        lines.append(f"| {target} | {seconds[target] / 60:.1f} | {quantile(0.5):.3f}, {quantile(0.9):.3f}, "
                     f"{shares[-1]:.2f} |")  # fmt: skip
    return "\n".join(lines)


def _exchange_rates(rows_of: dict, timing: dict) -> str:
    """Per depth figure and depth: each sampler's runs and core-seconds, the core-seconds per
    marginal draw and per SMC evaluation (runs pooled: total ``wall_time`` over total
    ``evaluations``, pilots included) and their ratio."""
    lines = [
        "| figure | depth | marginal runs, core-s | us per marginal draw | SMC runs, core-s | us per SMC "
        "evaluation | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for f, gc in _depth_figures(rows_of, timing):
        for depth in sorted({r["depth"] for r in gc}):
            cost = {}
            for sampler in ("marginal", "smc"):
                mine = [r for r in gc if r["depth"] == depth and r["sampler"] == sampler]
                units = sum(r["evaluations"] or 0 for r in mine)
                seconds = sum(r["wall_time"] or 0 for r in mine)
                cost[sampler] = (len(mine), seconds, 1e6 * seconds / units if units else math.nan)
            (m_runs, m_s, m_us), (s_runs, s_s, s_us) = cost["marginal"], cost["smc"]
            if not m_runs:
                continue  # depths the marginal sampler never ran are left out
            ratio = m_us / s_us if s_runs else math.nan
            cells = f"{m_runs}, {m_s:.0f} | {m_us:.0f} | {s_runs}, {s_s:.0f} | {s_us:.2f} | {ratio:.0f}"
            lines.append(f"| {f['figure']} | {depth} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
