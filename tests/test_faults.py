"""Fault injection: each case a hostile but realistic user tried (issue 17), and what it must get.

The Reliability table (docs/guide/reliability.md) lists these cases; every row there is a test here.
"""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from factorkit.cli import main
from factorkit.experiments import StudyConfig, load_rows, run_study
from factorkit.experiments.report import write_tables
from factorkit.experiments.summary import study_rows

TINY = {
    "name": "tiny",
    "seeds": 2,
    "problem": {"m": 4, "m2": 4, "n": 8},
    "grid": {"width": [4], "depth": [2], "method": ["gd"]},
    "gd": {"lr": 1e-2, "steps": 100},
}


def cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argument errors end in argparse's exit(2)
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# 1. one folder, one config ------------------------------------------------------------------------


def test_a_changed_setting_into_the_same_folder_is_refused_and_names_what_changed(tmp_path):
    run_study(StudyConfig.from_dict(TINY), tmp_path, workers=1, progress=False)
    stored = (tmp_path / "study.json").read_text()
    changed = StudyConfig.from_dict({**TINY, "gd": {**TINY["gd"], "steps": 30}})
    with pytest.raises(ValueError, match=r"gd\.steps: 100 -> 30.*its own folder \(out=\)"):
        run_study(changed, tmp_path, workers=1, progress=False)
    assert (tmp_path / "study.json").read_text() == stored  # the folder still describes its data
    assert len(load_rows(tmp_path)) == 2


def test_growing_a_study_is_the_same_study(tmp_path):
    run_study(StudyConfig.from_dict(TINY), tmp_path, workers=1, progress=False)
    grown = StudyConfig.from_dict({**TINY, "seeds": 3, "grid": {**TINY["grid"], "width": [4, 8]}})
    counts = run_study(grown, tmp_path, workers=1, progress=False)
    assert counts["skipped"] == 2 and counts["written"] == 4


def test_tables_show_only_the_folders_config(tmp_path):
    """Rows of another config in the same store (here: written under another study.json) are not
    pooled into the tables."""
    run_study(StudyConfig.from_dict(TINY), tmp_path, workers=1, progress=False)
    other = StudyConfig.from_dict({**TINY, "gd": {**TINY["gd"], "steps": 30}})
    (tmp_path / "study.json").unlink()
    run_study(other, tmp_path, workers=1, progress=False)
    assert len(load_rows(tmp_path)) == 4
    rows = study_rows(tmp_path)
    assert len(rows) == 2 and {json.loads(r["settings"])["steps"] for r in rows} == {30}
    write_tables(tmp_path)
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert summary[1].split(",")[summary[0].split(",").index("seeds")] == "2"


def test_repeated_seeds_and_path_names_are_refused():
    with pytest.raises(ValueError, match=r"seeds must be distinct .*repeated: \[0\]"):
        StudyConfig.from_dict({**TINY, "seeds": [0, 0]})
    with pytest.raises(ValueError, match="name must be a plain name, not a path"):
        StudyConfig.from_dict({**TINY, "name": "/etc/x"})


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    code, _, err = cli(capsys, "study", "width", "--scale", "smoke", "--out", str(target), "--no-plot")
    assert code == 2 and err.count("\n") == 1 and "is a file, not a folder" in err
    assert target.read_text() == "x"


def test_old_study_json_is_read_with_the_settings_its_version_used(tmp_path):
    """A study.json from before fan-out scaling was the default describes fan-in runs."""
    config = StudyConfig.from_dict(
        {**TINY, "grid": {**TINY["grid"], "method": ["gc"]}, "gc": {"draws": 1000}}
    )
    raw = config.to_dict()
    del raw["gc"]["layer_scaling"]
    stored = StudyConfig.from_stored(raw)
    assert stored.gc["layer_scaling"] == "fan_in"
    assert stored.differences(config) == ["gc.layer_scaling: 'fan_in' -> 'fan_out'"]


def test_damaged_store_is_refused_and_never_overwritten(tmp_path, capsys):
    store = tmp_path / "results.sqlite"
    store.write_bytes(b"this is not a database" * 100)
    before = store.read_bytes()
    code, _, err = cli(capsys, "study", "width", "--scale", "smoke", "--out", str(tmp_path), "--no-plot")
    assert code == 1 and err.count("\n") == 1
    assert "damaged" in err and "move it aside" in err
    assert store.read_bytes() == before
    code, _, err = cli(capsys, "plot", str(tmp_path))
    assert code == 1 and "damaged" in err


