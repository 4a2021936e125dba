"""Studies split into shards and run on Dask: same rows as the local executor, resumable after faults."""

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch

from factorkit.experiments import StudyConfig, load_rows, run_study
from factorkit.experiments.run import plan
from factorkit.fit.guess_check import combine_results, guess_and_check
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem

GC_ONLY = {
    "name": "shards",
    "seeds": 2,
    "problem": {"m": 4, "m2": 4, "n": 8},
    "grid": {"width": [4, 12], "depth": [2], "method": ["gc"]},
    "gc": {"eps": 0.15, "draws": 60_000, "chunk_size": 2000, "min_accepted": 1},
}
MIXED = {
    **GC_ONLY,
    "grid": {**GC_ONLY["grid"], "method": ["gd", "gc"]},
    "gd": {"lr": 1e-2, "steps": 200},
}
TIMING = {"wall_time", "finished_at"}


def rows_by_key(directory):
    return {row["key"]: row for row in load_rows(directory)}


def assert_same_rows(reference, other):
    assert reference.keys() == other.keys()
    for key, row in reference.items():
        for column, value in row.items():
            if column in TIMING:
                continue
            if column == "prior_gen_loss" and value is not None:
                # sums of every draw's L_gen, added in another order: equal to rounding
                assert other[key][column] == pytest.approx(value, rel=1e-12), (key, column)
            else:
                assert other[key][column] == value, (key, column)


@pytest.mark.parametrize("cuts", [[5], [1, 2, 3], [7, 8], [2, 4, 6, 8, 10]])
def test_runs_over_chunk_ranges_combine_to_the_whole_run(cuts):
    problem = make_sensing_problem(4, 4, rank=1, n=8, seed=3)
    model = DeepFactorization(4, 4, 6, 3, "tanh")
    options = {"eps": 0.2, "chunk_size": 1000, "seed": 17, "keep_samples": True, "progress": False}
    draws = 10_500  # the last chunk is a partial one
    whole = guess_and_check(problem, model, max_evaluations=draws, **options)
    bounds = [0, *cuts, math.ceil(draws / 1000)]
    parts = [
        guess_and_check(
            problem,
            model,
            max_evaluations=min((end - start) * 1000, draws - start * 1000),
            first_chunk=start,
            **options,
        )
        for start, end in zip(bounds, bounds[1:], strict=False)
    ]
    merged = combine_results(parts)
    assert whole.accepted > 100
    assert (merged.accepted, merged.evaluations) == (whole.accepted, whole.evaluations)
    assert torch.equal(merged.accepted_W, whole.accepted_W)  # the very same draws, in order
    assert merged.gen_loss_mean == whole.gen_loss_mean
    assert merged.gen_loss_interval() == whole.gen_loss_interval()
    assert merged.summary()["gen_loss_median"] == whole.summary()["gen_loss_median"]
    assert merged.prior_gen_loss_mean == pytest.approx(whole.prior_gen_loss_mean, rel=1e-12)


def test_combine_results_refuses_pieces_of_different_runs():
    problem = make_sensing_problem(4, 4, rank=1, n=8, seed=3)
    model = DeepFactorization(4, 4, 4, 2)
    run = {"eps": 0.3, "chunk_size": 500, "seed": 1, "progress": False}
    first = guess_and_check(problem, model, max_evaluations=1000, **run)
    gap = guess_and_check(problem, model, max_evaluations=1000, first_chunk=3, **run)
    with pytest.raises(ValueError, match="not consecutive"):
        combine_results([first, gap])
    other_eps = guess_and_check(problem, model, max_evaluations=1000, first_chunk=2, **{**run, "eps": 0.4})
    with pytest.raises(ValueError, match="differ in eps"):
        combine_results([first, other_eps])
    early = guess_and_check(problem, model, max_evaluations=1000, n_samples=1, **run)
    with pytest.raises(ValueError, match="without n_samples"):
        combine_results([early])
    partial = guess_and_check(problem, model, max_evaluations=700, **run)
    after = guess_and_check(problem, model, max_evaluations=500, first_chunk=2, **run)
    with pytest.raises(ValueError, match="whole chunks"):
        combine_results([partial, after])
    with pytest.raises(ValueError, match="at least one"):
        combine_results([])
    with pytest.raises(ValueError, match="integer seed"):
        guess_and_check(problem, model, max_evaluations=10, first_chunk=1, seed=torch.Generator(), eps=1.0)


