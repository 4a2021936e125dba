import json
import sqlite3

import numpy as np
import pytest
import torch

from factorkit.experiments import StudyConfig, load_rows, preset, run_study
from factorkit.experiments.plots import plot_study
from factorkit.experiments.presets import NO_BEYOND
from factorkit.experiments.report import write_tables
from factorkit.experiments.summary import aggregate, study_rows, trend_tests

TINY = {
    "name": "tiny",
    "seeds": 2,
    "problem": {"m": 4, "m2": 4, "n": 8},
    "grid": {"width": [4, 16], "depth": [2], "method": ["gd", "gc"]},
    "gc": {"eps": 0.15, "draws": 20_000},
    "gd": {"lr": 1e-2, "steps": 300},
}


def test_run_writes_rows_with_provenance_and_resumes(tmp_path):
    config = StudyConfig.from_dict(TINY)
    counts = run_study(config, tmp_path, workers=1, progress=False)
    assert counts == {
        "runs_total": 8,
        "skipped": 0,
        "written": 8,
        "shards_run": 0,
        "shards_skipped": 0,
        "reused": 0,
        "shared": 0,
    }
    rows = load_rows(tmp_path)
    assert len(rows) == 8
    gc = [r for r in rows if r["method"] == "gc"]
    assert all(r["accepted"] > 10 and r["evaluations"] == 20_000 for r in gc)
    assert all(json.loads(r["versions"])["torch"] for r in rows)
    assert json.loads(gc[0]["settings"])["eps"] == 0.15
    again = run_study(config, tmp_path, workers=1, progress=False)
    assert again["written"] == 0 and again["skipped"] == 8


def test_partial_study_resumes_only_missing_runs(tmp_path):
    run_study(StudyConfig.from_dict({**TINY, "seeds": [0]}), tmp_path, workers=1, progress=False)
    before = {r["key"]: r["finished_at"] for r in load_rows(tmp_path)}
    counts = run_study(StudyConfig.from_dict(TINY), tmp_path, workers=1, progress=False)
    assert counts["written"] == 4 and counts["skipped"] == 4
    after = {r["key"]: r["finished_at"] for r in load_rows(tmp_path)}
    assert all(after[key] == value for key, value in before.items())  # finished rows untouched


def test_rows_are_committed_as_each_run_finishes(tmp_path, monkeypatch):
    from factorkit.experiments.run import jobs as runner

    calls = {"n": 0}
    original = runner.run_job

    def failing(job, study, device="cpu"):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(job, study, device)

    monkeypatch.setattr(runner, "run_job", failing)
    with pytest.raises(KeyboardInterrupt):
        run_study(StudyConfig.from_dict(TINY), tmp_path, workers=1, progress=False)
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] >= 2


def test_process_pool_gives_the_same_rows(tmp_path):
    config = StudyConfig.from_dict({**TINY, "grid": {**TINY["grid"], "method": ["gc"]}})
    run_study(config, tmp_path / "serial", workers=1, progress=False)
    run_study(config, tmp_path / "pool", workers=2, progress=False)
    serial = {r["key"]: r["gen_loss"] for r in load_rows(tmp_path / "serial")}
    pooled = {r["key"]: r["gen_loss"] for r in load_rows(tmp_path / "pool")}
    assert serial == pooled


def test_aggregate_median_iqr_and_flags():
    rows = []
    for seed, value in enumerate([1.0, 2.0, 3.0, 10.0]):
        rows.append(
            {
                "method": "gc",
                "activation": "linear",
                "prior": "gaussian",
                "eps": 0.1,
                "rank": 1,
                "n": 15,
                "measurements": "gaussian",
                "width": 5,
                "depth": 2,
                "seed": seed,
                "status": "ok",
                "gen_loss": value,
                "prior_gen_loss": 0.25,
                "nuclear_gen_loss": 0.0,
                "accepted": 100,
            }
        )
    rows.append({**rows[0], "seed": 9, "status": "few_accepted", "gen_loss": 99.0, "accepted": 1})
    (record,) = aggregate(rows)
    assert record["seeds"] == 5 and record["valid_seeds"] == 4
    assert record["median"] == 2.5
    assert (record["q25"], record["q75"]) == (
        np.percentile([1, 2, 3, 10], 25),
        np.percentile([1, 2, 3, 10], 75),
    )
    assert record["mean"] == 4.0
    assert record["accepted_total"] == 401


