import inspect
import json

import pytest

from factorkit.cli import main


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_json_has_required_fields(capsys):
    code, out, _ = run(capsys, "sample", "--json", "--eps", "0.1", "--draws", "50000", "--width", "10")
    assert code == 0
    result = json.loads(out)
    for key in (
        "train_loss",
        "gen_loss",
        "rel_error",
        "accepted",
        "evaluations",
        "acceptance_rate",
        "prior_gen_loss",
    ):
        assert key in result
    assert result["evaluations"] == 50000
    assert result["acceptance_rate"] == result["accepted"] / 50000
    assert result["train_loss"] < 0.1


def test_train_json(capsys):
    code, out, _ = run(
        capsys, "train", "--json", "--steps", "2000", "--lr", "0.01", "--measurements", "completion"
    )
    assert code == 0
    result = json.loads(out)
    assert result["steps"] == 2000
    assert result["train_loss"] < 1e-3 and result["gen_loss"] < 0.05


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["sample", "--eps", "0"], "--eps"),
        (["sample", "--eps", "nan"], "--eps"),
        (["sample", "--width", "-2"], "--width"),
        (["sample", "--prior", "cauchy"], "--prior"),
        (["train", "--activation", "gelu"], "--activation"),
        (["train", "--optimizer", "lbfgs"], "--optimizer"),
        (["sample", "--rank", "9"], "rank"),
        (["sample", "--n", "26"], "n must be"),
        (["sample", "--device", "tpu"], "device"),
        (["study", "nonexistent"], "study config"),
        (["study", "width", "--scale", "huge"], "--scale"),
        (["plot", "/nonexistent/dir"], "results.sqlite"),
        (["study", "width", "--executor", "dask"], "--scheduler ADDRESS or --dask-local"),
        (["study", "width", "--dask-local", "2"], "need --executor dask"),
        (["study", "width", "--executor", "spark"], "--executor"),
        (["study", "width", "--shard-draws", "0"], "--shard-draws"),
    ],
)
def test_invalid_arguments_exit_2_with_one_line(capsys, argv, option):
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("factorkit: error:")
    assert option in lines[0]


def test_study_smoke_end_to_end(capsys, tmp_path):
    code, out, _ = run(capsys, "study", "depth", "--scale", "smoke", "--out", str(tmp_path), "--workers", "1")
    assert code == 0
    assert (tmp_path / "depth_median.png").is_file() and (tmp_path / "summary.md").is_file()
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") == 3
    assert (tmp_path / "command.txt").read_text().startswith("factorkit study depth --scale smoke --out")
    code, out, _ = run(capsys, "study", "depth", "--scale", "smoke", "--out", str(tmp_path), "--workers", "1")
    assert "0 runs written" in out


def test_sample_smc_json_adds_volume_fields(capsys):
    code, out, _ = run(
        capsys, "sample", "--sampler", "smc", "--eps", "0.005", "--particles", "300", "--runs", "2", "--json"
    )
    assert code == 0
    result = json.loads(out)
    for key in ("log_volume", "log_volume_se", "ess", "levels", "accepted", "evaluations", "gen_loss"):
        assert key in result
    assert result["log_volume"] < -5 and result["levels"] >= 2 and result["train_loss"] < 0.005


def test_sample_defaults_are_the_samplers_own():
    """The command line writes its defaults out (it builds its parser without importing torch):
    they must be the library's."""
    from factorkit.cli import build_parser
    from factorkit.fit import smc

    args = build_parser().parse_args(["sample"])
    assert args.p0 == smc.P0 == inspect.signature(smc.subset_simulation).parameters["p0"].default


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["sample", "--sampler", "smc", "--p0", "1.5"], "p0"),
        (["sample", "--sampler", "smc", "--particles", "1"], "n_particles"),
        (["sample", "--sampler", "nested"], "--sampler"),
    ],
)
def test_smc_invalid_arguments(capsys, argv, option):
    code, _, err = run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and option in err


