"""Tables, trend tests and figures from a study's results store.

Aggregation follows the paper: for every curve point, the median and interquartile range of the
per-seed values; alongside, the mean with a 95% Student-t interval across seeds. A G&C run with
fewer than ``min_accepted`` acceptances is kept in the store (status ``few_accepted``) but left
out of the aggregates, and the number of such seeds is reported next to the point.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

from factorkit.experiments.store import load_rows

CURVE_KEYS = ("method", "activation", "prior", "eps", "rank", "n", "measurements")


def sweep_axis(rows: list[dict]) -> str:
    """``'width'`` or ``'depth'``: the one that varies (width when both or neither do)."""
    widths = {r["width"] for r in rows}
    depths = {r["depth"] for r in rows}
    return "depth" if len(depths) > 1 and len(widths) == 1 else "width"


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half, mean + half


def _curve_label(row: dict) -> tuple:
    return tuple(row[k] if row["method"] == "gc" or k not in ("prior", "eps") else None for k in CURVE_KEYS)


def aggregate(rows: list[dict]) -> list[dict]:
    """One record per (curve, x): seeds, valid seeds, median/IQR, mean/CI, references."""
    axis = sweep_axis(rows)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(_curve_label(row), row[axis])].append(row)
    records = []
    for (label, x), members in sorted(groups.items(), key=lambda item: (str(item[0][0]), item[0][1])):
        valid = np.array(
            [r["gen_loss"] for r in members if r["status"] == "ok" and r["gen_loss"] is not None]
        )
        record = dict(zip(CURVE_KEYS, label, strict=True))
        record.update({"axis": axis, "x": x, "seeds": len(members), "valid_seeds": int(valid.size)})
        if valid.size:
            q25, median, q75 = np.percentile(valid, [25, 50, 75])
            mean, low, high = _interval(valid)
            record.update(
                {
                    "median": median,
                    "q25": q25,
                    "q75": q75,
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
        else:
            record.update({k: math.nan for k in ("median", "q25", "q75", "mean", "ci_low", "ci_high")})
        priors = [r["prior_gen_loss"] for r in members if r["prior_gen_loss"] is not None]
        record["prior_gen_loss"] = float(np.median(priors)) if priors else math.nan
        record["nuclear_gen_loss"] = float(np.median([r["nuclear_gen_loss"] for r in members]))
        record["accepted_total"] = sum(r["accepted"] or 0 for r in members) if label[0] == "gc" else None
        records.append(record)
    return records


def trend_tests(rows: list[dict]) -> list[dict]:
    """Spearman rank correlation between the swept axis and per-seed G&C/GD ``L_gen``.

    One test per curve over all (x, seed) pairs with a valid value; ``rho > 0`` means the loss
    grows along the axis.
    """
    axis = sweep_axis(rows)
    curves: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        if row["status"] == "ok" and row["gen_loss"] is not None:
            curves[_curve_label(row)].append((row[axis], row["gen_loss"]))
    tests = []
    for label, pairs in curves.items():
        xs, ys = zip(*pairs, strict=True)
        if len(set(xs)) < 2:
            continue
        rho, p_value = stats.spearmanr(xs, ys)
        tests.append(
            {
                **dict(zip(CURVE_KEYS, label, strict=True)),
                "axis": axis,
                "rho": float(rho),
                "p_value": float(p_value),
                "points": len(pairs),
            }
        )
    return tests


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def write_tables(directory: str | Path) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.md`` (aggregates plus trend tests) into ``directory``."""
    directory = Path(directory)
    rows = load_rows(directory)
    records = aggregate(rows)
    csv_path = directory / "summary.csv"
    columns = list(records[0]) if records else []
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)
    shown = [
        "method",
        "activation",
        "prior",
        "eps",
        "x",
        "seeds",
        "valid_seeds",
        "median",
        "q25",
        "q75",
        "mean",
        "ci_low",
        "ci_high",
        "accepted_total",
        "prior_gen_loss",
        "nuclear_gen_loss",
    ]
    lines = [
        f"# {directory.name}: L_gen by {records[0]['axis'] if records else 'x'}",
        "",
        "| " + " | ".join(shown) + " |",
        "|" + "---|" * len(shown),
    ]
    lines += ["| " + " | ".join(_fmt(r[k]) for k in shown) + " |" for r in records]
    lines += [
        "",
        "## Trend tests (Spearman, per-seed values)",
        "",
        "| method | activation | prior | eps | axis | rho | p_value | points |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {t['method']} | {t['activation']} | {_fmt(t['prior'])} | {_fmt(t['eps'])} | {t['axis']} | "
        f"{t['rho']:.3f} | {t['p_value']:.2e} | {t['points']} |"
        for t in trend_tests(rows)
    ]
    md_path = directory / "summary.md"
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def plot_study(directory: str | Path) -> list[Path]:
    """PNG figures of ``L_gen`` against the swept axis, one panel per activation.

    ``<axis>_median.png``: median and interquartile band across seeds (as in the paper);
    ``<axis>_mean.png``: mean and 95% interval. Reference lines: random guessing (mean ``L_gen``
    of unconditioned prior draws) and the minimum-nuclear-norm solution.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    records = aggregate(load_rows(directory))
    if not records:
        raise ValueError(f"the study in {str(directory)!r} has no rows yet")
    axis = records[0]["axis"]
    activations = sorted({r["activation"] for r in records})
    paths = []
    for style, (centre, low, high, band_label) in {
        "median": ("median", "q25", "q75", "median, IQR over seeds"),
        "mean": ("mean", "ci_low", "ci_high", "mean, 95% CI over seeds"),
    }.items():
        fig, axes = plt.subplots(1, len(activations), figsize=(4.6 * len(activations), 3.8), squeeze=False)
        for panel, activation in zip(axes[0], activations, strict=True):
            mine = [r for r in records if r["activation"] == activation]
            curves = defaultdict(list)
            gc_colors = iter(["tab:orange", "tab:red", "tab:green", "tab:purple", "tab:brown", "tab:olive"])
            for r in mine:
                curves[(r["method"], r["prior"], r["eps"])].append(r)
            for (method, prior, eps), points in sorted(curves.items(), key=str):
                points.sort(key=lambda r: r["x"])
                xs = np.array([r["x"] for r in points])
                label = "GD" if method == "gd" else f"G&C ({prior}, eps={eps:g})"
                color = "tab:blue" if method == "gd" else next(gc_colors, None)
                line = panel.plot(xs, [r[centre] for r in points], marker="o", label=label, color=color)[0]
                panel.fill_between(
                    xs,
                    [r[low] for r in points],
                    [r[high] for r in points],
                    alpha=0.2,
                    color=line.get_color(),
                )
                flagged = [r for r in points if r["valid_seeds"] < r["seeds"]]
                if flagged:
                    panel.scatter(
                        [r["x"] for r in flagged],
                        [r[centre] for r in flagged],
                        marker="x",
                        s=80,
                        color="black",
                        zorder=5,
                        label="seeds with too few acceptances" if method == "gc" else None,
                    )
                if method == "gc":
                    panel.plot(
                        xs,
                        [r["prior_gen_loss"] for r in points],
                        linestyle="--",
                        color="gray",
                        label="random guess (prior)",
                    )
            xs_all = sorted({r["x"] for r in mine})
            nuclear = float(np.median([r["nuclear_gen_loss"] for r in mine]))
            panel.plot(
                xs_all, [nuclear] * len(xs_all), linestyle=":", color="black", label="min nuclear norm"
            )
            panel.set_ylim(bottom=min(0.0, panel.get_ylim()[0]))
            if axis == "width":
                panel.set_xscale("log", base=2)
            panel.set_xticks(xs_all, [str(x) for x in xs_all])
            panel.set_xlabel(axis)
            panel.set_ylabel("generalization loss")
            panel.set_title(f"{activation} ({band_label})", fontsize=9)
            panel.legend(fontsize=7)
        fig.suptitle(directory.name)
        fig.tight_layout()
        path = directory / f"{axis}_{style}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_volumes(directory: str | Path) -> Path | None:
    """``volume.png``: the prior volume ``log10 V(eps)`` against eps, one curve per width/depth.

    SMC rows carry their level ladder (threshold, cumulative log V); each seed's curve is
    interpolated in log eps and the median over seeds drawn. Rejection rows add their single
    point ``(eps, log(accepted / draws))``. Returns ``None`` when the study has neither.
    """
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    rows = [r for r in load_rows(directory) if r["method"] == "gc" and r["log_volume"] is not None]
    if not rows:
        return None
    axis = sweep_axis(rows)
    activations = sorted({r["activation"] for r in rows})
    fig, axes = plt.subplots(1, len(activations), figsize=(4.6 * len(activations), 3.8), squeeze=False)
    colors = plt.get_cmap("viridis")
    for panel, activation in zip(axes[0], activations, strict=True):
        mine = [r for r in rows if r["activation"] == activation]
        xs = sorted({r[axis] for r in mine})
        for index, x in enumerate(xs):
            color = colors(index / max(len(xs) - 1, 1))
            curves = [json.loads(r["volume_curve"]) for r in mine if r[axis] == x and r["volume_curve"]]
            if curves:
                low = max(min(c[-1][0] for c in curves), 1e-300)
                high = min(c[0][0] for c in curves)
                grid = np.geomspace(low, high, 50)
                values = [
                    np.interp(np.log(grid), np.log([p[0] for p in c][::-1]), [p[1] for p in c][::-1])
                    for c in curves
                ]
                panel.plot(grid, np.median(values, axis=0) / np.log(10), color=color, label=f"{axis} {x}")
            points = [(r["eps"], r["log_volume"]) for r in mine if r[axis] == x and not r["volume_curve"]]
            if points:
                eps_values = sorted({p[0] for p in points})
                medians = [np.median([v for e, v in points if e == e0]) / np.log(10) for e0 in eps_values]
                panel.scatter(
                    eps_values,
                    medians,
                    color=color,
                    marker="s",
                    label=None if curves else f"{axis} {x} (rejection)",
                )
        panel.set_xscale("log")
        panel.set_xlabel("eps (threshold on L_train)")
        panel.set_ylabel("log10 V(eps) = log10 P_prior(L_train < eps)")
        panel.set_title(f"{activation}: prior volume, median over seeds", fontsize=9)
        panel.legend(fontsize=7)
    fig.suptitle(directory.name)
    fig.tight_layout()
    path = directory / "volume.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