def test_config_validation_names_the_key():
    with pytest.raises(ValueError, match="unknown key\\(s\\) 'widths' in \\[grid\\]"):
        StudyConfig.from_dict({"grid": {"widths": [5], "depth": [2]}})
    with pytest.raises(ValueError, match="unknown key\\(s\\) 'epsilon' in \\[gc\\]"):
        StudyConfig.from_dict({"grid": {"width": [5], "depth": [2]}, "gc": {"epsilon": 0.1}})
    with pytest.raises(ValueError, match="grid.activation must be one of"):
        StudyConfig.from_dict({"grid": {"width": [5], "depth": [2], "activation": ["gelu"]}})
    with pytest.raises(ValueError, match="gc.eps must be >= 0"):
        StudyConfig.from_dict({"grid": {"width": [5], "depth": [2]}, "gc": {"eps": -0.1}})
    with pytest.raises(ValueError, match="gc.eps = 0 .* needs gc.sampler 'marginal' or 'auto'"):
        StudyConfig.from_dict({"grid": {"width": [5], "depth": [2]}, "gc": {"eps": 0}})
    StudyConfig.from_dict({"grid": {"width": [5], "depth": [2]}, "gc": {"eps": 0, "sampler": "marginal"}})
    with pytest.raises(ValueError, match="problem.rank must be <= min"):
        StudyConfig.from_dict({"grid": {"width": [5], "depth": [2]}, "problem": {"rank": 7}})
    with pytest.raises(ValueError, match="gd.init_scale has no entry for depth 3"):
        StudyConfig.from_dict({"grid": {"width": [5], "depth": [3]}, "gd": {"init_scale": {"2": 0.1}}})
    with pytest.raises(ValueError, match="must list 'width'"):
        StudyConfig.from_dict({"grid": {"depth": [2]}})


def test_toml_config_and_cell_dedup(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'seeds = [0, 1]\n[grid]\nwidth = [5]\ndepth = [2]\neps = [0.1, 0.2]\n[gd.init_scale]\n"2" = 0.01\n'
    )
    config = StudyConfig.from_toml(path)
    assert config.name == "mine"
    cells = config.cells()
    # two G&C cells (one per eps) but a single GD cell: eps does not apply to GD
    assert sorted(c.method for c in cells) == ["gc", "gc", "gd"]
    assert next(c for c in cells if c.method == "gd").params["init_scale"] == 0.01


def test_presets_build_at_every_scale():
    from factorkit.experiments import PRESETS, SCALES

    for name in PRESETS:
        for scale in SCALES:
            if scale == "beyond" and name in NO_BEYOND:
                with pytest.raises(ValueError, match="no 'beyond' scale"):
                    preset(name, scale)
                continue
            assert preset(name, scale).cells()
    assert preset("depth", "beyond").gc["sampler"] == "smc"
    paper = preset("width", "paper")
    assert paper.grid["width"] == [5, 10, 20, 40, 80, 160] and paper.gc["eps"] == 0.02
    assert paper.gc["draws"] == 10**8 and len(paper.seeds) == 8
    assert preset("depth", "paper").gc["prior"] == "normalized_gaussian"
    with pytest.raises(ValueError, match="scale must be one of"):
        preset("width", "huge")


@pytest.fixture(scope="module")
def smoke_width(tmp_path_factory):
    out = tmp_path_factory.mktemp("width")
    run_study(preset("width", "smoke"), out, workers=2, progress=False)
    return out


def test_smoke_width_trend_tables_and_plots(smoke_width):
    rows = load_rows(smoke_width)
    (gc_test,) = [t for t in trend_tests(rows) if t["method"] == "gc"]
    assert gc_test["rho"] > 0 and gc_test["p_value"] < 0.05
    assert gc_test["direction"] == "increasing" and gc_test["paired_seeds"] == 4
    records = aggregate(rows)
    for width in (5, 20, 80):
        gc = next(r for r in records if r["method"] == "gc" and r["x"] == width)
        gd = next(r for r in records if r["method"] == "gd" and r["x"] == width)
        assert gd["median"] < gc["median"] < gc["prior_gen_loss"]
    csv_path, md_path = write_tables(smoke_width)
    assert "Trend tests" in md_path.read_text()
    for path in plot_study(smoke_width):
        assert path.stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("name", ["width", "depth"])
def test_default_presets_reproduce_paper_trends(name, tmp_path):
    run_study(preset(name), tmp_path, progress=False)
    rows = load_rows(tmp_path)
    tests = {(t["method"], t["activation"]): t for t in trend_tests(rows)}
    for (method, _activation), test in tests.items():
        if method != "gc":
            continue
        # the paired test: the same problems at every x (Page's L over the seeds valid everywhere)
        assert test["direction"] == ("increasing" if name == "width" else "decreasing")
        assert test["page_p"] < 0.05 and test["paired_seeds"] >= 6
    if name == "width":
        records = aggregate(rows)
        for gd in (r for r in records if r["method"] == "gd"):
            gc = next(
                r
                for r in records
                if r["method"] == "gc" and r["x"] == gd["x"] and r["activation"] == gd["activation"]
            )
            assert gd["mean"] < gc["mean"]