def test_truncated_store_is_refused(tmp_path, capsys):
    run_study(StudyConfig.from_dict(TINY), tmp_path, workers=1, progress=False)
    store = tmp_path / "results.sqlite"
    store.write_bytes(store.read_bytes()[:1500])
    with pytest.raises(sqlite3.DatabaseError):
        load_rows(tmp_path)
    code, _, err = cli(capsys, "plot", str(tmp_path))
    assert code == 1 and "damaged" in err


# 3. signals: SIGTERM shuts down like Ctrl-C, workers die with their parent -------------------------

SIGNAL_STUDY = """
name = "signals"
seeds = 4
[problem]
m = 4
m2 = 4
n = 8
[grid]
width = [4, 8, 16]
depth = [2]
method = ["gc"]
[gc]
eps = 0.2
draws = 400000
"""


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry))
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except OSError:
            pass
    return alive


def _start_study(config: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "factorkit.cli", "study", str(config), "--out", str(out), "--workers", "2",
         "--no-plot"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for_rows(out: Path, process: subprocess.Popen, count: int = 1, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with sqlite3.connect(out / "results.sqlite", timeout=1) as db:
                if db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] >= count:
                    return
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    raise AssertionError("the study wrote no row in time")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_a_study_cleanly_and_a_rerun_equals_a_clean_run(tmp_path):
    config = tmp_path / "signals.toml"
    config.write_text(SIGNAL_STUDY)
    out, clean = tmp_path / "out", tmp_path / "clean"
    process = _start_study(config, out)
    _wait_for_rows(out, process)
    workers = _children(process.pid)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err
    deadline = time.monotonic() + 10
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(workers), "worker processes outlived the study"
    assert 1 <= len(load_rows(out)) < 12
    rerun = _start_study(config, out)
    assert rerun.wait(timeout=300) == 0
    run_study(StudyConfig.from_toml(config), clean, workers=1, progress=False)
    fields = ("key", "status", "accepted", "evaluations", "gen_loss", "prior_gen_loss")
    resumed = sorted(tuple(r[f] for f in fields) for r in load_rows(out))
    assert resumed == sorted(tuple(r[f] for f in fields) for r in load_rows(clean))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_the_study_process_is_killed(tmp_path):
    config = tmp_path / "signals.toml"
    config.write_text(SIGNAL_STUDY)
    process = _start_study(config, tmp_path / "out")
    _wait_for_rows(tmp_path / "out", process)
    workers = _children(process.pid)
    assert workers, "the study runs in a pool of worker processes"
    process.kill()
    process.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(workers), "worker processes outlived a SIGKILLed study"


# 4. runtime failures: one line, exit 1; the output checked before computing ------------------------


def test_fit_checks_its_output_folder_before_computing(tmp_path, capsys):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).random((20, 10)))
    target = tmp_path / "file"
    target.write_text("x")
    code, _, err = cli(capsys, "fit", str(data), "--method", "nmf", "--rank", "2", "--out", str(target))
    assert code == 2 and "is a file, not a folder" in err and err.count("\n") == 1
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    if os.access(readonly, os.W_OK):  # root writes anywhere: nothing to test
        return
    code, _, err = cli(
        capsys, "fit", str(data), "--method", "nmf", "--rank", "2", "--out", str(readonly / "o")
    )
    assert code == 1 and "Permission denied" in err and err.count("\n") == 1


