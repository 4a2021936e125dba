"""The whole paper as one run: every figure at its published thresholds, planned to fit a budget.

``factorkit study paper`` runs the eleven figures of Alexander et al. (arXiv:2506.03931) that the
presets transcribe (width and depth; rank 2, uniform prior, completion, unnormalized depth,
momentum), each in its own study folder under ``OUT/``, as one pool of jobs
(:func:`~factorkit.experiments.run.run_studies`): a run two figures share (GD of the
uniform-prior figure is GD of the Gaussian one; G&C of a momentum figure is G&C of the plain one)
is computed once, and GD cells of equal sizes from different figures train as one batch.

G&C uses the ``auto`` sampler (:func:`factorkit.fit.auto.auto_sample`): per (cell, seed), pilots
pick rejection, the marginal sampler or SMC, which runs until an effective sample size of
``target_ess``. GD runs exactly the paper's schedules (1e5 steps at lr 1e-4 for width, 2e4-5e4
for depth, from ``nn.Linear`` starts, float32).

The planner measures before it runs: a pilot of every unfinished G&C cell (one seed) for its
``V(eps)`` and evaluation rate, and a few steps of every GD batch for its step time. It adds
figures in :data:`FIGURES` order while the estimate fits the budget, says which it defers, and
refuses a budget below what planning plus the first figure need, naming that minimum. Everything
is resumable: a rerun skips finished rows, and a later, larger budget adds the deferred figures.
"""

from __future__ import annotations

import copy
import functools
import html
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from factorkit.experiments.config import Cell, StudyConfig
from factorkit.experiments.presets import preset
from factorkit.experiments.store import RESULTS_FILE, ResultStore
from factorkit.models.deep import activation_name

FIGURES = (
    "width",
    "depth",
    "width_rank2",
    "depth_rank2",
    "width_completion",
    "depth_completion",
    "depth_unnormalized",
    "width_uniform",
    "depth_uniform",
    "width_momentum",
    "depth_momentum",
)
# SMC settings of the auto sampler in the paper run: 4 runs of 500 particles to start, more while
# the ESS is below the target (raised while fewer than 8 runs make its estimate noisy, to the
# 8-run risk of stopping short: smc.ess_goal; 8 first runs overshot the target 2-4x on most depth
# cells; 4 first: less time for the same risk, benchmarks/bench_first_runs.py); each level
# keeps a quarter of its particles (p0 = 0.25): on the depth figures' cells 1.3-1.5x the effective
# samples per second of p0 = 0.1, and without most of its upward bias in L_gen at depth (ten pCN
# steps a level leave ten resampled copies too close together; four they spread): depth 9 leaky
# ReLU 0.0325 against 0.0341, converged 0.0315-0.0322 (benchmarks/README.md, "The bias at the
# paper's settings"). Written out though it is now the library's default too (smc.P0): the paper's
# run keys must not move with a default.
PAPER_GC = {"sampler": "auto", "particles": 500, "runs": 4, "p0": 0.25}
# draws of the planner's own pilot per G&C cell (each run's pilot is auto's PILOT_DRAWS)
PLANNING_PILOT_DRAWS = 2**15
GD_PROBE_STEPS = 50