def test_smc_study_rows_carry_volumes_and_plot(tmp_path):
    from factorkit.experiments.plots import plot_volumes

    config = StudyConfig.from_dict(
        {
            "name": "tiny-smc",
            "seeds": 2,
            "grid": {"width": [5], "depth": [2, 3], "method": ["gc"]},
            "gc": {"eps": 0.005, "sampler": "smc", "particles": 300, "runs": 2, "dtype": "float64"},
        }
    )
    run_study(config, tmp_path, workers=1, progress=False)
    rows = load_rows(tmp_path)
    assert len(rows) == 4 and all(r["sampler"] == "smc" and r["status"] == "ok" for r in rows)
    assert all(r["log_volume"] < -5 and r["ess"] > 0 and json.loads(r["volume_curve"]) for r in rows)
    assert plot_volumes(tmp_path).stat().st_size > 10_000
    with pytest.raises(ValueError, match="gc.p0 must be in"):
        StudyConfig.from_dict({**TINY, "gc": {"sampler": "smc", "p0": 1.0}})


ROBUST = {
    "name": "robust-tiny",
    "seeds": 2,
    "metric": "rel_error",
    "problem": {"m": 10, "m2": 10, "rank": 1, "n": 60},
    "grid": {"width": [1], "depth": [2], "method": ["gd"], "outliers": [0.0, 0.2], "loss": ["l1", "l2"]},
    "gd": {
        "init_scale": 1e-8,
        "lr": {"l1": 1.0, "l2": 10.0},
        "lr_decay": 0.998,
        "steps": 3000,
        "optimizer": "gd",
    },
}


def test_robust_study_l1_beats_l2_under_outliers_and_reports_rel_error(tmp_path):
    run_study(StudyConfig.from_dict(ROBUST), tmp_path, workers=1, progress=False)
    rows = load_rows(tmp_path)
    assert len(rows) == 8 and {r["outliers"] for r in rows} == {0.0, 0.2}
    records = {(r["loss"], r["x"]): r for r in aggregate(rows, "rel_error")}
    assert records[("l2", 0.0)]["median"] < 1e-6  # l2 is tuned: exact on clean data
    assert records[("l1", 0.2)]["median"] < 1e-3
    assert records[("l2", 0.2)]["median"] > 0.1
    # the convex reference row is on the corrupted problem, in the same measure
    assert all(r["nuclear_rel_error"] is not None for r in rows)
    write_tables(tmp_path)
    assert "rel_error by outliers" in (tmp_path / "summary.md").read_text()
    assert [p.name for p in plot_study(tmp_path)] == ["outliers_median.png", "outliers_mean.png"]


def test_new_settings_at_their_defaults_keep_old_run_keys():
    import hashlib

    (cell,) = [
        c
        for c in StudyConfig.from_dict({**TINY, "grid": {"width": [4], "depth": [2]}}).cells()
        if c.method == "gd"
    ]
    later = ("outliers", "noise", "loss", "lr_decay", "init", "momentum", "pairing")
    old = {k: v for k, v in cell.params.items() if k not in later}
    blob = json.dumps({"method": "gd", "seed": 3, **old}, sort_keys=True)
    assert cell.key(3) == hashlib.sha256(blob.encode()).hexdigest()[:20]


def test_gc_rows_of_the_old_fan_in_prior_keep_their_keys_and_the_fan_out_default_gets_new_ones():
    import hashlib

    def gc_cell(**gc):
        config = StudyConfig.from_dict({**TINY, "grid": {"width": [4], "depth": [2]}, "gc": gc})
        return next(c for c in config.cells() if c.method == "gc")

    fan_in, fan_out = gc_cell(layer_scaling="fan_in"), gc_cell()
    later = ("outliers", "noise", "pairing", "layer_scaling", "orientation", "target_ess")
    old = {k: v for k, v in fan_in.params.items() if k not in later}
    blob = json.dumps({"method": "gc", "seed": 3, **old}, sort_keys=True)
    # a store filled before fan-out became the default holds fan-in runs: those keys still match them
    assert fan_in.key(3) == hashlib.sha256(blob.encode()).hexdigest()[:20]
    assert fan_out.params["layer_scaling"] == "fan_out" and fan_out.key(3) != fan_in.key(3)


def test_store_from_an_older_version_gains_the_new_columns(tmp_path):
    from factorkit.experiments.store import ResultStore

    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        db.execute("CREATE TABLE runs (key TEXT PRIMARY KEY, study TEXT, method TEXT, gen_loss REAL)")
        db.execute("INSERT INTO runs VALUES ('k0', 'old', 'gd', 0.5)")
    with ResultStore(tmp_path) as store:
        store.write(
            {"key": "k1", "study": "new", "method": "gd", "gen_loss": 0.1, "outliers": 0.2, "loss": "l1"}
        )
        rows = {r["key"]: r for r in store.rows()}
    assert rows["k0"]["gen_loss"] == 0.5 and rows["k0"]["outliers"] is None
    assert rows["k1"]["outliers"] == 0.2 and rows["k1"]["loss"] == "l1"


