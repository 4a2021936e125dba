"""Figures of a study folder: the metric against the swept axis, and the prior volumes."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from factorkit.experiments.summary import aggregate, study_metric, study_rows, sweep_axis

LEGEND_BELOW = 5  # a panel's legend of more entries goes below it (and the figure grows to hold it)
GD_COLORS = ["tab:blue", "tab:cyan", "tab:purple", "tab:pink", "navy", "teal", "tab:gray", "tab:olive"]


STYLES = {
    "median": ("median", "q25", "q75", "median, IQR over seeds"),
    "mean": ("mean", "ci_low", "ci_high", "mean, 95% CI over seeds"),
}


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
        for k in ("loss", "optimizer", "eps_train", "width", "depth")
        if k != axis and len({r.get(k) for r in records if r["method"] == "gd"}) > 1
    ]
    paths = []
    for style in STYLES:
        fig, axes = plt.subplots(1, len(activations), figsize=(4.6 * len(activations), 3.8), squeeze=False)
        for panel, activation in zip(axes[0], activations, strict=True):
            mine = [r for r in records if r["activation"] == activation]
            _draw_panel(panel, mine, style, axis, gd_keys)
            _finish_panel(panel, mine, axis, metric, f"{activation} ({STYLES[style][3]}; x: seeds kept/run)")
        entries = max(len(panel.get_legend_handles_labels()[1]) for panel in axes[0])
        if entries > LEGEND_BELOW:  # room for the legends drawn below the panels
            fig.set_figheight(3.8 + 0.17 * entries)
        fig.suptitle(directory.name)
        fig.tight_layout()
        path = directory / f"{axis}_{style}.{fmt}"
        fig.savefig(path, dpi=dpi, bbox_inches="tight")  # legends below the panels included
        plt.close(fig)
        paths.append(path)
    return paths


def _draw_panel(panel, records: list[dict], style: str, axis: str, gd_keys: list[str]) -> None:
    """Every curve of one activation: G&C per prior and threshold, GD per ``gd_keys`` setting."""
    curves = defaultdict(list)
    gc_colors = iter(["tab:orange", "tab:red", "tab:green", "tab:purple", "tab:brown", "tab:olive"])
    gd_colors = iter(GD_COLORS)
    for r in records:
        curves[(r["method"], r["prior"], r["eps"], *(r.get(k) for k in gd_keys))].append(r)
    for (method, prior, eps, *extra), points in sorted(curves.items(), key=str):
        points.sort(key=lambda r: r["x"])
        if method == "gd":
            suffix = ", ".join(_gd_setting(k, v) for k, v in zip(gd_keys, extra, strict=True))
            label, color = (f"GD ({suffix})" if suffix else "GD"), next(gd_colors, None)
        else:
            label, color = f"G&C ({prior}, eps={eps:g})", next(gc_colors, None)
        _draw_curve(panel, points, style, axis, method, label, color)


def _gd_setting(key: str, value) -> str:
    """How a GD curve's legend names one of its settings."""
    if key == "eps_train":
        return "the step count as published" if value is None else f"to L_train < {value:g}"
    return f"{key} {value}"


def _draw_curve(panel, points: list[dict], style: str, axis: str, method: str, label: str, color) -> None:
    """A curve with its band, the seeds it left out, its complete-case twin and (G&C) random guessing."""
    centre, low, high, _ = STYLES[style]
    # the line joins every point with a value (a point without one does not cut it)
    shown = [r for r in points if math.isfinite(r[centre])]
    xs = [r["x"] for r in shown]
    line = panel.plot(xs, [r[centre] for r in shown], marker="o", label=label, color=color)[0]
    panel.fill_between(
        xs, [r[low] for r in shown], [r[high] for r in shown], alpha=0.2, color=line.get_color()
    )
    _mark_left_out(panel, points, centre, method)
    if method == "gd":
        _mark_unfitted(panel, shown, centre, line.get_color())
    else:
        _mark_unmixed(panel, shown, centre, line.get_color())
        _mark_truth_limit(panel, points, line.get_color())
    cc_key = "cc_median" if style == "median" else "cc_mean"
    if any(r["cc_seeds"] != r["valid_seeds"] for r in points):
        complete = [r for r in points if math.isfinite(r[cc_key])]
        if complete:
            panel.plot(
                [r["x"] for r in complete], [r[cc_key] for r in complete], linestyle="--", linewidth=1,
                color=line.get_color(),
                label=f"{label.split(' (')[0]}, the {complete[0]['cc_seeds']} seeds valid at every {axis}",
            )  # fmt: skip
    if method == "gc":
        guess = [r["prior_gen_loss"] for r in points]
        label = "random guess (prior)"
        if label in panel.get_legend_handles_labels()[1]:  # one entry however many G&C curves
            label = None
        panel.plot([r["x"] for r in points], guess, linestyle="--", color="gray", label=label)