def paper_configs(
    scale: str = "paper",
    figures=None,
    target_ess: int = 200,
    seeds: int | None = None,
    zero: bool = True,
    zero_depth: bool = False,
) -> list[StudyConfig]:
    """The study config of every figure in ``figures`` (default all, in :data:`FIGURES` order).

    ``zero``: width figures with a Gaussian (not normalized) prior also get G&C at ``eps = 0``, the
    interpolating posterior (:mod:`factorkit.fit.marginal_sampler`), beside the published threshold.
    Uniform priors have no such point (no exact reduction); normalized Gaussian priors have one
    at ``eps = 0`` (:mod:`factorkit.fit.normalized`), not run here: 13-210 s a run (median 24
    s), and at width 5 the interpolating posterior exists only at depths 2 and 3 (linear; depth 2
    for tanh and leaky ReLU, deeper unknown), from depth 4 its ``eps -> 0`` limit is ``W = W*``
    (:mod:`factorkit.fit.tail`; a product grid cannot hold an ``eps = 0`` column for two
    depths). The unnormalized depth figure gets none either, for the same reason from depth 4.

    ``zero_depth``: depth figures with a Gaussian output layer (normalized or not) get ``eps = 0``
    too, at the cells where the count shows the interpolating posterior exists (``gc.eps0 =
    'counted'``): depths 2 and 3 (linear) and 2 (tanh, leaky ReLU) at width 5; about 13-210 s a
    run for the normalized prior, so not by default. Their other points carry the count's
    verdict either way (``eps0_limit``; the triangles of the figures)."""
    figures = list(FIGURES if figures is None else figures)
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        raise ValueError(f"figures must be among {', '.join(FIGURES)}; got {', '.join(map(repr, unknown))}")
    if not figures:
        raise ValueError("figures must name at least one figure")
    configs = []
    for name in figures:
        raw = preset(name, scale).to_dict()
        raw["gc"] = {**raw["gc"], **PAPER_GC, "target_ess": int(target_ess)}
        # the output layer integrates out: eps = 0 too, on the width axis (about a second a run; at
        # depth the weights degenerate and tempered SMC takes 20-40 s a run: a study of its own)
        prior, by_depth = raw["gc"]["prior"], len(raw["grid"]["depth"]) > 1
        width_zero = zero and prior == "gaussian" and len(raw["grid"]["width"]) > 1
        depth_zero = zero_depth and prior in ("gaussian", "normalized_gaussian") and by_depth
        if width_zero or depth_zero:
            raw["grid"] = {**raw["grid"], "eps": [raw["gc"]["eps"], 0.0]}
        if depth_zero:  # a depth axis crosses the line where the posterior stops existing
            raw["gc"]["eps0"] = "counted"
        raw["name"] = f"paper-{name}" if scale == "paper" else f"paper-{name}-{scale}"
        if seeds is not None:
            raw["seeds"] = seeds
        configs.append(StudyConfig.from_dict(copy.deepcopy(raw)))
    return configs


def paper_cell(figure: str, method: str = "gc", zero_depth: bool = False, **settings) -> Cell:
    """The cell of ``figure`` (one of :data:`FIGURES`, as :func:`paper_configs` builds it, with
    ``zero_depth``'s ``eps = 0`` points where asked) for ``method`` whose settings hold ``settings``
    (``depth=6, activation='tanh'``), the first in grid order where several do: the benchmarks' way
    to name one point of a figure."""
    (config,) = paper_configs(figures=[figure], zero_depth=zero_depth)
    for cell in config.cells():
        if cell.method == method and all(cell.params.get(k) == v for k, v in settings.items()):
            return cell
    raise ValueError(f"figure {figure!r} has no {method} cell with {settings}")


@dataclass
class Plan:
    """What :func:`plan_paper` measured and decided."""

    figures: list[str]
    deferred: list[str]
    estimates: dict[str, dict]
    """Per figure: expected core-seconds of its new G&C and GD work, and its runs to do."""
    planning_seconds: float
    workers: int
    expected_seconds: float
    minimum_seconds: float
    lines: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return "\n".join(self.lines)


def figure_folder(out: Path, config: StudyConfig) -> Path:
    """The study folder of a figure's config under ``OUT`` (``paper-width`` -> ``OUT/width``)."""
    return Path(out) / config.name.removeprefix("paper-")


def _stored_figures(configs: list[StudyConfig], out: Path):
    """``(figure name, folder, config)`` of every figure that has a results store under ``out``."""
    for config in configs:
        folder = figure_folder(out, config)
        if (folder / RESULTS_FILE).is_file():
            yield folder.name, folder, config


def _finished(folder: Path) -> set[str]:
    if not (folder / RESULTS_FILE).is_file():
        return set()
    with ResultStore(folder) as store:
        return store.finished_keys()