def test_robust_and_optimizer_settings_are_validated():
    base = {"grid": {"width": [5], "depth": [2], "method": ["gd"]}}
    with pytest.raises(ValueError, match="problem.outliers must be in \\[0, 1\\)"):
        StudyConfig.from_dict({**base, "problem": {"outliers": 1.0}})
    with pytest.raises(ValueError, match="gd.optimizer must be one of"):
        StudyConfig.from_dict({"grid": {**base["grid"], "optimizer": ["lion"]}})
    with pytest.raises(ValueError, match="gd.loss must be one of"):
        StudyConfig.from_dict({"grid": {**base["grid"], "loss": ["huber"]}})
    with pytest.raises(ValueError, match="gd.lr has no entry for optimizer 'adam' or loss 'l2'"):
        StudyConfig.from_dict(
            {"grid": {**base["grid"], "optimizer": ["gd", "adam"]}, "gd": {"lr": {"gd": 1.0}}}
        )
    with pytest.raises(ValueError, match="gd.lr_decay must be <= 1.0"):
        StudyConfig.from_dict({**base, "gd": {"lr_decay": 1.5}})
    with pytest.raises(ValueError, match="metric must be one of"):
        StudyConfig.from_dict({**base, "metric": "accuracy"})
    with pytest.raises(ValueError, match="GD runs only"):
        StudyConfig.from_dict({"grid": {"width": [5], "depth": [2]}, "metric": "rel_error"})
    config = StudyConfig.from_dict(
        {"grid": {**base["grid"], "optimizer": ["gd", "adam"]}, "gd": {"lr": {"gd": 1.0, "l2": 1e-3}}}
    )
    assert sorted(c.params["lr"] for c in config.cells()) == [1e-3, 1.0]


def test_overrides_set_values_where_their_condition_matches():
    config = StudyConfig.from_dict(
        {
            **TINY,
            "grid": {"width": [4], "depth": [2, 3], "activation": ["linear", "tanh"], "method": ["gd", "gc"]},
            "gd": {"lr": 1e-2, "steps": 300, "init_scale": {2: 1e-3, 3: 0.1}},
            "overrides": [
                {"when": {"activation": "tanh"}, "gd": {"steps": 500, "init_scale": {2: 1e-2, 3: 0.2}}},
                {"when": {"activation": "tanh", "depth": [3]}, "gc": {"eps": 0.3}},
            ],
        }
    )
    params = {(c.method, c.params["activation"], c.params["depth"]): c.params for c in config.cells()}
    assert params[("gd", "linear", 3)]["steps"] == 300 and params[("gd", "linear", 3)]["init_scale"] == 0.1
    assert params[("gd", "tanh", 2)]["steps"] == 500 and params[("gd", "tanh", 2)]["init_scale"] == 1e-2
    assert params[("gd", "tanh", 3)]["init_scale"] == 0.2
    assert params[("gc", "tanh", 3)]["eps"] == 0.3 and params[("gc", "tanh", 2)]["eps"] == 0.15
    assert params[("gc", "linear", 3)]["eps"] == 0.15
    # an override is a config like any other: round trip, and its values pass the same checks
    assert StudyConfig.from_dict(config.to_dict()).cells() == config.cells()


@pytest.mark.parametrize(
    ("override", "error", "match"),
    [
        ({"gd": {"steps": 5}}, ValueError, "overrides\\[0\\] needs a non-empty 'when'"),
        ({"when": {"colour": 1}}, ValueError, "unknown key\\(s\\) 'colour' in \\[overrides\\[0\\].when\\]"),
        ({"when": {"depth": 2}, "gd": {"stepz": 5}}, ValueError, "unknown key\\(s\\) 'stepz'"),
        ({"when": {"depth": 2}, "gd": {"steps": -5}}, ValueError, "gd.steps must be >= 0"),
        ({"when": {"depth": 2}, "gd": {"momentum": 1.5}}, ValueError, "gd.momentum must be in \\[0, 1\\)"),
        (
            {"when": {"depth": 2}, "gc": {"layer_scaling": "fan"}},
            ValueError,
            "gc.layer_scaling must be one of",
        ),
        ({"when": {"depth": 2}, "gd": 3}, TypeError, "overrides\\[0\\].gd must be a table"),
    ],
)
def test_bad_overrides_are_refused_by_name(override, error, match):
    with pytest.raises(error, match=match):
        StudyConfig.from_dict({**TINY, "overrides": [override]})


def test_fresh_problems_per_point_and_transposed_gc(tmp_path):
    from factorkit.experiments.run.jobs import build_problem as _problem
    from factorkit.experiments.run.jobs import gc_setup as _gc_setup

    fresh = StudyConfig.from_dict(
        {
            **TINY,
            "problem": {**TINY["problem"], "pairing": "fresh"},
            "gc": {**TINY["gc"], "orientation": "transposed"},
        }
    )
    cells = fresh.cells()
    by = {(c.method, c.params["width"]): c.params for c in cells}
    # a new problem per width; G&C and GD of one (width, seed) share it
    a, b = _problem(by[("gd", 4)], 0, "cpu", "float64"), _problem(by[("gd", 16)], 0, "cpu", "float64")
    assert not torch.equal(a.W_star, b.W_star)
    torch.testing.assert_close(_problem(by[("gc", 4)], 0, "cpu", "float64").W_star, a.W_star)
    paired = {(c.method, c.params["width"]): c.params for c in StudyConfig.from_dict(TINY).cells()}
    torch.testing.assert_close(
        _problem(paired[("gd", 4)], 0, "cpu", "float64").W_star,
        _problem(paired[("gd", 16)], 0, "cpu", "float64").W_star,
    )
    # transposed G&C samples W^T on the transposed problem: the same problem seen the other way
    problem, model, prior = _gc_setup(by[("gc", 4)], 0, "cpu")
    torch.testing.assert_close(problem.W_star, _problem(by[("gc", 4)], 0, "cpu", "float32").W_star.mT)
    assert (model.m, model.m2) == (4, 4) and prior.layer_scaling == "fan_out"
    counts = run_study(fresh, tmp_path, workers=1, progress=False)
    assert counts["written"] == counts["runs_total"] == len(cells) * 2


