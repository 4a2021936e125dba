"""`factorkit study paper`: the figures' configs, shared runs computed once, planning, resuming."""

import json
import math
from dataclasses import replace

import pytest
import torch

from factorkit.cli import main
from factorkit.experiments.config import StudyConfig
from factorkit.experiments.paper import FIGURES, paper_cell, paper_configs
from factorkit.experiments.presets import preset
from factorkit.experiments.run import Job, run_job, run_studies
from factorkit.experiments.run.plan import gd_jobs as _gd_jobs
from factorkit.experiments.store import load_rows


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_every_figure_at_its_published_threshold_with_the_auto_sampler():
    configs = paper_configs()
    assert [c.name for c in configs] == [f"paper-{f}" for f in FIGURES] and len(configs) == 11
    for config, figure in zip(configs, FIGURES, strict=True):
        published = preset(figure, "paper")
        assert config.gc["sampler"] == "auto" and config.gc["target_ess"] == 200
        assert config.gc["eps"] == published.gc["eps"] and config.gd == published.gd
        widths = len(published.grid["width"]) > 1
        zero = {"eps": [published.gc["eps"], 0.0]} if published.gc["prior"] == "gaussian" and widths else {}
        assert config.grid == {**published.grid, **zero} and config.seeds == published.seeds
        assert paper_configs(figures=[figure], zero=False)[0].grid == published.grid
    eps = {c.name: c.gc["eps"] for c in configs}
    assert eps["paper-width"] == 0.02 and eps["paper-depth"] == 0.0035 and eps["paper-depth_rank2"] == 0.01
    with pytest.raises(ValueError, match="figures must be among"):
        paper_configs(figures=["width", "wdith"])


def test_depth_figures_get_eps_zero_where_the_interpolating_posterior_exists():
    # zero_depth: the count of factorkit.fit.tail decides (width 5, normalized: 20/11, 12/11, 10/11
    # at depths 2-4; tanh / leaky ReLU counted at depth 2 only); rank 2 (alpha 1 at depth 2),
    # completion (not counted) and the uniform prior (no reduction) get none
    zero = {}
    for config in paper_configs(zero_depth=True):
        if len(config.grid["depth"]) > 1:
            cells = [c.params for c in config.cells() if c.method == "gc" and c.params["eps"] == 0]
            zero[config.name] = sorted((p["depth"], p["activation"]) for p in cells)
    expected = [(2, "leaky_relu"), (2, "linear"), (2, "tanh"), (3, "linear")]
    assert zero["paper-depth"] == zero["paper-depth_unnormalized"] == zero["paper-depth_momentum"] == expected
    assert zero["paper-depth_rank2"] == zero["paper-depth_completion"] == zero["paper-depth_uniform"] == []
    # not by default; the width figures' eps = 0 points are the same either way
    assert all(c.gc["eps0"] == "all" and 0.0 not in c.grid.get("eps", []) for c in paper_configs(
        figures=["depth", "depth_unnormalized"]))  # fmt: skip


def tiny(name: str, **gc) -> StudyConfig:
    raw = preset(name, "smoke").to_dict()
    raw["seeds"] = 2
    raw["grid"] = {**raw["grid"], "width": [5, 10]} if "width" in name else {**raw["grid"], "depth": [2, 3]}
    raw["gc"] = {**raw["gc"], "draws": 20_000, **gc}
    raw["gd"] = {**raw["gd"], "steps": 200}
    return StudyConfig.from_dict(raw)