def test_plan_splits_rejection_runs_into_whole_chunks():
    config = StudyConfig.from_dict(MIXED)
    jobs = plan(config, set(), shard_draws=25_000)
    shards = [j for j in jobs if j.shard is not None]
    # GD cells are never split; its two widths train as one zero-padded batch
    (gd,) = [j for j in jobs if j.cell.method == "gd"]
    assert gd.runs == 4 and len(gd.others) == 1
    # 60 000 draws in chunks of 2 000, 12 chunks (24 000 draws) per shard: 3 shards per run
    assert len(shards) == 4 * 3
    for job in shards:
        assert job.shards == 3 and job.first_chunk == 12 * job.shard
        assert job.draws == (24_000 if job.shard < 2 else 12_000)
    assert plan(config, set(), shard_draws=10**6) == plan(config, set())  # large shards: no split


def test_sharded_study_gives_exactly_the_unsharded_rows(tmp_path):
    config = StudyConfig.from_dict(MIXED)
    run_study(config, tmp_path / "whole", workers=1, progress=False)
    counts = run_study(config, tmp_path / "sharded", workers=2, shard_draws=10_000, progress=False)
    assert counts["written"] == 8 and counts["shards_run"] == 4 * 6
    assert_same_rows(rows_by_key(tmp_path / "whole"), rows_by_key(tmp_path / "sharded"))
    again = run_study(config, tmp_path / "sharded", workers=2, shard_draws=10_000, progress=False)
    assert again["written"] == 0 and again["shards_run"] == 0


def test_interrupted_sharded_run_resumes_from_its_stored_shards(tmp_path):
    config = StudyConfig.from_dict(GC_ONLY)
    events = []

    def stop_after_five(kind, key):
        events.append(kind)
        if events.count("shard") == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(config, tmp_path, workers=1, shard_draws=10_000, progress=False, callback=stop_after_five)
    # a rerun with another shard size keeps the stored layout of the run it resumes
    counts = run_study(config, tmp_path, workers=1, shard_draws=30_000, progress=False)
    assert counts["shards_skipped"] == 5
    assert counts["written"] == 4
    # 4 runs x 6 shards of 10 000 draws; the untouched runs get the new layout (2 shards each)
    assert counts["shards_run"] == (6 - 5) + 3 * 2
    run_study(config, tmp_path / "reference", workers=1, progress=False)
    assert_same_rows(rows_by_key(tmp_path / "reference"), rows_by_key(tmp_path))


def test_run_with_every_shard_stored_but_no_row_is_merged_on_rerun(tmp_path):
    config = StudyConfig.from_dict(GC_ONLY)
    run_study(config, tmp_path, workers=1, shard_draws=20_000, progress=False)
    reference = rows_by_key(tmp_path)
    key = next(iter(reference))
    with sqlite3.connect(tmp_path / "results.sqlite") as db:  # stopped between the two commits
        db.execute("DELETE FROM runs WHERE key = ?", (key,))
    counts = run_study(config, tmp_path, workers=1, shard_draws=20_000, progress=False)
    assert (counts["written"], counts["shards_run"], counts["skipped"]) == (1, 0, 3)
    assert_same_rows(reference, rows_by_key(tmp_path))


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster)
    yield cluster, client
    client.close()
    cluster.close()


def test_dask_cluster_gives_exactly_the_local_rows(tmp_path, dask_cluster):
    cluster, client = dask_cluster
    config = StudyConfig.from_dict(MIXED)
    run_study(config, tmp_path / "local", workers=1, progress=False)
    counts = run_study(
        config, tmp_path / "dask", executor="dask", scheduler=cluster.scheduler_address, progress=False
    )
    # draws below the default shard size (2^22): one task per G&C run
    assert counts["written"] == 8 and counts["shards_run"] == 0
    assert_same_rows(rows_by_key(tmp_path / "local"), rows_by_key(tmp_path / "dask"))
    sharded = run_study(
        config,
        tmp_path / "dask_sharded",
        executor="dask",
        scheduler=client,
        shard_draws=20_000,
        progress=False,
    )
    assert sharded["shards_run"] == 4 * 3
    assert_same_rows(rows_by_key(tmp_path / "local"), rows_by_key(tmp_path / "dask_sharded"))


