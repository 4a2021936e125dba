"""A study's rows summarized point by point, and its trend tests.
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

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

from factorkit.experiments.store import load_rows

CURVE_KEYS = (
    "method",
    "activation",
    "prior",
    "eps",
    "rank",
    "n",
    "measurements",
    "loss",
    "optimizer",
    "eps_train",
)


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


def fit_threshold(row: dict, gc_eps: float | None) -> float | None:
    """The training loss a GD run must reach to count as fitted: its ``eps_train`` where it ran to
    one, else the study's G&C threshold ``gc_eps`` (the largest positive one), so that GD and G&C
    are compared at the same fit; ``None`` where neither exists."""
    settings = json.loads(row["settings"]) if row.get("settings") else {}
    return settings.get("eps_train") or gc_eps


def _fit_record(members: list[dict], gc_eps: float | None) -> dict:
    """GD points: the median training loss, the threshold and how many valid seeds stayed above it."""
    ok = [r for r in members if r["status"] == "ok" and r.get("train_loss") is not None]
    threshold = fit_threshold(members[0], gc_eps) if members else None
    if not ok or threshold is None:
        return {"train_median": math.nan, "fit_threshold": threshold, "unfitted": None}
    train = np.array([r["train_loss"] for r in ok])
    return {
        "train_median": float(np.median(train)),
        "fit_threshold": threshold,
        # a relative margin of 1e-9: a run stopped by eps_train sits at the threshold, not above it
        "unfitted": int((train > threshold * (1 + 1e-9)).sum()),
    }


def eps_zero_limit(row: dict) -> str | None:
    """What G&C tends to at this row's settings as ``eps -> 0``, by the count of
    :mod:`factorkit.fit.tail`: ``'W*'`` where the interpolating posterior does not exist (the
    threshold posterior concentrates on the truth, ``L_gen -> 0``), ``'posterior'`` where it
    exists (the ``eps = 0`` point a grid can hold), ``None`` where the count says neither (not
    covered, a bound above 1, noisy measurements)."""
    from factorkit.fit.tail import settings_tail_index

    needed = ("m", "m2", "width", "depth", "activation", "prior", "n", "rank", "measurements")
    if any(row.get(k) is None for k in needed):
        return None
    settings = json.loads(row["settings"]) if row.get("settings") else {}
    tail = settings_tail_index({**row, "noise": settings.get("noise")})
    if tail is None:
        return None
    return "W*" if tail.missing else "posterior" if tail.exists else None


def aggregate(rows: list[dict], metric: str = "gen_loss") -> list[dict]:
    """One record per (curve, x): seeds, valid seeds, median/IQR, mean/CI of ``metric``, references.

    ``metric`` is ``'gen_loss'`` or ``'rel_error'``; the convex reference is reported in the same
    measure (``nuclear_gen_loss`` / ``nuclear_rel_error``), under the column ``nuclear``. GD points
    also carry ``train_median``, ``fit_threshold`` (:func:`fit_threshold`) and ``unfitted``, the
    valid seeds whose training loss stayed above it: a GD run that did not fit is not evidence
    about how fitted solutions generalize, and figures draw such points apart. G&C points whose
    runs checked their effort (tempered SMC at ``eps = 0``) carry ``unmixed``: the seeds whose
    answer moved with 4x the pCN steps (biased; the guide's "Deep eps = 0 posteriors"), and
    ``eps0_limit`` (:func:`eps_zero_limit`): where G&C's ``eps -> 0`` limit is counted to be ``W*``.
    """
    axis = sweep_axis(rows)
    keys = curve_keys(axis)
    gc_eps = max((r["eps"] for r in rows if r["method"] == "gc" and (r.get("eps") or 0) > 0), default=None)
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
        # G&C seeds whose tempered SMC answer moved when its effort was checked (eps = 0)
        efforts = [json.loads(r["effort"]) for r in members if r.get("effort")]
        record["unmixed"] = sum(not e.get("converged", True) for e in efforts) if efforts else None
        record["eps0_limit"] = eps_zero_limit(members[0]) if label[0] == "gc" else None
        record["seconds"] = float(sum(r.get("wall_time") or 0 for r in members))
        if label[0] == "gd":
            record.update(_fit_record(members, gc_eps))
        else:
            record.update({"train_median": math.nan, "fit_threshold": None, "unfitted": None})
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