def test_embed_checks_its_output_folder_before_counting(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b c\n" * 10)
    target = tmp_path / "file"
    target.write_text("x")
    code, _, err = cli(capsys, "embed", str(corpus), "--dim", "2", "--min-count", "1", "--out", str(target))
    assert code == 2 and "is a file, not a folder" in err


@pytest.mark.parametrize(
    ("argv", "code", "match"),
    [
        (["sample", "--device", "meta"], 2, "device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got 'meta'"),
        (
            ["sample", "--seed", "99999999999999999999"],
            2,
            "argument --seed: expected an integer in \\[0, 2\\^63\\)",
        ),
        (["train", "--lr", "1e10", "--steps", "50"], 1, "training diverged"),
    ],
)
def test_cli_runtime_and_usage_errors_are_one_line(capsys, argv, code, match):
    got, _, err = cli(capsys, *argv)
    assert got == code and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(match, err)


def test_data_file_errors_name_the_file(tmp_path, capsys):
    garbage = tmp_path / "g.npy"
    garbage.write_bytes(os.urandom(300))
    out = str(tmp_path / "o")
    # a missing file or a directory is a runtime failure (exit 1), an unreadable one bad input (exit 2)
    for path, match, status in [
        (tmp_path, "is a directory; expected a matrix file", 1),
        (garbage, f"data file '{garbage}' could not be read as .npy", 2),
        (tmp_path / "missing.npy", "does not exist", 1),
    ]:
        code, _, err = cli(capsys, "fit", str(path), "--method", "nmf", "--rank", "2", "--out", out)
        assert code == status and match in err and err.count("\n") == 1
    broken = tmp_path / "b.npz"
    broken.write_bytes(b"PK\x03\x04" + os.urandom(100))
    code, _, err = cli(capsys, "fit", str(broken), "--method", "nmf", "--rank", "2", "--out", out)
    assert code == 2 and str(broken) in err


# 5. silent wrong results: refused, or a loud status and strict JSON --------------------------------


def test_diverged_training_prints_strict_json_with_a_status(capsys):
    code, out, _ = cli(capsys, "train", "--lr", "1e10", "--steps", "400", "--json")
    assert code == 1
    result = json.loads(out, parse_constant=lambda name: pytest.fail(f"bare {name} in JSON"))
    assert result["status"] == "diverged"


def test_sample_with_no_acceptance_says_so_in_strict_json(capsys):
    code, out, _ = cli(capsys, "sample", "--eps", "1e-9", "--draws", "1000", "--json")
    assert code == 0
    result = json.loads(out, parse_constant=lambda name: pytest.fail(f"bare {name} in JSON"))
    assert result["status"] == "none_accepted" and result["gen_loss"] is None


def test_ignored_method_options_are_refused(tmp_path, capsys):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).random((20, 10)))
    out = str(tmp_path / "o")
    for extra, flag in [
        (["--row-covariates", str(data)], "--row-covariates"),
        (["--prior", "point_laplace"], "--prior"),
        (["--n-init", "3"], "--n-init"),
    ]:
        code, _, err = cli(capsys, "fit", str(data), "--method", "nmf", "--rank", "2", "--out", out, *extra)
        assert code == 2 and f"{flag} does not apply to --method nmf" in err
    code, _, err = cli(
        capsys, "fit", str(data), "--method", "boolean", "--rank", "2", "--out", out, "--solver", "mu"
    )
    assert code == 2 and "--solver does not apply to --method boolean" in err
    code, _, err = cli(
        capsys, "fit", str(data), "--method", "ebmf", "--rank", "2", "--out", out, "--covariate-model", "mlp"
    )
    assert code == 2 and "--covariate-model needs --row-covariates" in err