def _gc_cost(params: dict) -> float:
    """Expected core-seconds of one auto-sampler run of a G&C cell, measured on seed 0's problem.

    A timed rejection pilot gives ``V(eps)`` and the rejection cost; where SMC is the cheaper
    choice (:func:`~factorkit.fit.auto.choose_sampler`, as the run will decide), a timed SMC of 4
    runs gives the seconds per run and the ESS per run, hence how many runs the ESS target takes
    (the auto sampler adds what the ESS per run says is missing, up to ``smc.extension_bounds``): deep
    leaky-ReLU cells measured 20x the evaluations of the level count alone.
    """
    import warnings

    from factorkit.experiments.run.jobs import gc_setup
    from factorkit.fit.auto import PILOT_DRAWS, choose_sampler, marginal_cost, normalized_cost
    from factorkit.fit.guess_check import guess_and_check
    from factorkit.fit.marginal import applies
    from factorkit.fit.smc import extension_bounds, projected_runs, subset_simulation

    torch.set_num_threads(1)
    problem, model, prior = gc_setup(params, 0, "cpu")
    target, runs = params["target_ess"], params["runs"]
    smc_settings = {"p0": params["p0"], "mcmc_steps": params["mcmc_steps"]}
    marginal, marginal_pilot_seconds = None, 0.0
    if applies(model, prior) is None:  # the marginal sampler's pilot, timed: this machine's speed
        start = time.perf_counter()
        marginal = marginal_cost(problem, model, prior, params["eps"], target_ess=target, seed=1,
                                 n_particles=params["particles"], runs=runs,
                                 mcmc_steps=params["mcmc_steps"])  # fmt: skip
        marginal_pilot_seconds = time.perf_counter() - start
    if params["eps"] == 0:  # only the marginal sampler runs (the config checked that it applies)
        if marginal is None:  # a normalized prior: its own reduction (factorkit.fit.normalized)
            start = time.perf_counter()
            marginal = normalized_cost(problem, model, prior, target_ess=target, seed=1,
                                       n_particles=params["particles"], runs=runs,
                                       mcmc_steps=params["mcmc_steps"])  # fmt: skip
            marginal_pilot_seconds = time.perf_counter() - start
        return marginal_pilot_seconds + _marginal_seconds(marginal)
    start = time.perf_counter()
    options = {"keep_samples": False, "progress": False, "backend": params["backend"], "seed": 1}
    pilot = guess_and_check(
        problem, model, eps=params["eps"], prior=prior, max_evaluations=PLANNING_PILOT_DRAWS, **options
    )
    rejection_rate = pilot.evaluations / max(time.perf_counter() - start, 1e-9)
    choice = choose_sampler(
        pilot.accepted,
        pilot.evaluations,
        target_ess=target,
        max_evaluations=params["draws"],
        n_particles=params["particles"],
        runs=runs,
        marginal_evaluations=math.nan if marginal is None else marginal.evaluations,
        **smc_settings,
    )
    # every run pays its own pilots first (PILOT_DRAWS prior draws; MARGINAL_PILOT hidden draws)
    pilot_seconds = PILOT_DRAWS / rejection_rate + marginal_pilot_seconds
    if choice.sampler == "rejection":
        return pilot_seconds + choice.rejection_draws / rejection_rate
    if choice.sampler == "marginal":
        return pilot_seconds + _marginal_seconds(marginal)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        trial = subset_simulation(problem, model, eps=params["eps"], prior=prior, runs=4, seed=2,
                                  n_particles=params["particles"], max_evaluations=params["draws"],
                                  keep_samples=False, **smc_settings)  # fmt: skip
    per_run = (time.perf_counter() - start) / 4
    ess_per_run = max(trial.extra["ess"], 1.0) / 4 if trial.reached_target else 0.0
    return pilot_seconds + per_run * projected_runs(ess_per_run, target, runs, extension_bounds(runs)[1])


def _marginal_seconds(cost) -> float:
    """Seconds of a marginal run on this machine: its predicted time on the reference machine
    (:class:`~factorkit.fit.auto.MarginalCost`, never less than a first batch of hidden draws)
    times :func:`machine_factor`.

    Until 2026-12-07 the factor was the pilot's measured time over its predicted one, but the
    pilots do other work than the runs' prices were fitted on (the normalized pilot's 64
    directions a draw took 2.5-3x its predicted time, the Gaussian one's analysis 0.05-0.35x the
    importance draws' price): the normalized ``eps = 0`` rows were planned 2.5-3x too long and the
    Gaussian ones 3-20x too short."""
    from factorkit.fit.auto import MARGINAL_PILOT
    from factorkit.fit.marginal_sampler import FIRST_BATCH

    floor = cost.pilot_microseconds * FIRST_BATCH / MARGINAL_PILOT
    return max(cost.microseconds, floor) * 1e-6 * machine_factor()


