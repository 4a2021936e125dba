"""Tables, trend tests and figures from a study's results store.

Aggregation follows the paper: for every curve point, the median and interquartile range of the
per-seed values; alongside, the mean with a 95% Student-t interval across seeds. A G&C run with
fewer than ``min_accepted`` acceptances is kept in the store (status ``few_accepted``) but left
out of the aggregates, and the number of such seeds is reported next to the point.

Dropping seeds point by point makes different points average different problems (seed ``s`` is
problem ``s`` at every point of a paired study), so every point also carries the *complete-case*
aggregate over the seeds valid at every point of its curve (``cc_*`` columns), and the trend
tests respect the pairing: Page's L test for an ordered trend over the seeds valid at every point
(blocks = seeds), and per-seed Spearman correlations with a Wilcoxon signed-rank test across
seeds, beside the Spearman test that pools (x, seed) pairs as if independent.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

from factorkit.experiments.store import load_rows

CURVE_KEYS = ("method", "activation", "prior", "eps", "rank", "n", "measurements", "loss", "optimizer")
GD_COLORS = ["tab:blue", "tab:cyan", "tab:purple", "tab:pink", "navy", "teal", "tab:gray", "tab:olive"]


def sweep_axis(rows: list[dict]) -> str:
    """The x axis: ``'outliers'`` when the outlier fraction varies, else ``'width'`` or ``'depth'``
    (the one that varies; width when both or neither do)."""
    if len({r.get("outliers") or 0.0 for r in rows}) > 1:
        return "outliers"
    widths = {r["width"] for r in rows}
    depths = {r["depth"] for r in rows}
    return "depth" if len(depths) > 1 and len(widths) == 1 else "width"


def curve_keys(axis: str) -> tuple[str, ...]:
    """What distinguishes one curve from another: the settings plus the size not on the x axis."""
    return CURVE_KEYS + tuple(k for k in ("width", "depth") if k != axis)


def study_metric(directory: str | Path) -> str:
    """The study's reported metric (``study.json``'s ``metric``; ``gen_loss`` when absent)."""
    path = Path(directory) / "study.json"
    if path.is_file():
        return json.loads(path.read_text()).get("metric", "gen_loss")
    return "gen_loss"


def study_rows(directory: str | Path) -> list[dict]:
    """The store's rows of the config in ``study.json`` (all rows when the folder has none).

    A store can hold rows of other configs (runs keyed by every setting, e.g. written by a version
    with other defaults); tables and figures describe the folder's config only, never a mix.
    """
    from factorkit.experiments.config import StudyConfig

    rows = load_rows(directory)
    path = Path(directory) / "study.json"
    if not path.is_file():
        return rows
    config = StudyConfig.from_stored(json.loads(path.read_text()))
    keys = {cell.key(seed) for cell in config.cells() for seed in config.seeds}
    return [row for row in rows if row["key"] in keys]


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half, mean + half


def _curve_label(row: dict, axis: str) -> tuple:
    return tuple(
        row.get(k) if row["method"] == "gc" or k not in ("prior", "eps") else None for k in curve_keys(axis)
    )


def _x(row: dict, axis: str):
    return (row.get("outliers") or 0.0) if axis == "outliers" else row[axis]


def aggregate(rows: list[dict], metric: str = "gen_loss") -> list[dict]:
    """One record per (curve, x): seeds, valid seeds, median/IQR, mean/CI of ``metric``, references.

    ``metric`` is ``'gen_loss'`` or ``'rel_error'``; the convex reference is reported in the same
    measure (``nuclear_gen_loss`` / ``nuclear_rel_error``), under the column ``nuclear``.
    """
    axis = sweep_axis(rows)
    keys = curve_keys(axis)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(_curve_label(row, axis), _x(row, axis))].append(row)
    records = []
    for (label, x), members in sorted(groups.items(), key=lambda item: (str(item[0][0]), item[0][1])):
        valid = np.array([r[metric] for r in members if r["status"] == "ok" and r.get(metric) is not None])
        record = dict(zip(keys, label, strict=True))
        record.update(
            {"axis": axis, "x": x, "metric": metric, "seeds": len(members), "valid_seeds": int(valid.size)}
        )
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
        references = [r.get(f"nuclear_{metric}") for r in members]
        references = [v for v in references if v is not None]
        record["nuclear"] = float(np.median(references)) if references else math.nan
        steps = [r["steps"] for r in members if r.get("steps") is not None and r["status"] == "ok"]
        record["steps_median"] = float(np.median(steps)) if steps else math.nan
        record["accepted_total"] = sum(r["accepted"] or 0 for r in members) if label[0] == "gc" else None
        record["ess_total"] = float(sum(r.get("ess") or 0 for r in members)) if label[0] == "gc" else None
        record["ess_min"] = float(min(r.get("ess") or 0 for r in members)) if label[0] == "gc" else None
        samplers = Counter(r.get("sampler") for r in members if label[0] == "gc" and r.get("sampler"))
        energies = [r["rank1_energy"] for r in members if r.get("rank1_energy") is not None]
        record["rank1_energy"] = float(np.median(energies)) if energies else None
        deltas = [max(r["rip_high"] - 1, 1 - r["rip_low"]) for r in members if r.get("rip_low") is not None]
        record["rip_delta"] = float(np.median(deltas)) if deltas else None
        record["samplers"] = " ".join(f"{k}:{v}" for k, v in sorted(samplers.items())) or None
        record["seconds"] = float(sum(r.get("wall_time") or 0 for r in members))
        # runs left out for too few acceptances: where they would sit (their median L_gen, when any
        # draw was accepted), so a figure can show the point instead of dropping it
        invalid = [r[metric] for r in members if r["status"] != "ok" and r.get(metric) is not None]
        record["invalid_median"] = float(np.median(invalid)) if invalid else math.nan
        records.append(record)
    _complete_case(rows, records, metric)
    return records


def _valid_values(rows: list[dict], metric: str) -> dict[tuple, dict[object, dict[int, float]]]:
    """``{curve label: {x: {seed: value}}}`` over the runs with status ok."""
    axis = sweep_axis(rows)
    curves: dict[tuple, dict] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        if row["status"] == "ok" and row.get(metric) is not None:
            curves[_curve_label(row, axis)][_x(row, axis)][row["seed"]] = row[metric]
    return curves


def _curve_xs(rows: list[dict], axis: str) -> dict[tuple, set]:
    """``{curve label: every x the curve has a run at}`` (valid or not)."""
    xs: dict[tuple, set] = defaultdict(set)
    for row in rows:
        xs[_curve_label(row, axis)].add(_x(row, axis))
    return xs


def _complete_seeds(points: dict[object, dict[int, float]], all_xs) -> list[int]:
    """The seeds with a valid value at every x of the curve."""
    if any(x not in points for x in all_xs):
        return []
    return sorted(set.intersection(*(set(points[x]) for x in all_xs)))


def _complete_case(rows: list[dict], records: list[dict], metric: str) -> None:
    """Add ``cc_seeds``, ``cc_median``, ``cc_mean`` to each record: the aggregate over the seeds
    valid at *every* x of its curve, so all points of a curve average the same problems."""
    axis = sweep_axis(rows)
    curves = _valid_values(rows, metric)
    xs_of = _curve_xs(rows, axis)
    keys = curve_keys(axis)
    for record in records:
        label = tuple(record[k] for k in keys)
        points = curves.get(label, {})
        seeds = _complete_seeds(points, xs_of[label])
        values = np.array([points[record["x"]][s] for s in seeds])
        record["cc_seeds"] = len(seeds)
        record["cc_median"] = float(np.median(values)) if seeds else math.nan
        record["cc_mean"] = float(values.mean()) if seeds else math.nan


def trend_tests(rows: list[dict], metric: str = "gen_loss") -> list[dict]:
    """Trend of per-seed G&C/GD ``metric`` along the swept axis, one record per curve.

    * ``rho``, ``p_value``: Spearman over all (x, seed) pairs with a valid value (pooled, as if
      independent; ``rho > 0``: the loss grows along the axis).
    * ``paired_seeds``, ``page_l``, ``page_p``: Page's L test (scipy's ``page_trend_test``) over
      the seeds valid at every x, each seed a block (its problem is the same at every x), for an
      increasing and for a decreasing order; ``page_p`` is two-sided (twice the smaller
      one-sided p, at most 1) and ``direction`` the order with the smaller p. Needs at least 2 such
      seeds and 3 x values (NaN otherwise).
    * ``seed_rho_mean``, ``wilcoxon_p``: Spearman's rho within each such seed, their mean, and a
      two-sided Wilcoxon signed-rank test of the per-seed rhos against 0.
    """
    axis = sweep_axis(rows)
    pooled: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        if row["status"] == "ok" and row.get(metric) is not None:
            pooled[_curve_label(row, axis)].append((_x(row, axis), row[metric]))
    curves = _valid_values(rows, metric)
    xs_of = _curve_xs(rows, axis)
    tests = []
    for label, pairs in pooled.items():
        xs, ys = zip(*pairs, strict=True)
        if len(set(xs)) < 2:
            continue
        rho, p_value = stats.spearmanr(xs, ys)
        test = {
            **dict(zip(curve_keys(axis), label, strict=True)),
            "axis": axis,
            "rho": float(rho),
            "p_value": float(p_value),
            "points": len(pairs),
            **_paired_trend(curves[label], sorted(xs_of[label])),
        }
        tests.append(test)
    return tests


def _paired_trend(points: dict[object, dict[int, float]], xs: list) -> dict:
    """Page's L test and per-seed Spearman over the seeds valid at every x (see :func:`trend_tests`)."""
    seeds = _complete_seeds(points, xs)
    result = {
        "paired_seeds": len(seeds),
        "page_l": math.nan,
        "page_p": math.nan,
        "direction": None,
        "seed_rho_mean": math.nan,
        "wilcoxon_p": math.nan,
    }
    if len(seeds) < 2 or len(xs) < 3:
        return result
    table = np.array([[points[x][seed] for x in xs] for seed in seeds])
    increasing = stats.page_trend_test(table)
    decreasing = stats.page_trend_test(table[:, ::-1])
    up = increasing.pvalue <= decreasing.pvalue
    chosen = increasing if up else decreasing
    rhos = np.array([stats.spearmanr(xs, values)[0] for values in table])
    rhos = rhos[np.isfinite(rhos)]
    result.update(
        {
            "page_l": float(chosen.statistic),
            "page_p": float(min(1.0, 2 * chosen.pvalue)),
            "direction": "increasing" if up else "decreasing",
            "seed_rho_mean": float(rhos.mean()) if rhos.size else math.nan,
        }
    )
    if rhos.size >= 2 and np.any(rhos != 0):
        result["wilcoxon_p"] = float(stats.wilcoxon(rhos).pvalue)
    return result


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def write_tables(directory: str | Path) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.md`` (aggregates plus trend tests) into ``directory``."""
    directory = Path(directory)
    rows = study_rows(directory)
    metric = study_metric(directory)
    records = aggregate(rows, metric)
    csv_path = directory / "summary.csv"
    columns = list(records[0]) if records else []
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)
    varying = [k for k in ("loss", "optimizer", "width", "depth") if len({r.get(k) for r in records}) > 1]
    shown = [
        "method",
        "activation",
        "prior",
        "eps",
        *varying,
        "x",
        "seeds",
        "valid_seeds",
        "median",
        "q25",
        "q75",
        "mean",
        "ci_low",
        "ci_high",
        "cc_seeds",
        "cc_median",
        "cc_mean",
        "accepted_total",
        "prior_gen_loss",
        "nuclear",
        "steps_median",
    ]
    # the sampler columns where G&C ran; the limit studies' singular-value energy and RIP bound
    shown += [
        k for k in ("ess_min", "samplers", "rank1_energy", "rip_delta") if any(r.get(k) for r in records)
    ]
    lines = [
        f"# {directory.name}: {metric} by {records[0]['axis'] if records else 'x'}",
        "",
        "| " + " | ".join(shown) + " |",
        "|" + "---|" * len(shown),
    ]
    lines += ["| " + " | ".join(_fmt(r[k]) for k in shown) + " |" for r in records]
    lines += [
        "",
        "## Trend tests",
        "",
        "Pooled: Spearman over every (x, seed) value, as if independent. Paired (the same problems "
        "at every x): Page's L test over the seeds valid at every x (two-sided p), and the mean "
        "per-seed Spearman rho with a Wilcoxon signed-rank test across seeds. `cc_*` columns above: "
        "the same complete-case seeds.",
        "",
        "| method | activation | prior | eps | loss | optimizer | width | depth | axis | pooled rho "
        "| pooled p | points | paired seeds | Page p | direction | seed rho mean | Wilcoxon p |",
        "|" + "---|" * 17,
    ]
    lines += [
        f"| {t['method']} | {t['activation']} | {_fmt(t['prior'])} | {_fmt(t['eps'])} | {_fmt(t['loss'])} | "
        f"{_fmt(t['optimizer'])} | {_fmt(t.get('width'))} | {_fmt(t.get('depth'))} | {t['axis']} | "
        f"{t['rho']:.3f} | {t['p_value']:.2e} | {t['points']} | {t['paired_seeds']} | {_fmt(t['page_p'])} | "
        f"{_fmt(t['direction'])} | {_fmt(t['seed_rho_mean'])} | {_fmt(t['wilcoxon_p'])} |"
        for t in trend_tests(rows, metric)
    ]
    md_path = directory / "summary.md"
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def plot_study(directory: str | Path, fmt: str = "png", dpi: int = 120) -> list[Path]:
    """Figures of the study's metric against the swept axis, one panel per activation.

    ``fmt``: ``'png'``, ``'pdf'`` or ``'svg'`` (vector formats for papers); ``dpi`` for png.

    ``<axis>_median.png``: median and interquartile band across seeds (as in the paper);
    ``<axis>_mean.png``: mean and 95% interval. Reference lines: random guessing (mean ``L_gen``
    of unconditioned prior draws) and the convex reference (minimum nuclear norm; nuclear norm
    plus an l1 fit when the measurements carry outliers). ``rel_error`` is drawn on a log scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    metric = study_metric(directory)
    records = aggregate(study_rows(directory), metric)
    if not records:
        raise ValueError(f"the study in {str(directory)!r} has no rows yet")
    axis = records[0]["axis"]
    activations = sorted({r["activation"] for r in records})
    # what tells GD curves apart, besides the method
    gd_keys = [
        k
        for k in ("loss", "optimizer", "width", "depth")
        if k != axis and len({r.get(k) for r in records if r["method"] == "gd"}) > 1
    ]
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
            gd_colors = iter(GD_COLORS)
            for r in mine:
                curves[(r["method"], r["prior"], r["eps"], *(r.get(k) for k in gd_keys))].append(r)
            for (method, prior, eps, *extra), points in sorted(curves.items(), key=str):
                points.sort(key=lambda r: r["x"])
                xs = np.array([r["x"] for r in points])
                if method == "gd":
                    suffix = ", ".join(f"{k} {v}" for k, v in zip(gd_keys, extra, strict=True))
                    label = f"GD ({suffix})" if suffix else "GD"
                    color = next(gd_colors, None)
                else:
                    label = f"G&C ({prior}, eps={eps:g})"
                    color = next(gc_colors, None)
                # the line joins every point with a value (a point without one does not cut it)
                shown = [r for r in points if math.isfinite(r[centre])]
                line = panel.plot(
                    [r["x"] for r in shown], [r[centre] for r in shown], marker="o", label=label, color=color
                )[0]
                panel.fill_between(
                    [r["x"] for r in shown],
                    [r[low] for r in shown],
                    [r[high] for r in shown],
                    alpha=0.2,
                    color=line.get_color(),
                )
                _mark_left_out(panel, points, centre, method)
                cc_key = "cc_median" if style == "median" else "cc_mean"
                if any(r["cc_seeds"] != r["valid_seeds"] for r in points):
                    complete = [r for r in points if math.isfinite(r[cc_key])]
                    if complete:
                        panel.plot(
                            [r["x"] for r in complete],
                            [r[cc_key] for r in complete],
                            linestyle="--",
                            linewidth=1,
                            color=line.get_color(),
                            label=f"{label.split(' (')[0]}, the {complete[0]['cc_seeds']} seeds "
                            f"valid at every {axis}",
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
            reference = [float(np.nanmedian([r["nuclear"] for r in mine if r["x"] == x])) for x in xs_all]
            panel.plot(
                xs_all,
                reference,
                linestyle=":",
                color="black",
                label="nuclear norm + l1 fit" if axis == "outliers" else "min nuclear norm",
            )
            if metric == "rel_error":
                panel.set_yscale("log")
            else:
                panel.set_ylim(bottom=min(0.0, panel.get_ylim()[0]))
            if axis == "width":
                panel.set_xscale("log", base=2)
            panel.set_xticks(xs_all, [f"{x:g}" for x in xs_all])
            panel.set_xlabel("fraction of outliers" if axis == "outliers" else axis)
            panel.set_ylabel("||W - W*||_F / ||W*||_F" if metric == "rel_error" else "generalization loss")
            panel.set_title(f"{activation} ({band_label}; x: seeds kept/run)", fontsize=9)
            panel.legend(fontsize=7)
        fig.suptitle(directory.name)
        fig.tight_layout()
        path = directory / f"{axis}_{style}.{fmt}"
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        paths.append(path)
    return paths


def _mark_left_out(panel, points: list[dict], centre: str, method: str) -> None:
    """Show the points that lost seeds: a black x with ``valid/seeds`` at a point that kept some;
    at a point that kept none, a black x where its few-accepted runs sit (their median), or on the
    random-guess line when nothing was accepted, labelled with the total accepted count."""
    partial = [r for r in points if 0 < r["valid_seeds"] < r["seeds"]]
    empty = [r for r in points if r["valid_seeds"] == 0]
    label = "seeds left out (too few acceptances)" if method == "gc" else "seeds left out"
    for r in partial:
        panel.scatter(r["x"], r[centre], marker="x", s=80, color="black", zorder=5, label=label)
        panel.annotate(
            f"{r['valid_seeds']}/{r['seeds']}", (r["x"], r[centre]), textcoords="offset points",
            xytext=(4, 4), fontsize=7,
        )  # fmt: skip
        label = None
    empty_label = "no valid seed: few-accepted median, or the random-guess line if none accepted"
    for r in empty:
        y = r["invalid_median"] if math.isfinite(r["invalid_median"]) else r["prior_gen_loss"]
        if not math.isfinite(y):
            continue
        panel.scatter(r["x"], y, marker="X", s=90, color="black", zorder=5, label=empty_label)
        empty_label = None
        accepted = r["accepted_total"] if r["accepted_total"] is not None else "-"
        panel.annotate(
            f"0/{r['seeds']}, {accepted} acc.", (r["x"], y), textcoords="offset points", xytext=(4, -10),
            fontsize=7,
        )  # fmt: skip


def plot_volumes(directory: str | Path, fmt: str = "png", dpi: int = 120) -> Path | None:
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
    rows = [r for r in study_rows(directory) if r["method"] == "gc" and r["log_volume"] is not None]
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
    path = directory / f"volume.{fmt}"
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


REPORT_FILE = "report.html"
COMMAND_FILE = "command.txt"
REPORT_COLUMNS = (
    "method", "activation", "prior", "eps", "x", "seeds", "valid_seeds", "median", "q25", "q75", "mean",
    "ci_low", "ci_high", "cc_seeds", "cc_median", "accepted_total", "ess_total", "ess_min", "samplers",
    "seconds", "prior_gen_loss", "nuclear", "rank1_energy", "rip_delta",
)  # fmt: skip


def write_report(directory: str | Path, figures: list[Path] | None = None) -> Path:
    """``report.html``: one self-contained page of the study (no network, figures inline).

    The config, every figure (PNG, base64) with its table of medians, IQRs, means and intervals,
    accepted draws, ESS and seconds per point (points that lost seeds marked), the trend tests
    (pooled and paired), the software versions the rows were computed with and the commands that
    ran the study (``command.txt``). ``factorkit plot DIR`` rebuilds it from the store.
    ``figures``: PNG files already drawn for this study (drawn here when None).
    """
    import base64
    import html

    directory = Path(directory)
    rows = study_rows(directory)
    metric = study_metric(directory)
    records = aggregate(rows, metric)
    if not records:
        raise ValueError(f"the study in {str(directory)!r} has no rows yet")
    if figures is None:
        figures = [p for p in (*plot_study(directory), plot_volumes(directory)) if p is not None]
    config_path = directory / "study.json"
    config = config_path.read_text() if config_path.is_file() else "{}"
    commands = (
        (directory / COMMAND_FILE).read_text().splitlines() if (directory / COMMAND_FILE).is_file() else []
    )
    versions = sorted({r["versions"] for r in rows if r.get("versions")})

    def cell(value) -> str:
        return html.escape(_fmt(value))

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(directory.name)}: factorkit study</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
        "font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "tr.invalid{background:#fde2e2}img{max-width:100%}pre{background:#f6f6f6;padding:1em}</style>",
        "</head><body>",
        f"<h1>{html.escape(directory.name)}</h1>",
        f"<p>{len(rows)} runs, metric <code>{html.escape(metric)}</code>, axis "
        f"<code>{html.escape(str(records[0]['axis']))}</code>. Rows marked red lost seeds to too few "
        "acceptances (kept in the store, left out of the aggregates).</p>",
        "<h2>Figures</h2>",
    ]
    for path in figures:
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"<figure><img alt='{html.escape(path.name)}' src='data:image/png;base64,{data}'>")
        parts.append(f"<figcaption>{html.escape(path.name)}</figcaption></figure>")
    parts.append("<h2>Points</h2><table id='points'><tr>")
    parts += [f"<th>{html.escape(c)}</th>" for c in REPORT_COLUMNS]
    parts.append("</tr>")
    for record in records:
        flag = " class='invalid'" if record["valid_seeds"] < record["seeds"] else ""
        parts.append(
            f"<tr{flag}>" + "".join(f"<td>{cell(record.get(c))}</td>" for c in REPORT_COLUMNS) + "</tr>"
        )
    parts.append("</table><h2>Trend tests</h2><table id='trends'><tr>")
    trend_columns = ("method", "activation", "axis", "rho", "p_value", "points", "paired_seeds", "page_p",
                     "direction", "seed_rho_mean", "wilcoxon_p")  # fmt: skip
    parts += [f"<th>{html.escape(c)}</th>" for c in trend_columns]
    parts.append("</tr>")
    for test in trend_tests(rows, metric):
        parts.append("<tr>" + "".join(f"<td>{cell(test.get(c))}</td>" for c in trend_columns) + "</tr>")
    parts.append("</table><h2>Config</h2>")
    parts.append(f"<pre id='config'>{html.escape(config)}</pre>")
    parts.append(
        "<h2>Commands</h2><pre id='commands'>" + html.escape("\n".join(commands) or "(not recorded)")
    )
    parts.append("</pre><h2>Software</h2><pre id='versions'>" + html.escape("\n".join(versions)) + "</pre>")
    parts.append("</body></html>")
    path = directory / REPORT_FILE
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