def test_api_refusals_instead_of_silent_coercion():
    from factorkit.fit.auto import sample_posterior
    from factorkit.fit.gd import train_gd
    from factorkit.methods.ebmf import EBMF, CovariateEBMF
    from factorkit.methods.embeddings import QWEM
    from factorkit.methods.nmf import NMF
    from factorkit.models import DeepFactorization
    from factorkit.problems import make_sensing_problem

    X = np.random.default_rng(0).normal(size=(20, 10))
    with pytest.raises(ValueError, match="Complex data not supported"):
        EBMF(2).fit(X + 1j)
    with pytest.raises(TypeError, match="row_covariates must hold real numbers"):
        CovariateEBMF(2).fit(X, row_covariates=np.ones((20, 1)) + 1j)
    with pytest.raises(ValueError, match="mask must be boolean"):
        EBMF(2).fit(X, mask=np.full(X.shape, 0.5))
    with pytest.raises(TypeError, match="corpus sentence 0 must be a str or a list of str tokens, got bytes"):
        QWEM(5, min_count=1).fit([b"abc def", b"def abc"])
    with pytest.raises(TypeError, match="got bytes"):
        QWEM(5, min_count=1).fit(b"abc def")
    with pytest.raises(TypeError, match="seeds must be an int or a sequence of ints, got float 2.5"):
        train_gd(make_sensing_problem(), DeepFactorization(5, 5, 5, 2), seeds=2.5)
    with pytest.raises(ValueError, match="Found array with 0 sample\\(s\\) \\(shape=\\(0, 4\\)\\)"):
        NMF(2).fit(np.zeros((0, 4)))
    # booleans are 0/1 data, as BooleanMF takes them: NMF factors them exactly as the 0/1 floats
    B = np.random.default_rng(1).random((12, 8)) < 0.4
    torch_equal = np.testing.assert_allclose
    torch_equal(
        NMF(2, random_state=0).fit_transform(B), NMF(2, random_state=0).fit_transform(B.astype(float))
    )
    # SMC's interval for V(eps) contains its estimate
    result = sample_posterior(
        make_sensing_problem(dtype="float64"), DeepFactorization(5, 5, 5, 2), eps=0.05, sampler="smc",
        n_particles=300, runs=2, prior="gaussian",
    )  # fmt: skip
    low, high = result.acceptance_interval()
    assert low < result.acceptance_rate < high


def test_optimizer_options_reach_plain_gd():
    """``optimizer='gd'`` with options was silently plain GD; momentum now changes the trajectory and
    an unknown option is refused."""
    from factorkit.fit.gd import train_gd
    from factorkit.models import DeepFactorization
    from factorkit.problems import make_sensing_problem

    problem, model = make_sensing_problem(dtype="float64"), DeepFactorization(5, 5, 5, 2)
    plain = train_gd(problem, model, lr=0.1, max_steps=50, progress=False)
    heavy = train_gd(
        problem, model, lr=0.1, max_steps=50, progress=False, optimizer_options={"momentum": 0.9}
    )
    assert not np.allclose(plain.W.numpy(), heavy.W.numpy())
    with pytest.raises(ValueError, match="optimizer_options .* not accepted by 'gd'"):
        train_gd(problem, model, max_steps=5, progress=False, optimizer_options={"momentun": 0.9})


# 2. memory: refused up front with the estimate, or bounded -----------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "--width", "2000000", "--activation", "tanh", "--draws", "1000"],
        ["sample", "--sampler", "smc", "--particles", "100000000"],
        ["sample", "--draws", "1000", "--max-memory", "1M"],
    ],
)
def test_oversized_work_is_refused_before_allocating(capsys, argv):
    code, _, err = cli(capsys, *argv)
    assert code == 1 and err.count("\n") == 1
    assert re.search(r"needs about [0-9.]+ [KMGT]?B, more than the [0-9.]+ [KMGT]?B", err)
    assert "--max-memory" in err


def test_max_memory_parses_sizes_and_refuses_nonsense(capsys, monkeypatch):
    from factorkit._memory import parse_size

    assert parse_size("8G") == 8 * 2**30 and parse_size("1.5k") == 1536 and parse_size("100") == 100
    monkeypatch.delenv("FACTORKIT_MAX_MEMORY", raising=False)
    code, _, err = cli(capsys, "sample", "--max-memory", "lots")
    assert code == 2 and "argument --max-memory" in err


def test_ebmf_of_a_huge_sparse_file_is_refused_and_nmf_fits_it_sparse(tmp_path, capsys):
    import scipy.sparse

    rng = np.random.default_rng(0)  # (scipy.sparse.random would permute all 2.5e9 positions: 20 GB)
    X = scipy.sparse.coo_matrix(
        (rng.random(200), (rng.integers(0, 50_000, 200), rng.integers(0, 50_000, 200))),
        shape=(50_000, 50_000),
    ).tocsr()
    path = tmp_path / "big.npz"
    scipy.sparse.save_npz(path, X)
    code, _, err = cli(
        capsys, "fit", str(path), "--method", "ebmf", "--rank", "2", "--out", str(tmp_path / "e")
    )
    assert code == 1 and "EBMF of a 50000 x 50000 matrix" in err and "needs about" in err
    code, out, _ = cli(
        capsys,
        "fit",
        str(path),
        "--method",
        "nmf",
        "--rank",
        "2",
        "--max-iter",
        "5",
        "--out",
        str(tmp_path / "n"),
    )
    assert code == 0 and np.load(tmp_path / "n" / "W.npy").shape == (50_000, 2)