def test_study_survives_a_worker_killed_mid_study(tmp_path, dask_cluster):
    cluster, client = dask_cluster
    config = StudyConfig.from_dict({**GC_ONLY, "gc": {**GC_ONLY["gc"], "draws": 400_000}})
    pids_before = set(client.run(os.getpid).values())
    killed = []

    def kill_a_busy_worker(kind, key):
        if killed:
            return
        busy = [address for address, tasks in client.processing().items() if tasks]
        if busy:
            pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    counts = run_study(
        config,
        tmp_path / "dask",
        executor="dask",
        scheduler=client,
        shard_draws=20_000,
        progress=False,
        callback=kill_a_busy_worker,
    )
    assert killed and killed[0] in pids_before
    assert counts["written"] == 4 and counts["shards_run"] == 4 * 20
    client.wait_for_workers(2, timeout=60)
    assert killed[0] not in set(client.run(os.getpid).values())  # the nanny started a new worker
    run_study(config, tmp_path / "local", workers=2, progress=False)
    assert_same_rows(rows_by_key(tmp_path / "local"), rows_by_key(tmp_path / "dask"))


def test_killed_coordinator_loses_only_unfinished_shards(tmp_path):
    config = {**GC_ONLY, "seeds": 1, "gc": {**GC_ONLY["gc"], "draws": 400_000}}
    toml = tmp_path / "study.toml"
    toml.write_text(
        'name = "shards"\nseeds = 1\n[problem]\nm = 4\nm2 = 4\nn = 8\n'
        '[grid]\nwidth = [4, 12]\ndepth = [2]\nmethod = ["gc"]\n'
        "[gc]\neps = 0.15\ndraws = 400000\nchunk_size = 2000\nmin_accepted = 1\n"
    )
    out = tmp_path / "run"
    command = [sys.executable, "-m", "factorkit", "study", str(toml), "--out", str(out)]
    command += ["--workers", "1", "--shard-draws", "20000", "--no-plot"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    database = out / "results.sqlite"
    deadline = time.monotonic() + 120
    stored = 0
    while stored < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
        if database.is_file():
            try:
                with sqlite3.connect(database) as db:
                    stored = db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
            except sqlite3.OperationalError:  # the tables are not created yet
                pass
    process.send_signal(signal.SIGKILL)  # no clean-up of any kind
    process.wait()
    assert stored >= 3, process.stderr.read().decode()
    with sqlite3.connect(database) as db:
        done = db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
        finished_runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert finished_runs < 2 and done < 2 * 20  # killed mid-study
    counts = run_study(StudyConfig.from_dict(config), out, workers=1, shard_draws=20_000, progress=False)
    assert counts["skipped"] == finished_runs
    assert counts["shards_skipped"] == done - 20 * finished_runs
    assert counts["shards_run"] == 2 * 20 - done  # every stored shard is kept, none is recomputed
    run_study(StudyConfig.from_dict(config), tmp_path / "reference", workers=1, progress=False)
    assert_same_rows(rows_by_key(tmp_path / "reference"), rows_by_key(out))


def test_executor_options_are_checked(tmp_path):
    config = StudyConfig.from_dict(GC_ONLY)
    with pytest.raises(ValueError, match="executor must be one of"):
        run_study(config, tmp_path, executor="ray")
    with pytest.raises(ValueError, match="exactly one of scheduler"):
        run_study(config, tmp_path, executor="dask")
    with pytest.raises(ValueError, match="executor='dask' only"):
        run_study(config, tmp_path, dask_local=2)
    with pytest.raises(ValueError, match="shard_draws"):
        run_study(config, tmp_path, shard_draws=0)


def test_cli_starts_its_own_local_dask_cluster(tmp_path, capsys):
    from factorkit.cli import main

    toml = tmp_path / "study.toml"
    toml.write_text(
        'name = "shards"\nseeds = 1\n[problem]\nm = 4\nm2 = 4\nn = 8\n'
        '[grid]\nwidth = [4]\ndepth = [2]\nmethod = ["gc", "gd"]\n'
        "[gc]\neps = 0.15\ndraws = 60000\nchunk_size = 2000\nmin_accepted = 1\n[gd]\nsteps = 100\n"
    )
    argv = ["study", str(toml), "--out", str(tmp_path / "dask"), "--no-plot"]
    assert main([*argv, "--executor", "dask", "--dask-local", "2", "--shard-draws", "20000"]) == 0
    assert "2 runs written, 3 shards run" in capsys.readouterr().out
    main(["study", str(toml), "--out", str(tmp_path / "local"), "--no-plot", "--workers", "1"])
    assert_same_rows(rows_by_key(tmp_path / "local"), rows_by_key(tmp_path / "dask"))