PROBE_DRAWS = 500
PROBE_REFERENCE_US = (39.0, 2.7)
"""Microseconds per draw of :func:`probe_us`'s two weights on the reference machine: what the
probe reads on a machine where tempered ``eps = 0`` rows take ``NORMALIZED_MOVE_US`` and
``MARGINAL_MOVE_US`` per evaluation (``python benchmarks/bench_auto_prices.py probe``, two at once
as a study loads both cores, 2026-12-07: 48.6 / 45.7 and 2.66 / 2.80; the normalized figure again
once its weight ran through NumPy's kernels, twenty-second session: 35.3 / 43.4 with
``NORMALIZED_MOVE_US`` at 47)."""


def probe_us(draws: int = PROBE_DRAWS, repeats: int = 5) -> tuple[float, float]:
    """Microseconds per draw, best of ``repeats`` after one untimed pass (the first pass of a
    process runs up to 1.5x slower), of the two weights the marginal samplers'
    tempered runs spend their time on: the normalized prior's exact direction integral
    (:meth:`~factorkit.fit.normalized.Directions.exact_log_weight`, the depth figure's depth-2
    linear cell) and the Gaussian reduction's ``eps = 0`` analysis
    (:meth:`~factorkit.fit.marginal.OutputLayerIntegral.analyse`, ``width_rank2``'s width-5 linear
    cell), each on ``draws`` seeded prior draws of the hidden layers (seed 0's problems)."""
    import dataclasses

    from factorkit.experiments.run.jobs import gc_setup
    from factorkit.fit.hidden import HiddenLayers
    from factorkit.fit.marginal import OutputLayerIntegral
    from factorkit.fit.normalized import Directions, NormalizedInterpolation

    problem, model, prior = gc_setup(paper_cell("depth", zero_depth=True, eps=0, depth=2,
                                                activation="linear").params, 0, "cpu")  # fmt: skip
    hidden = HiddenLayers(model, dataclasses.replace(prior, normalize=False))
    directions = Directions(NormalizedInterpolation(problem.to(dtype=torch.float64), model, prior))
    normalized = hidden.gram(hidden.draw(draws, torch.Generator().manual_seed(0)), draws)
    problem, model, prior = gc_setup(paper_cell("width_rank2", zero_depth=True, eps=0, width=5,
                                                activation="linear").params, 0, "cpu")  # fmt: skip
    hidden = HiddenLayers(model, prior)
    integral = OutputLayerIntegral(problem.to(dtype=torch.float64), model, prior, 0.0)
    gaussian = hidden.gram(hidden.draw(draws, torch.Generator().manual_seed(0)), draws)
    best = [math.inf, math.inf]
    for rep in range(repeats + 1):
        for index, work in enumerate((lambda: directions.exact_log_weight(normalized),
                                      lambda: integral.analyse(gaussian))):  # fmt: skip
            start = time.perf_counter()
            work()
            if rep:  # the first pass warms up
                best[index] = min(best[index], time.perf_counter() - start)
    return best[0] / draws * 1e6, best[1] / draws * 1e6


@functools.cache
def machine_factor() -> float:
    """This machine's time for the marginal samplers' work over the reference machine's (the
    geometric mean of :func:`probe_us`'s two ratios to :data:`PROBE_REFERENCE_US`), measured once
    per process."""
    ratios = [m / r for m, r in zip(probe_us(), PROBE_REFERENCE_US, strict=True)]
    return math.sqrt(ratios[0] * ratios[1])


def _gc_costs(params_list: list[dict], workers: int) -> list[float]:
    """:func:`_gc_cost` of every cell, spread over ``workers`` processes."""
    from factorkit.experiments.run.executors import process_pool

    if workers == 1 or len(params_list) <= 1:
        return [_gc_cost(params) for params in params_list]
    with process_pool(workers) as pool:
        return list(pool.map(_gc_cost, params_list, chunksize=4))