def test_shared_runs_are_computed_once_and_copied_to_later_folders(tmp_path):
    width, momentum = tiny("width"), tiny("width_momentum")
    (counts,) = run_studies([(width, tmp_path / "w")], workers=1, progress=False)
    assert counts["written"] == 8
    first = {r["key"]: r for r in load_rows(tmp_path / "w")}
    counts = run_studies([(width, tmp_path / "w"), (momentum, tmp_path / "m")], workers=1, progress=False)
    # momentum's G&C runs are width's (same cell, same key): copied, not recomputed; its GD is new
    assert counts[0]["skipped"] == 8 and counts[0]["written"] == 0
    assert counts[1]["reused"] == 4 and counts[1]["written"] == 4
    rows = load_rows(tmp_path / "m")
    for row in rows:
        if row["method"] == "gc":
            assert row["gen_loss"] == first[row["key"]]["gen_loss"] and row["study"] == momentum.name
    # computed once for two folders in one call
    counts = run_studies([(width, tmp_path / "w2"), (momentum, tmp_path / "m2")], workers=1, progress=False)
    assert counts[0]["shared"] == 4 and counts[1]["shared"] == 4
    with pytest.raises(ValueError, match="its own folder"):
        run_studies([(width, tmp_path / "x"), (momentum, tmp_path / "x")], workers=1)


def test_gd_batch_across_problems_equals_each_cell_alone():
    config = replace(tiny("width"), grid={**tiny("width").grid, "method": ["gd"],
                                          "measurements": ["gaussian", "completion"]})  # fmt: skip
    cells = [(cell, config.seeds) for cell in config.cells()]
    (job,) = _gd_jobs(cells)
    assert job.runs == 8  # 2 widths x 2 kinds of measurement x 2 seeds, one batch
    together = {r["key"]: r for r in run_job(job, "t")}
    for cell, seeds in cells:
        for row in run_job(Job(cell, seeds), "t"):
            assert together[row["key"]]["gen_loss"] == pytest.approx(row["gen_loss"], rel=1e-9, abs=1e-14)


def test_cli_runs_plans_resumes_and_refuses_a_budget_below_its_minimum(capsys, tmp_path):
    torch.set_num_threads(1)
    argv = ["study", "paper", "--scale", "smoke", "--figures", "width,width_uniform", "--seeds", "2",
            "--ess", "50", "--workers", "1", "--out", str(tmp_path), "--no-plot"]  # fmt: skip
    code, out, err = run(capsys, *argv, "--budget", "10")
    assert code == 0, err
    assert "expected wall time" in out and "planned in" in out
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert [f["figure"] for f in timing["figures"]] == ["width-smoke", "width_uniform-smoke"]
    for figure in timing["figures"]:  # the Gaussian prior's figure has eps = 0 points too
        runs = 12 if figure["figure"] == "width-smoke" else 6
        assert figure["gc_runs"] == runs and figure["rejection"] + figure["smc"] + figure["marginal"] == runs
    rows = load_rows(tmp_path / "width-smoke")
    pilots = [json.loads(r["pilot"]) for r in rows if r["method"] == "gc"]
    assert all(p["draws"] > 0 for p in pilots if p["reason"].startswith("rejection"))
    assert sum(r["eps"] == 0 and r["sampler"] == "marginal" for r in rows) == 6
    assert (tmp_path / "index.html").read_text().count("report.html") == 2
    code, out, _ = run(capsys, *argv, "--budget", "10")
    assert code == 0 and "18 already done" in out and "0 runs written" in out
    code, out, err = run(capsys, *argv[:-1], "--out", str(tmp_path / "new"), "--budget", "0.0001")
    assert code == 2 and "too small" in err and "need about" in err


def test_cli_without_a_budget_runs_every_figure_unplanned(capsys, tmp_path):
    torch.set_num_threads(1)
    argv = ["study", "paper", "--scale", "smoke", "--figures", "width_uniform", "--seeds", "1",
            "--ess", "20", "--workers", "1", "--out", str(tmp_path), "--no-plot"]  # fmt: skip
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "no --budget: every figure runs, unplanned" in out and "planned in" not in out
    assert len(load_rows(tmp_path / "width_uniform-smoke")) == 6 and "wall time" in out


def test_paper_options_are_refused_for_other_studies(capsys):
    code, _, err = run(capsys, "study", "width", "--budget", "5", "--no-plot")
    assert code == 2 and "--budget applies to 'factorkit study paper' only" in err
    code, _, err = run(capsys, "study", "width", "--zero-depth", "--no-plot")
    assert code == 2 and "--zero-depth applies to 'factorkit study paper' only" in err