def _rows(values: dict[tuple[int, int], float | None], accepted_when_invalid: int = 3) -> list[dict]:
    """Synthetic G&C rows of a width study: ``values[(width, seed)]``, None for a few-accepted run."""
    rows = []
    for (width, seed), value in values.items():
        rows.append(
            {
                "method": "gc", "activation": "linear", "prior": "gaussian", "eps": 0.05, "rank": 1, "n": 15,
                "measurements": "gaussian", "loss": None, "optimizer": None, "width": width, "depth": 2,
                "seed": seed, "outliers": 0.0, "status": "ok" if value is not None else "few_accepted",
                "gen_loss": value if value is not None else 0.9, "prior_gen_loss": 1.0,
                "nuclear_gen_loss": 0.0, "steps": None,
                "accepted": 50 if value is not None else accepted_when_invalid,
            }
        )  # fmt: skip
    return rows


def test_points_count_the_seeds_whose_effort_check_moved():
    rows = _rows({(w, s): 0.1 for w in (5, 10) for s in range(3)})
    moved = {"mcmc_steps": 40, "checks": [{"moved": True}], "converged": False}
    still = {"mcmc_steps": 10, "checks": [{"moved": False}], "converged": True}
    for row in rows:  # width 5: two seeds moved, one did not; width 10 never checked (importance)
        if row["width"] == 5:
            row["effort"] = json.dumps(moved if row["seed"] < 2 else still)
    by_width = {r["x"]: r for r in aggregate(rows)}
    assert by_width[5]["unmixed"] == 2 and by_width[10]["unmixed"] is None
    assert by_width[5]["valid_seeds"] == 3  # counted, not dropped
    # figures mark such a point (a hollow square, its own legend entry, k/n), and only it
    import matplotlib.pyplot as plt

    from factorkit.experiments.plots import _draw_curve

    fig, panel = plt.subplots()
    _draw_curve(panel, aggregate(rows), "median", "width", "gc", "G&C", "tab:orange")
    labels = panel.get_legend_handles_labels()[1]
    assert labels.count("G&C sampler not mixed (answer moved with effort)") == 1
    assert [t.get_text() for t in panel.texts] == ["2/3 unmixed"]
    plt.close(fig)


def test_depth_points_carry_the_counted_eps_zero_limit():
    # the depth figures' setting (normalized prior, k = 5, m = m' = 5, n = 15, rank 1): the count
    # gives 20/11, 12/11, 10/11, 10/11 at depths 2-5 (factorkit.fit.tail): an interpolating
    # posterior at depths 2 and 3, G&C's eps -> 0 limit W = W* from depth 4
    rows = []
    for depth in (2, 3, 4, 5):
        for row in _rows({(5, s): 0.02 for s in range(2)}):
            row.update(depth=depth, m=5, m2=5, prior="normalized_gaussian", eps=0.0035)
            rows.append(row)
    by_depth = {r["x"]: r for r in aggregate(rows)}
    assert [by_depth[d]["eps0_limit"] for d in (2, 3, 4, 5)] == ["posterior", "posterior", "W*", "W*"]
    # noisy measurements are not counted; GD points carry nothing
    noisy = [{**r, "settings": json.dumps({"noise": 0.01})} for r in rows]
    assert {r["eps0_limit"] for r in aggregate(noisy)} == {None}
    assert {r["eps0_limit"] for r in aggregate([{**r, "method": "gd"} for r in rows])} == {None}
    # the figure: a triangle on L_gen = 0 at depths 4 and 5, one legend entry
    import matplotlib.pyplot as plt

    from factorkit.experiments.plots import _draw_curve

    fig, panel = plt.subplots()
    _draw_curve(panel, aggregate(rows), "median", "depth", "gc", "G&C", "tab:orange")
    label = "G&C's eps -> 0 limit, counted: W = W* (L_gen = 0)"
    labels = panel.get_legend_handles_labels()[1]
    assert labels.count(label) == 1
    from matplotlib.collections import PathCollection  # what scatter draws (fill_between is not one)

    marks = [tuple(c.get_offsets()[0]) for c in panel.collections if isinstance(c, PathCollection)]
    assert sorted(marks) == [(4.0, 0.0), (5.0, 0.0)]
    plt.close(fig)


