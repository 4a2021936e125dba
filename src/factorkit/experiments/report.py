"""The tables (``summary.csv``, ``summary.md``) and the self-contained ``report.html`` of a study
folder: the aggregates and trend tests of :mod:`factorkit.experiments.summary`, the figures of
:mod:`factorkit.experiments.plots`."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from factorkit.experiments.plots import plot_study, plot_volumes
from factorkit.experiments.summary import aggregate, study_metric, study_rows, trend_tests


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _present(value) -> bool:
    """A value worth a column: not None, zero or NaN."""
    return value is not None and value != 0 and not (isinstance(value, float) and math.isnan(value))


def _varying(records: list[dict], among_gd: tuple[str, ...] = ("eps_train",)) -> list[str]:
    """The settings besides method, activation, prior and eps that tell curves apart in this study;
    those in ``among_gd`` count only where GD records differ (G&C records carry None)."""
    return [
        k
        for k in ("loss", "optimizer", "eps_train", "width", "depth")
        if len({r.get(k) for r in records if k not in among_gd or r["method"] == "gd"}) > 1
    ]


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
    varying = _varying(records)
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
        k
        for k in (
            "ess_min",
            "samplers",
            "unmixed",
            "eps0_limit",
            "unfitted",
            "train_median",
            "rank1_energy",
            "rip_delta",
        )  # fmt: skip
        if any(_present(r.get(k)) for r in records)
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
        "| method | activation | prior | eps | loss | optimizer | "
        + ("eps_train | " if "eps_train" in varying else "")
        + "width | depth | axis | pooled rho "
        "| pooled p | points | paired seeds | Page p | direction | seed rho mean | Wilcoxon p |",
        "|" + "---|" * (17 + ("eps_train" in varying)),
    ]
    lines += [
        f"| {t['method']} | {t['activation']} | {_fmt(t['prior'])} | {_fmt(t['eps'])} | {_fmt(t['loss'])} | "
        f"{_fmt(t['optimizer'])} | "
        + (f"{_fmt(t['eps_train'])} | " if "eps_train" in varying else "")
        + f"{_fmt(t.get('width'))} | {_fmt(t.get('depth'))} | {t['axis']} | "
        f"{t['rho']:.3f} | {t['p_value']:.2e} | {t['points']} | {t['paired_seeds']} | {_fmt(t['page_p'])} | "
        f"{_fmt(t['direction'])} | {_fmt(t['seed_rho_mean'])} | {_fmt(t['wilcoxon_p'])} |"
        for t in trend_tests(rows, metric)
    ]
    md_path = directory / "summary.md"
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


REPORT_FILE = "report.html"
COMMAND_FILE = "command.txt"
REPORT_COLUMNS = (
    "method", "activation", "prior", "eps", "x", "seeds", "valid_seeds", "median", "q25", "q75", "mean",
    "ci_low", "ci_high", "cc_seeds", "cc_median", "accepted_total", "ess_total", "ess_min", "samplers",
    "unmixed", "eps0_limit", "seconds", "prior_gen_loss", "nuclear", "unfitted", "train_median",
    "fit_threshold", "rank1_energy", "rip_delta",
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
        "tr.invalid{background:#fde2e2}tr.unfitted{background:#e2ecfd}img{max-width:100%}pre{background:#f6f6f6;padding:1em}</style>",
        "</head><body>",
        f"<h1>{html.escape(directory.name)}</h1>",
        f"<p>{len(rows)} runs, metric <code>{html.escape(metric)}</code>, axis "
        f"<code>{html.escape(str(records[0]['axis']))}</code>. Rows marked red lost seeds to too few "
        "acceptances (kept in the store, left out of the aggregates); rows marked blue are GD points whose "
        "median training loss stayed above the fit threshold (not fitted: drawn hollow in the figures).</p>",
        "<h2>Figures</h2>",
    ]
    for path in figures:
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"<figure><img alt='{html.escape(path.name)}' src='data:image/png;base64,{data}'>")
        parts.append(f"<figcaption>{html.escape(path.name)}</figcaption></figure>")
    parts.append("<h2>Points</h2><table id='points'><tr>")
    # the settings that tell curves apart (GD's loss, optimizer, training threshold) after the eps
    extra = [
        k
        for k in _varying(records, among_gd=("loss", "optimizer", "eps_train"))
        if k not in ("width", "depth")
    ]
    columns = (*REPORT_COLUMNS[:4], *extra, *REPORT_COLUMNS[4:])
    parts += [f"<th>{html.escape(c)}</th>" for c in columns]
    parts.append("</tr>")
    for record in records:
        flag = " class='invalid'" if record["valid_seeds"] < record["seeds"] else ""
        if record.get("unfitted") and 2 * record["unfitted"] > record["valid_seeds"]:
            flag = " class='unfitted'"
        parts.append(f"<tr{flag}>" + "".join(f"<td>{cell(record.get(c))}</td>" for c in columns) + "</tr>")
    parts.append("</table><h2>Trend tests</h2><table id='trends'><tr>")
    trend_columns = ("method", "activation", *extra, "axis", "rho", "p_value", "points", "paired_seeds",
                     "page_p", "direction", "seed_rho_mean", "wilcoxon_p")  # fmt: skip
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