def test_fit_boolean_writes_factors_and_report(capsys, tmp_path):
    import numpy as np

    from factorkit.problems.boolean import planted_tiles

    data = planted_tiles(120, 80, 3, density=0.15, seed=2)
    np.save(tmp_path / "x.npy", data.X)
    code, _, _ = run(
        capsys,
        "fit",
        str(tmp_path / "x.npy"),
        "--method",
        "boolean",
        "--rank",
        "3",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["boolean_error"] == 0 and report["recall"] == 1.0
    assert np.load(tmp_path / "out" / "V.npy").shape == (3, 80)
    code, _, err = run(
        capsys,
        "fit",
        str(tmp_path / "x.npy"),
        "--method",
        "boolean",
        "--rank",
        "0",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 2 and "--rank" in err


def test_train_robust_options(capsys):
    code, out, _ = run(
        capsys,
        "train",
        "--symmetric",
        "--m",
        "20",
        "--rank",
        "2",
        "--n",
        "200",
        "--width",
        "2",
        "--loss",
        "l1",
        "--outliers",
        "0.2",
        "--lr",
        "2",
        "--lr-decay",
        "0.997",
        "--steps",
        "2000",
        "--json",
    )
    assert code == 0 and json.loads(out)["rel_error"] < 1e-3
    code, out, _ = run(
        capsys, "train", "--optimizer", "adafactor", "--lr", "0.05", "--steps", "200", "--json"
    )
    assert code == 0 and json.loads(out)["steps"] == 200
    for argv, option in (
        (["train", "--outliers", "1.5"], "outliers"),
        (["train", "--lr-decay", "2"], "lr_decay"),
        (["train", "--loss", "huber"], "--loss"),
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2 and option in err and len(err.strip().splitlines()) == 1


def test_train_subgradient_optimizer_is_l1_gd_on_the_deep_factorization(capsys):
    common = ["--m", "20", "--rank", "1", "--n", "300", "--width", "1", "--lr-decay", "0.998"]
    common += ["--init-scale", "1e-8", "--steps", "4000", "--outliers", "0.2", "--json"]
    code, out, _ = run(capsys, "train", "--optimizer", "subgradient", "--lr", "2", *common)
    assert code == 0 and json.loads(out)["rel_error"] < 1e-3
    code, out, _ = run(capsys, "train", "--optimizer", "gd", "--lr", "40", *common)
    assert code == 0 and json.loads(out)["rel_error"] > 0.1  # the l2 loss follows the outliers
    code, _, err = run(capsys, "train", "--optimizer", "subgradient", "--loss", "l2", "--steps", "1")
    assert code == 2 and "l1 loss" in err


def test_fit_ebmf_and_nmf_and_embed(capsys, tmp_path):
    import numpy as np

    from factorkit.methods.embeddings import QWEM, synthetic_corpus

    rng = np.random.default_rng(0)
    X = (rng.standard_normal((80, 2)) * (rng.random((80, 2)) < 0.4)) @ rng.standard_normal((2, 30))
    X = X + 0.5 * rng.standard_normal(X.shape)
    X[rng.random(X.shape) < 0.05] = np.nan
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Z.npy", rng.standard_normal((80, 2)))

    def fit_ebmf(out, *options):
        ebmf = [
            "fit",
            str(tmp_path / "X.npy"),
            "--method",
            "ebmf",
            "--rank",
            "4",
            "--out",
            str(tmp_path / out),
        ]
        return run(capsys, *ebmf, *options)

    code, _, _ = fit_ebmf("e")
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert code == 0 and report["rank"] == 2 and report["missing"] == int(np.isnan(X).sum())
    code, _, _ = fit_ebmf("c", "--row-covariates", str(tmp_path / "Z.npy"), "--covariate-model", "mlp")
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert code == 0 and report["method"] == "cebmf" and report["covariate_model"] == "mlp"
    code, _, err = fit_ebmf("b", "--prior", "horseshoe")
    assert code == 2 and "prior_loadings must be one of" in err
    np.save(tmp_path / "P.npy", np.abs(np.nan_to_num(X)))
    code, _, _ = run(
        capsys, "fit", str(tmp_path / "P.npy"), "--method", "nmf", "--rank", "2", "--out", str(tmp_path / "n")
    )
    assert code == 0 and (tmp_path / "n" / "H.npy").is_file()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(s) for s in synthetic_corpus(n_sentences=400, seed=0)))
    code, _, _ = run(
        capsys,
        "embed",
        str(corpus),
        "--dim",
        "3",
        "--window",
        "3",
        "--min-count",
        "1",
        "--solver",
        "lanczos",
        "--power",
        "0.75",
        "--out",
        str(tmp_path / "w"),
    )
    report = json.loads((tmp_path / "w" / "report.json").read_text())
    assert code == 0 and report["vocabulary"] == 60
    assert report["parameters"] == {
        **QWEM().get_params(),
        **dict(dim=3, window=3, min_count=1, solver="lanczos", power=0.75),
    }
    assert report["solver"] == "lanczos" and report["eigen_residual"] <= 1e-6
    assert (tmp_path / "w" / "vectors.txt").read_text().startswith("60 3\n")
    code, _, err = run(capsys, "embed", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x"))
    assert code == 1 and "does not exist" in err


def test_sample_layer_scaling_option(capsys):
    """The paper's fan-out prior (default) and fan-in differ for tanh at k = 40 (issue 16: 2.3e-3 vs
    5.6e-3 accepted at eps 0.05)."""
    rates = {}
    for scaling in ("fan_out", "fan_in"):
        code, out, _ = run(
            capsys, "sample", "--activation", "tanh", "--width", "40", "--draws", "200000", "--json",
            "--layer-scaling", scaling,
        )  # fmt: skip
        assert code == 0
        rates[scaling] = json.loads(out)["acceptance_rate"]
    assert 1.5e-3 < rates["fan_out"] < 3.2e-3 and 4.5e-3 < rates["fan_in"] < 7e-3


def test_help_and_version_import_no_torch():
    """The parser is built from torch-free choices: --help and --version stay instant."""
    import subprocess
    import sys

    code = (
        "import sys, factorkit.cli as c\n"
        "try:\n    c.main(['--version'])\nexcept SystemExit:\n    pass\n"
        "c._build_parser()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("factorkit ")


def test_torch_free_choices_match_the_modules():
    from factorkit import _choices
    from factorkit.experiments.presets import PRESETS
    from factorkit.fit.gd import OPTIMIZERS, TORCH_OPTIMIZERS

    assert _choices.PRESET_NAMES == tuple(PRESETS)
    assert _choices.OPTIMIZERS == OPTIMIZERS
    assert _choices.TORCH_OPTIMIZER_NAMES == tuple(TORCH_OPTIMIZERS)


def test_fit_json_and_figure_formats(capsys, tmp_path):
    import numpy as np

    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((30, 12)))
    code, out, _ = run(
        capsys,
        "fit",
        str(tmp_path / "x.npy"),
        "--method",
        "nmf",
        "--rank",
        "2",
        "--out",
        str(tmp_path / "o"),
        "--json",
    )
    report = json.loads(out)
    assert code == 0 and report == json.loads((tmp_path / "o" / "report.json").read_text())
    study = ["study", "width", "--scale", "smoke", "--out", str(tmp_path / "s"), "--workers", "1"]
    code, _, _ = run(capsys, *study, "--format", "svg")
    assert code == 0 and (tmp_path / "s" / "width_median.svg").read_text().lstrip().startswith("<?xml")
    code, _, _ = run(capsys, "plot", str(tmp_path / "s"), "--format", "pdf")
    assert code == 0 and (tmp_path / "s" / "width_mean.pdf").read_bytes().startswith(b"%PDF")


def test_subgradient_defaults_recover_from_the_problems_scale(capsys):
    """With no schedule flags the sub-gradient method starts tiny and decays from a step that
    grows with m (issue 18: the old defaults ended at relative error 1.0)."""
    argv = ["train", "--symmetric", "--loss", "l1", "--optimizer", "subgradient", "--m", "20", "--rank", "1"]
    code, out, _ = run(capsys, *argv, "--width", "3", "--n", "200", "--outliers", "0.2", "--json")
    result = json.loads(out)
    assert code == 0 and result["status"] == "ok" and result["rel_error"] < 1e-3


def test_no_complement_is_not_divergence(capsys):
    """n = m m' leaves nothing to generalize to: gen_loss is null, the run is fine."""
    code, out, _ = run(capsys, "train", "--m", "3", "--n", "9", "--width", "3", "--steps", "200", "--json")
    result = json.loads(out)
    assert code == 0 and result["status"] == "ok" and result["gen_loss"] is None


def test_the_study_path_does_not_import_scikit_learn():
    """scikit-learn is the estimators' dependency; running a study needs none of it."""
    import subprocess
    import sys

    code = (
        "import sys, factorkit.experiments.run, factorkit.experiments.report\n"
        "assert 'sklearn' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_fit_dictionary_and_bsc_write_atoms_codes_image_and_report(capsys, tmp_path):
    import numpy as np

    from factorkit.problems.bars import bars

    X, W, _ = bars(4, 600, seed=0)
    np.save(tmp_path / "bars.npy", X)
    code, out, _ = run(capsys, "fit", str(tmp_path / "bars.npy"), "--method", "bsc", "--atoms", "8",
                       "--out", str(tmp_path / "bsc"), "--json")  # fmt: skip
    assert code == 0
    report = json.loads(out)
    assert report["prior"] == pytest.approx(0.25, abs=0.03) and report["atoms_image"] == "atoms.png"
    learned = np.load(tmp_path / "bsc" / "atoms.npy")
    assert learned.shape == (8, 16) and np.load(tmp_path / "bsc" / "codes.npy").shape == (600, 8)
    assert np.abs(np.corrcoef(np.vstack([W, learned]))[:8, 8:]).max(1).min() > 0.95
    assert (tmp_path / "bsc" / "atoms.png").stat().st_size > 0
    options = ["--atoms", "8", "--penalty", "l0", "--alpha", "2", "--out", str(tmp_path / "dl"), "--json"]
    code, out, _ = run(capsys, "fit", str(tmp_path / "bars.npy"), "--method", "dictionary", *options)
    assert code == 0
    report = json.loads(out)
    codes, atoms = np.load(tmp_path / "dl" / "codes.npy"), np.load(tmp_path / "dl" / "atoms.npy")
    residual = X - codes @ atoms
    assert report["relative_squared_error"] == pytest.approx(float((residual**2).sum() / (X**2).sum()))
    assert report["penalty"] == "l0" and report["mean_active_per_sample"] == pytest.approx(
        (codes != 0).sum(1).mean()
    )
    np.testing.assert_allclose(np.linalg.norm(atoms, axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--method", "dictionary"], "--method dictionary needs --atoms"),
        (["--method", "dictionary", "--atoms", "3", "--penalty", "l3"], "--penalty must be one of"),
        (["--method", "dictionary", "--atoms", "3", "--nonzeros", "2"], "--nonzeros is for --penalty omp"),
        (
            ["--method", "dictionary", "--atoms", "3", "--penalty", "omp", "--alpha", "0.5"],
            "--alpha does not apply to --penalty omp",
        ),
        (["--method", "bsc", "--atoms", "3", "--penalty", "l0"], "--penalty does not apply to --method bsc"),
        (["--method", "nmf", "--rank", "2", "--atoms", "3"], "--atoms does not apply to --method nmf"),
        (["--method", "dictionary", "--atoms", "0"], "expected an integer >= 1"),
    ],
)
def test_fit_sparse_coding_usage_errors(capsys, tmp_path, arguments, message):
    import numpy as np

    np.save(tmp_path / "x.npy", np.ones((10, 4)))
    code, _, err = run(capsys, "fit", str(tmp_path / "x.npy"), *arguments, "--out", str(tmp_path / "o"))
    assert code == 2 and message in err