def test_a_row_records_the_effort_check_of_its_run():
    from factorkit.experiments.run.jobs import gc_row
    from factorkit.fit.marginal_sampler import marginal_sample
    from factorkit.models import DeepFactorization
    from factorkit.problems import make_sensing_problem

    problem = make_sensing_problem(3, 3, rank=1, n=4, seed=0, dtype="float64")
    model = DeepFactorization(3, 3, 3, 2, "linear")
    result = marginal_sample(problem, model, eps=0.0, method="smc", n_particles=100, runs=2, target_ess=1,
                             seed=0, keep_samples=False)  # fmt: skip
    row = gc_row({}, {"min_accepted": 1}, result)
    effort = json.loads(row["effort"])
    assert effort == json.loads(json.dumps(result.extra["effort"]))
    assert effort["checks"][0]["mcmc_steps"] == [10, 40]
    at_eps = marginal_sample(problem, model, eps=0.05, method="smc", n_particles=100, runs=2, target_ess=1,
                             seed=0, keep_samples=False)  # fmt: skip
    assert gc_row({}, {"min_accepted": 1}, at_eps)["effort"] is None  # checked at eps = 0 only


def test_paired_trend_test_sees_a_trend_that_problem_offsets_hide_from_the_pooled_one():
    # every seed grows by 0.01 per width step, but seeds differ by 1 (different problems)
    widths, seeds = [5, 10, 20, 40], range(6)
    rows = _rows({(w, s): s + 0.01 * i for i, w in enumerate(widths) for s in seeds})
    (test,) = trend_tests(rows)
    assert test["p_value"] > 0.3  # pooled: the offsets swamp the trend
    assert test["paired_seeds"] == 6 and test["direction"] == "increasing"
    # Page's L with 6 blocks of 4 perfectly ordered treatments: L = 6 * sum(j^2) = 180, its maximum
    assert test["page_l"] == 180.0 and test["page_p"] < 1e-3
    assert test["seed_rho_mean"] == pytest.approx(1.0)
    assert test["wilcoxon_p"] == pytest.approx(stats_wilcoxon_p([1.0] * 6))


def stats_wilcoxon_p(values):
    from scipy import stats

    return stats.wilcoxon(values).pvalue