def _gd_cost(job, cache: dict) -> float:
    """Expected core-seconds of a GD job (a batch), from a few timed steps of the batch itself
    (:func:`~factorkit.experiments.run.jobs.gd_batch`: its members, widths, activations, momenta)."""
    from factorkit.experiments.run.jobs import gd_batch
    from factorkit.fit.gd import train_gd

    members, arguments = gd_batch(job, "cpu")
    params = job.cell.params
    model = arguments["model"]
    key = (len(members), model.width, model.depth, getattr(model, "depths", None), params["optimizer"],
           params["dtype"], params["n"], activation_name(model.activation),
           str(arguments["optimizer_options"]))  # fmt: skip
    if key not in cache:
        problem, model = arguments.pop("problem"), arguments.pop("model")
        timings = []  # the first call pays one-off costs (imports, thread pools): not timed
        for steps in (2, 2, 2 + GD_PROBE_STEPS):
            start = time.perf_counter()
            train_gd(problem, model, **{**arguments, "max_steps": steps, "eps_train": None})
            timings.append(time.perf_counter() - start)
        cache[key] = max(timings[2] - timings[1], 1e-6) / GD_PROBE_STEPS
    return cache[key] * params["steps"]  # every member of a batch runs the same steps


def plan_paper(
    configs: list[StudyConfig], out: Path, budget_minutes: float | None, workers: int | None = None
) -> Plan:
    """Measure the unfinished work of every figure and choose the figures that fit the budget."""
    from factorkit.experiments.run.plan import gd_jobs

    torch.set_num_threads(1)
    start = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    counted: set[str] = set()  # run keys already costed (by an earlier figure, or finished)
    gd_cache: dict = {}
    estimates = {}
    owner = {}  # GD run key -> the first figure that needs it
    gd_cells = []
    gc_runs = []  # (figure, cell, unfinished seeds)
    for config in configs:
        finished = _finished(figure_folder(out, config))
        estimates[config.name] = {"runs": 0, "gc": 0.0, "gd": 0.0, "longest": 0.0}
        for cell in config.cells():
            seeds = tuple(
                s for s in config.seeds if cell.key(s) not in finished and cell.key(s) not in counted
            )
            counted |= {cell.key(s) for s in seeds}
            estimates[config.name]["runs"] += len(seeds)
            if not seeds:
                continue
            if cell.method == "gc":
                gc_runs.append((config.name, cell, len(seeds)))
            else:
                gd_cells.append((cell, seeds))
                owner.update({cell.key(s): config.name for s in seeds})
    cells = list(dict.fromkeys(cell for _, cell, _ in gc_runs))
    per_run = dict(zip(cells, _gc_costs([cell.params for cell in cells], workers), strict=True))
    for figure, cell, seeds in gc_runs:
        estimates[figure]["gc"] += per_run[cell] * seeds
    # GD batches as the runner forms them, across figures; each batch's time is shared by its rows
    for job in gd_jobs(gd_cells):
        seconds = _gd_cost(job, gd_cache)
        for cell, seeds in ((job.cell, job.seeds), *job.others):
            for seed in seeds:
                figure = estimates[owner[cell.key(seed)]]
                figure["gd"] += seconds / job.runs
                figure["longest"] = max(figure["longest"], seconds)
    planning = time.perf_counter() - start
    # a figure's wall time on `workers` cores: its work spread evenly, but never less than its
    # longest GD batch (one process trains it)
    chosen, deferred, expected = [], [], planning
    minimum = planning
    for index, config in enumerate(configs):
        e = estimates[config.name]
        seconds = max((e["gc"] + e["gd"]) / workers, e["longest"])
        if index == 0:
            minimum = planning + seconds
        if budget_minutes is None or expected + seconds <= budget_minutes * 60:
            chosen.append(config.name)
            expected += seconds
        elif index == 0:
            break  # the first figure does not fit: the caller refuses, naming the minimum
        else:
            deferred.append(config.name)
    plan = Plan(chosen, deferred, estimates, planning, workers, expected, minimum)
    lines = [f"planned in {planning:.0f} s on {workers} worker(s): a rejection pilot, a timed marginal "
             "pilot where the output layer integrates out (and where SMC wins, a 4-run SMC) of every "
             "unfinished G&C cell, timed steps of every GD batch, marginal runs at this machine's "
             "speed by a probe"]  # fmt: skip
    for config in configs:
        e = estimates[config.name]
        state = "run" if config.name in chosen else "deferred"
        lines.append(
            f"  {config.name:<30} {state:<8} {e['runs']:>4} runs to do: G&C ~{e['gc'] / 60:5.1f} core-min, "
            f"GD ~{e['gd'] / 60:5.1f} core-min"
        )
    lines.append(f"expected wall time ~{expected / 60:.1f} min" + (
        f" of a {budget_minutes:g}-minute budget" if budget_minutes is not None else ""))  # fmt: skip
    if deferred:
        lines.append(f"deferred (a rerun with a larger --budget adds them): {', '.join(deferred)}")
    plan.lines = lines
    return plan