def _finish_panel(panel, records: list[dict], axis: str, metric: str, title: str) -> None:
    """The convex reference, the scales, ticks, labels, title and legend."""
    xs_all = sorted({r["x"] for r in records})
    reference = [float(np.nanmedian([r["nuclear"] for r in records if r["x"] == x])) for x in xs_all]
    panel.plot(xs_all, reference, linestyle=":", color="black",
               label="nuclear norm + l1 fit" if axis == "outliers" else "min nuclear norm")  # fmt: skip
    if metric == "rel_error":
        panel.set_yscale("log")
    else:
        panel.set_ylim(bottom=min(0.0, panel.get_ylim()[0]))
    if axis == "width":
        panel.set_xscale("log", base=2)
    panel.set_xticks(xs_all, [f"{x:g}" for x in xs_all])
    panel.set_xlabel("fraction of outliers" if axis == "outliers" else axis)
    panel.set_ylabel("||W - W*||_F / ||W*||_F" if metric == "rel_error" else "generalization loss")
    panel.set_title(title, fontsize=9)
    if len(panel.get_legend_handles_labels()[1]) > LEGEND_BELOW:  # below the panel: it hides no point
        panel.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)
    else:
        panel.legend(fontsize=7)


def _mark_unfitted(panel, points: list[dict], centre: str, color) -> None:
    """GD points whose median training loss stayed above the fit threshold (the G&C threshold, or
    ``gd.eps_train``): a hollow marker with its own legend entry and ``k/n`` seeds not fitted, so
    such a point is not read as a fitted solution that generalizes worse."""
    label = None
    for r in points:
        if not r.get("unfitted") or 2 * r["unfitted"] <= r["valid_seeds"]:
            continue
        if label is None:
            label = f"GD not fitted (median L_train > {r['fit_threshold']:g})"
        panel.scatter(r["x"], r[centre], marker="o", s=110, facecolors="white", edgecolors=color,
                      linewidths=2, zorder=6, label=label)  # fmt: skip
        panel.annotate(f"{r['unfitted']}/{r['valid_seeds']} unfit", (r["x"], r[centre]),
                       textcoords="offset points", xytext=(5, -11), fontsize=7, color=color)  # fmt: skip
        label = ""  # one legend entry per curve


def _mark_unmixed(panel, points: list[dict], centre: str, color) -> None:
    """G&C points with seeds whose sampler's answer still moved with its effort (``unmixed``:
    tempered SMC at ``eps = 0``, the guide's "Deep eps = 0 posteriors"): a hollow square with its
    own legend entry and ``k/n`` seeds, so such a point is not read as converged (the seeds stay in
    the point, counted, not dropped)."""
    label = None
    for r in points:
        if not r.get("unmixed"):
            continue
        if label is None:
            label = "G&C sampler not mixed (answer moved with effort)"
        panel.scatter(r["x"], r[centre], marker="s", s=110, facecolors="none", edgecolors=color,
                      linewidths=2, zorder=6, label=label)  # fmt: skip
        panel.annotate(f"{r['unmixed']}/{r['valid_seeds']} unmixed", (r["x"], r[centre]),
                       textcoords="offset points", xytext=(5, 5), fontsize=7, color=color)  # fmt: skip
        label = ""  # one legend entry per curve


def _mark_truth_limit(panel, points: list[dict], color) -> None:
    """G&C points whose ``eps -> 0`` limit is counted to be the truth (``eps0_limit == 'W*'``: the
    interpolating posterior does not exist there, :mod:`factorkit.fit.tail`): a triangle on the
    ``L_gen = 0`` line at that x, one legend entry per panel. Drawn for ``gen_loss`` only (a log
    scale has no 0); nothing was sampled for it, so it carries no band."""
    label = "G&C's eps -> 0 limit, counted: W = W* (L_gen = 0)"
    if label in panel.get_legend_handles_labels()[1]:
        label = None
    for r in points:
        if r.get("eps0_limit") != "W*" or r.get("metric") != "gen_loss":
            continue
        panel.scatter(r["x"], 0.0, marker="v", s=60, color=color, zorder=6, clip_on=False, label=label)
        label = None


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
    if method == "gc":
        empty_label = "no valid seed: few-accepted median, or the random-guess line if none accepted"
    else:
        empty_label = "no seed reached its training threshold: where they stopped (median)"
    for r in empty:
        y = r["invalid_median"] if math.isfinite(r["invalid_median"]) else r["prior_gen_loss"]
        if not math.isfinite(y):
            continue
        panel.scatter(r["x"], y, marker="X", s=90, color="black", zorder=5, label=empty_label)
        empty_label = None
        if method == "gc":
            accepted = r["accepted_total"] if r["accepted_total"] is not None else "-"
            text = f"0/{r['seeds']}, {accepted} acc."
        else:
            text = f"0/{r['seeds']} fitted"
        panel.annotate(text, (r["x"], y), textcoords="offset points", xytext=(4, -10), fontsize=7)


def plot_volumes(directory: str | Path, fmt: str = "png", dpi: int = 120) -> Path | None:
    """``volume.png``: the prior volume ``log10 V(eps)`` against eps, one curve per width/depth.

    SMC rows carry their level ladder (threshold, cumulative log V); each seed's curve is
    interpolated in log eps and the median over seeds drawn. Rejection and marginal rows add their
    single point ``(eps, log V)`` (``eps = 0`` rows carry a density, not a volume: not drawn
    here). Returns ``None`` when the study has neither.
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
            single = [r for r in mine if r[axis] == x and not r["volume_curve"]]
            points = [(r["eps"], r["log_volume"]) for r in single]
            if points:
                eps_values = sorted({p[0] for p in points})
                medians = [np.median([v for e, v in points if e == e0]) / np.log(10) for e0 in eps_values]
                panel.scatter(
                    eps_values,
                    medians,
                    color=color,
                    marker="s",
                    label=None
                    if curves
                    else f"{axis} {x} ({', '.join(sorted({r['sampler'] for r in single}))})",
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