def test_complete_case_columns_and_left_out_points(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from factorkit.experiments.plots import _mark_left_out

    values = {(w, s): 0.1 * s + 0.01 * w for w in (5, 10, 20) for s in range(4)}
    values[(20, 3)] = None  # seed 3 drops out at width 20
    for s in range(4):
        values[(40, s)] = None  # nothing valid at width 40
    records = {r["x"]: r for r in aggregate(_rows(values))}
    assert [records[w]["valid_seeds"] for w in (5, 10, 20, 40)] == [4, 4, 3, 0]
    # no seed is valid at every width, so the complete case is empty; without width 40 it is seeds 0-2
    assert all(r["cc_seeds"] == 0 for r in records.values())
    del_40 = {k: v for k, v in values.items() if k[0] != 40}
    records = {r["x"]: r for r in aggregate(_rows(del_40))}
    assert records[5]["cc_seeds"] == 3 and records[5]["cc_mean"] == pytest.approx(0.1 + 0.05)
    assert records[5]["mean"] == pytest.approx(0.15 + 0.05)  # all four seeds
    # every point is drawn: the partial one with 3/4, the empty one where its runs sit, with its count
    records = aggregate(_rows(values))
    figure, panel = plt.subplots()
    _mark_left_out(panel, records, "median", "gc")
    texts = sorted(t.get_text() for t in panel.texts)
    assert texts == ["0/4, 12 acc.", "3/4"]
    assert len(panel.collections) == 2
    empty = next(r for r in records if r["x"] == 40)
    assert empty["invalid_median"] == pytest.approx(0.9)
    plt.close(figure)


def test_report_html_is_self_contained_and_matches_the_store(smoke_width):
    """Every figure inline, every table row equal to the store's aggregates, config and versions."""
    from html.parser import HTMLParser

    from factorkit.experiments.report import REPORT_COLUMNS, _fmt, write_report

    path = write_report(smoke_width)
    page = path.read_text()

    class Reader(HTMLParser):
        def __init__(self):
            super().__init__()
            self.images, self.tables, self.current, self.cell, self.pre = [], {}, None, None, {}
            self.pre_id = None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "img":
                self.images.append(attrs["src"])
            elif tag == "table":
                self.current = self.tables.setdefault(attrs.get("id"), [])
            elif tag == "tr" and self.current is not None:
                self.current.append([])
            elif tag == "td":
                self.cell = ""
            elif tag == "pre":
                self.pre_id = attrs.get("id")
                self.pre[self.pre_id] = ""

        def handle_endtag(self, tag):
            if tag == "td":
                self.current[-1].append(self.cell)
                self.cell = None
            elif tag == "table":
                self.current = None
            elif tag == "pre":
                self.pre_id = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data
            elif self.pre_id is not None:
                self.pre[self.pre_id] += data

    reader = Reader()
    reader.feed(page)
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # no network
    assert len(reader.images) == 3 and all(src.startswith("data:image/png;base64,") for src in reader.images)
    records = aggregate(load_rows(smoke_width))
    table = [row for row in reader.tables["points"] if row]
    assert len(table) == len(records)
    for row, record in zip(table, records, strict=True):
        assert row == [_fmt(record.get(column)) for column in REPORT_COLUMNS]
    assert len([row for row in reader.tables["trends"] if row]) == len(trend_tests(load_rows(smoke_width)))
    assert json.loads(reader.pre["config"])["name"] == "width-smoke"
    assert '"torch"' in reader.pre["versions"]


def test_gd_over_widths_depths_and_activations_as_one_batch_equals_separate_runs(tmp_path):
    """A sweep's GD cells of every width, depth and activation train as one population
    zero-padded to the widest net and deepened by identity layers to the deepest, one activation
    per member; every row equals the run of its (width, depth, activation) alone (to rounding:
    the padded products add exact zeros, the activations are selected)."""
    from factorkit.experiments.run import plan

    config = {**TINY, "grid": {"width": [4, 8, 16], "depth": [2, 3], "activation": ["tanh", "leaky_relu"],
                               "method": ["gd"]}}  # fmt: skip
    jobs = plan(StudyConfig.from_dict(config), set())
    assert len(jobs) == 1 and jobs[0].runs == 24  # both depths in one batch
    run_study(StudyConfig.from_dict(config), tmp_path / "batched", workers=1, progress=False)
    batched = {r["key"]: r for r in load_rows(tmp_path / "batched")}
    for width in (4, 8, 16):
        for activation in ("tanh", "leaky_relu"):
            grid = {**config["grid"], "width": [width], "activation": [activation]}
            alone = tmp_path / f"w{width}{activation}"
            run_study(StudyConfig.from_dict({**config, "grid": grid}), alone, workers=1, progress=False)
            for row in load_rows(alone):
                twin = batched[row["key"]]
                for column in ("gen_loss", "train_loss", "rel_error"):
                    assert twin[column] == pytest.approx(row[column], rel=1e-9, abs=1e-15)
                assert twin["steps"] == row["steps"]


def test_gd_batches_split_widths_where_padding_costs_more_than_it_saves():
    """Padding a narrow net to a wide one costs its arithmetic: a sweep to width 160 is split
    (the modelled step time of the split is the smaller), one of small widths is not."""
    from factorkit.experiments.run import plan
    from factorkit.experiments.run.plan import gd_step_seconds

    wide = StudyConfig.from_dict({**TINY, "grid": {"width": [5, 160], "depth": [4], "method": ["gd"]}})
    assert sorted(job.cell.params["width"] for job in plan(wide, set())) == [5, 160]
    runs = len(wide.seeds)
    assert gd_step_seconds(runs, 5, 4) + gd_step_seconds(runs, 160, 4) < gd_step_seconds(2 * runs, 160, 4)
    narrow = StudyConfig.from_dict({**TINY, "grid": {"width": [4, 8], "depth": [4], "method": ["gd"]}})
    (job,) = plan(narrow, set())
    assert job.runs == 2 * runs


def test_padding_keeps_the_end_to_end_matrix():
    from factorkit.models import DeepFactorization

    for activation in ("linear", "tanh", "relu", "leaky_relu"):
        model = DeepFactorization(4, 3, 5, 3, activation)
        weights = model.init_weights(7, 0.5, torch.Generator().manual_seed(0), dtype=torch.float64)
        wide = DeepFactorization(4, 3, 9, 3, activation)
        torch.testing.assert_close(wide.end_to_end(model.pad(weights, 9)), model.end_to_end(weights))
    with pytest.raises(ValueError, match="width must be >= the model's width 5"):
        model.pad(weights, 3)


def test_depth_limit_smoke_lowers_l_gen_with_eps_and_records_rank_one_energy_and_rip(tmp_path):
    raw = preset("depth_limit", "smoke").to_dict()
    raw["seeds"] = 1
    config = StudyConfig.from_dict(raw)
    assert config.gc["sampler"] == "auto" and config.grid["eps"] == [0.015, 0.0015]
    run_study(config, tmp_path, workers=1, progress=False)
    rows = {(r["depth"], r["eps"]): r for r in load_rows(tmp_path)}
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows.values())
    # the depth theorem's direction: a lower threshold generalizes better at every depth
    for depth in (2, 8):
        assert rows[(depth, 0.0015)]["gen_loss"] < rows[(depth, 0.015)]["gen_loss"]
    for row in rows.values():
        assert 0 < row["rank1_energy"] <= 1 and row["rip_low"] < 1 < row["rip_high"]
    assert rows[(8, 0.0015)]["rank1_energy"] > 0.9