def test_paper_cell_names_one_point_of_a_figure():
    from factorkit.experiments.paper import paper_cell

    cell = paper_cell("depth", depth=6, activation="tanh")
    assert (cell.method, cell.params["depth"], cell.params["activation"]) == ("gc", 6, "tanh")
    assert cell.params["eps"] == 0.0035 and cell.params["sampler"] == "auto"  # as the paper run has it
    assert paper_cell("depth", "gd", depth=6, activation="tanh").method == "gd"
    assert paper_cell("width", width=5, activation="tanh", eps=0).params["eps"] == 0
    with pytest.raises(ValueError, match="figure 'depth' has no gc cell with"):
        paper_cell("depth", depth=11)


def test_the_planner_scales_marginal_prices_by_the_machine_probe(monkeypatch):
    """A marginal run's planned seconds are its reference-machine price times the machine factor
    (the geometric mean of the probe's two ratios to its reference figures), not the pilot's
    measured over predicted time: the pilots do other work than the runs were priced on, which
    planned the normalized ``eps = 0`` rows 2.5-3x too long and the Gaussian ones 3-20x too
    short (``--zero-depth --plan-only``: 76 min planned for a 22-31 min run)."""
    from factorkit.experiments import paper
    from factorkit.fit.auto import MARGINAL_PILOT, MarginalCost
    from factorkit.fit.marginal_sampler import FIRST_BATCH

    reference = paper.PROBE_REFERENCE_US
    monkeypatch.setattr(paper, "probe_us", lambda: (2 * reference[0], 8 * reference[1]))
    paper.machine_factor.cache_clear()  # measured once per process: this test's probe, then none
    try:
        assert paper.machine_factor() == pytest.approx(4.0)  # sqrt(2 * 8)
        cost = MarginalCost("tempered", 6e5, 3.6e6, 0.0, 1e4)
        assert paper._marginal_seconds(cost) == pytest.approx(4 * 3.6)
        # never less than a first batch of hidden draws at the pilot's price per draw
        small = MarginalCost("importance", 10.0, 1.0, 0.0, 1e4)
        assert paper._marginal_seconds(small) == pytest.approx(4 * 1e4 * FIRST_BATCH / MARGINAL_PILOT * 1e-6)
    finally:
        paper.machine_factor.cache_clear()


def test_the_machine_probe_times_both_weights():
    """:func:`probe_us` times the normalized and the Gaussian ``eps = 0`` weights: two positive
    figures per draw, the normalized integral the dearer by far (a contour per draw against a
    Cholesky factor; 39 and 2.7 us on the reference machine)."""
    from factorkit.experiments.paper import probe_us

    normalized, gaussian = probe_us(draws=64, repeats=1)
    assert 0 < gaussian < normalized < math.inf


def test_the_planner_prices_the_normalized_eps_zero_cells():
    """``--zero-depth --plan-only`` priced the depth figure's ``eps = 0`` cells through the Gaussian
    reduction's pilot, which does not apply to a normalized prior, and crashed (AttributeError on
    None). Now ``normalized_cost`` prices them: the paper's depth-2 linear cell is tempered SMC
    (its ``method='auto'`` run hands over, as seed 0 does), at the effort-checked draws."""
    from factorkit.experiments.paper import _gc_cost
    from factorkit.experiments.run.jobs import gc_setup
    from factorkit.fit.auto import normalized_cost, tempered_draws

    cell = paper_cell("depth", zero_depth=True, eps=0, depth=2, activation="linear")
    seconds = _gc_cost(cell.params)
    assert math.isfinite(seconds) and seconds > 0
    problem, model, prior = gc_setup(cell.params, 0, "cpu")
    settings = {"target_ess": 200, "n_particles": 500, "runs": 4, "mcmc_steps": 10, "seed": 1}
    cost = normalized_cost(problem, model, prior, **settings)
    assert cost.method == "tempered"
    assert any(cost.draws == tempered_draws(500, 4, 10, True, t) for t in range(2, 12))