def timing_table(configs: list[StudyConfig], out: Path) -> list[dict]:
    """Per figure: runs, samplers used, ESS per (cell, seed), and where the time went (core-s)."""
    from factorkit.experiments.summary import study_rows

    table = []
    for figure, folder, config in _stored_figures(configs, out):
        rows = study_rows(folder)
        gc = [r for r in rows if r["method"] == "gc"]
        gd = [r for r in rows if r["method"] == "gd"]
        ess = np.array([r["ess"] or 0.0 for r in gc]) if gc else np.zeros(0)
        table.append(
            {
                "figure": figure,
                "eps": sorted({r["eps"] for r in gc}),
                "gc_runs": len(gc),
                "rejection": sum(r["sampler"] == "rejection" for r in gc),
                "smc": sum(r["sampler"] == "smc" for r in gc),
                "marginal": sum(r["sampler"] == "marginal" for r in gc),
                "ess_min": float(ess.min()) if ess.size else math.nan,
                "ess_median": float(np.median(ess)) if ess.size else math.nan,
                "below_target": int((ess < config.gc["target_ess"]).sum()),
                "gc_core_s": float(sum(r["wall_time"] or 0 for r in gc)),
                "gd_runs": len(gd),
                "gd_core_s": float(sum(r["wall_time"] or 0 for r in gd)),
                "evaluations": int(sum(r["evaluations"] or 0 for r in gc)),
            }
        )
    return table


def trend_summary(configs: list[StudyConfig], out: Path) -> list[dict]:
    """Each figure's paired trend tests (Page's L over seeds) for G&C and GD, per activation."""
    from factorkit.experiments.summary import study_metric, study_rows, trend_tests

    summary = []
    for figure, folder, _ in _stored_figures(configs, out):
        summary += [
            {"figure": figure, **test} for test in trend_tests(study_rows(folder), study_metric(folder))
        ]
    return summary


def write_index(configs: list[StudyConfig], out: Path, plan: Plan | None, wall_seconds: float | None) -> Path:
    """``OUT/index.html`` (links to each figure's report, the timing and trend tables) and
    ``OUT/timing.json``."""
    table = timing_table(configs, out)
    trends = trend_summary(configs, out)
    (out / "timing.json").write_text(
        json.dumps({"figures": table, "wall_seconds": wall_seconds, "trends": trends}, indent=1, default=str)
    )

    def fmt(value) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}"
        return html.escape(str(value))

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>factorkit: the paper</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>",
        "<h1>Alexander et al. (arXiv:2506.03931), every figure</h1>",
    ]
    if wall_seconds is not None:
        parts.append(f"<p>Last run: {wall_seconds / 60:.1f} min wall clock.</p>")
    if plan is not None:
        parts.append("<h2>Plan</h2><pre>" + html.escape(plan.describe()) + "</pre>")
    parts.append("<h2>Figures</h2><ul>")
    for row in table:
        parts.append(f"<li><a href='{row['figure']}/report.html'>{html.escape(row['figure'])}</a></li>")
    parts.append("</ul><h2>Where the time goes</h2><table id='timing'><tr>")
    columns = list(table[0]) if table else []
    parts += [f"<th>{html.escape(c)}</th>" for c in columns]
    parts.append("</tr>")
    for row in table:
        parts.append("<tr>" + "".join(f"<td>{fmt(row[c])}</td>" for c in columns) + "</tr>")
    parts.append("</table><h2>Trend tests</h2><table id='trends'><tr>")
    trend_columns = ("figure", "method", "activation", "axis", "direction", "page_p", "paired_seeds", "rho")
    parts += [f"<th>{c}</th>" for c in trend_columns]
    parts.append("</tr>")
    for test in trends:
        parts.append("<tr>" + "".join(f"<td>{fmt(test.get(c))}</td>" for c in trend_columns) + "</tr>")
    parts.append("</table></body></html>")
    path = out / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