def test_marginal_study_with_an_eps_zero_point_and_unfitted_gd_drawn_apart(tmp_path):
    from factorkit.experiments.plots import plot_volumes
    from factorkit.experiments.report import write_report
    from factorkit.fit.weights import PARETO_K_LIMIT

    config = StudyConfig.from_dict(
        {
            "name": "tiny-marginal",
            "seeds": 2,
            "grid": {"width": [5], "depth": [1, 2], "method": ["gc", "gd"], "eps": [0.0, 0.02]},
            "gc": {"sampler": "marginal", "target_ess": 50, "dtype": "float64"},
            "gd": {"steps": 20},  # far too few to fit: every GD point is unfitted
        }
    )
    run_study(config, tmp_path, workers=1, progress=False)
    rows = load_rows(tmp_path)
    gc = [r for r in rows if r["method"] == "gc"]
    assert len(gc) == 8 and all(r["sampler"] == "marginal" and r["status"] == "ok" for r in gc)
    assert all(r["ess"] >= 50 for r in gc)
    # importance-sampled rows carry their weights' spread and Pareto shape (at most the limit: above
    # it the run went to tempered SMC, which has neither); depth 1 is exact (one weight)
    sampled = [r for r in gc if r["pareto_k"] is not None]
    assert all(0 < r["weight_spread"] <= 1 and r["pareto_k"] <= PARETO_K_LIMIT for r in sampled)
    assert not any(r["pareto_k"] is not None for r in gc if r["depth"] == 1)
    for r in gc:  # eps = 0 carries a density and no volume; eps > 0 a volume
        assert (r["log_volume"] is None) == (r["eps"] == 0) and (r["log_density"] is None) == (r["eps"] > 0)
        assert r["train_loss"] <= r["eps"] * (1 + 1e-9) + 1e-20
    records = aggregate(study_rows(tmp_path))
    gd = [r for r in records if r["method"] == "gd"]
    assert gd and all(r["fit_threshold"] == 0.02 and r["unfitted"] == 2 for r in gd)
    assert all(r["train_median"] > 0.02 for r in gd)
    assert {r["eps"] for r in records if r["method"] == "gc"} == {0.0, 0.02}
    paths = plot_study(tmp_path)
    assert all(p.stat().st_size > 10_000 for p in paths)
    assert plot_volumes(tmp_path) is not None
    page = write_report(tmp_path, figures=paths).read_text()
    assert page.count("class='unfitted'") == len(gd)


def test_gd_both_ways_in_one_study_the_published_steps_and_to_a_training_threshold(tmp_path):
    from factorkit.experiments.plots import _gd_setting
    from factorkit.experiments.report import write_report

    raw = {
        **TINY,
        "grid": {"width": [4], "depth": [2, 3], "method": ["gd", "gc"], "eps_train": ["none", 0.03]},
        "gc": {"eps": 0.06, "draws": 20_000},
        "gd": {"lr": 1e-2, "steps": 1},  # far too few to fit (L_train 0.07, 0.14) at the published step count
        "overrides": [{"when": {"eps_train": 0.03}, "gd": {"steps": 3000}}],
    }
    config = StudyConfig.from_dict(raw)
    cells = config.cells()
    # TOML's "none" is no threshold; G&C does not multiply over a GD-only axis
    gd = sorted(
        ((c.params["eps_train"] or 0.0), c.params["steps"], c.params["depth"])
        for c in cells
        if c.method == "gd"
    )
    assert gd == [(0.0, 1, 2), (0.0, 1, 3), (0.03, 3000, 2), (0.03, 3000, 3)]
    assert sum(c.method == "gc" for c in cells) == 2
    # the published runs keep the key they have in a study without the axis (shared, not rerun)
    plain = StudyConfig.from_dict(
        {**raw, "grid": {"width": [4], "depth": [2, 3], "method": ["gd"]}, "overrides": []}
    )
    assert {c.key(0) for c in plain.cells()} < {c.key(0) for c in cells}
    with pytest.raises(ValueError, match="gd.eps_train must be > 0"):
        StudyConfig.from_dict({**raw, "grid": {**raw["grid"], "eps_train": [0.0]}})
    run_study(config, tmp_path, workers=1, progress=False)
    records = [r for r in aggregate(study_rows(tmp_path)) if r["method"] == "gd"]
    published = [r for r in records if r["eps_train"] is None]
    to_threshold = [r for r in records if r["eps_train"] == 0.03]
    assert len(published) == len(to_threshold) == 2
    assert all(r["unfitted"] == 2 and r["fit_threshold"] == 0.06 for r in published)
    assert all(
        r["unfitted"] == 0 and r["train_median"] < 0.03 and r["fit_threshold"] == 0.03 for r in to_threshold
    )
    assert _gd_setting("eps_train", None) == "the step count as published"
    assert _gd_setting("eps_train", 0.03) == "to L_train < 0.03"
    _, md = write_tables(tmp_path)
    assert "| eps_train |" in md.read_text().split("## Trend tests")[1]
    page = write_report(tmp_path, figures=plot_study(tmp_path)).read_text()
    assert "<th>eps_train</th>" in page