def test_a_huge_window_costs_nothing(tmp_path):
    from factorkit.methods.embeddings import QWEM

    corpus = [["a", "b", "c", "d"], ["b", "c", "a"]] * 20
    small = QWEM(2, window=5, min_count=1).fit(corpus)
    huge = QWEM(2, window=10**9, min_count=1, weighting="uniform").fit(corpus)
    uniform = QWEM(2, window=5, min_count=1, weighting="uniform").fit(corpus)
    # every pair of these sentences is within distance 3: a window of 1e9 counts what 5 counts
    np.testing.assert_allclose(
        huge.statistics_.cooccurrence.toarray(), uniform.statistics_.cooccurrence.toarray()
    )
    assert small.statistics_.cooccurrence.nnz == huge.statistics_.cooccurrence.nnz


def test_accepted_draws_are_kept_up_to_a_bound_with_exact_sums():
    import torch

    from factorkit.fit.guess_check import combine_results, guess_and_check
    from factorkit.models import DeepFactorization
    from factorkit.problems import make_sensing_problem

    problem, model = make_sensing_problem(4, 4, n=8, seed=1, dtype="float64"), DeepFactorization(4, 4, 4, 2)
    full = guess_and_check(problem, model, eps=0.5, max_evaluations=40_000, chunk_size=4096, seed=3)
    capped = guess_and_check(
        problem, model, eps=0.5, max_evaluations=40_000, chunk_size=4096, seed=3, max_kept=1000
    )
    assert full.accepted == capped.accepted > 1000 and capped.kept == 1000
    assert capped.accepted_W.shape[0] == 1000
    # the kept sample is the first 1000 acceptances; mean, interval and L_train use every one
    torch.testing.assert_close(capped.accepted_gen_loss, full.accepted_gen_loss[:1000])
    assert capped.gen_loss_mean == pytest.approx(full.gen_loss_mean, rel=1e-12)
    assert capped.gen_loss_interval() == pytest.approx(full.gen_loss_interval(), rel=1e-9)
    assert capped.summary()["train_loss"] == pytest.approx(full.summary()["train_loss"], rel=1e-12)
    # shards merge to the same capped run
    parts = [
        guess_and_check(problem, model, eps=0.5, max_evaluations=n, chunk_size=4096, seed=3, first_chunk=c,
                        max_kept=1000)
        for n, c in ((8192, 0), (16384, 2), (40_000 - 24576, 6))
    ]  # fmt: skip
    merged = combine_results(parts)
    torch.testing.assert_close(merged.accepted_gen_loss, capped.accepted_gen_loss)
    assert merged.gen_loss_mean == pytest.approx(capped.gen_loss_mean, rel=1e-12)


def test_a_second_study_on_a_busy_folder_is_refused(tmp_path):
    import fcntl

    tmp_path.mkdir(exist_ok=True)
    with (tmp_path / ".lock").open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write("4242")
        handle.flush()
        with pytest.raises(RuntimeError, match="another study is running in .* \\(pid 4242\\)"):
            run_study(StudyConfig.from_dict(TINY), tmp_path, workers=1, progress=False)
    assert not (tmp_path / "results.sqlite").exists()
    run_study(StudyConfig.from_dict(TINY), tmp_path, workers=1, progress=False)  # free again
    assert len(load_rows(tmp_path)) == 2


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("method", ["nmf", "ebmf"])
def test_a_fit_that_overflows_fails_loudly(tmp_path, capsys, method):
    data = tmp_path / "huge.npy"
    np.save(data, np.random.default_rng(0).random((30, 20)) * 1e300)
    out = tmp_path / "o"
    code, _, err = cli(capsys, "fit", str(data), "--method", method, "--rank", "2", "--out", str(out))
    assert code == 1 and f"the {method} fit diverged" in err
    assert not (out / "report.json").exists()


def test_config_chunk_size_is_checked_before_running():
    with pytest.raises(TypeError, match="gc.chunk_size must be an integer"):
        StudyConfig.from_dict({**TINY, "gc": {"chunk_size": 2.5}})
