"""Run studies: cells x seeds -> rows in each study's results store, resumable, locally or on Dask.

A G&C job is one (cell, seed), or, with ``shard_draws``, one shard of it: a range of whole chunks
of its candidate stream whose partial sums are stored as they finish and merged exactly once every
shard is in. A GD job is one group of cells with all their unfinished seeds, trained as one batched
population. Jobs run inline, in a local process pool or as Dask tasks; only this coordinator writes
the SQLite stores. :func:`run_studies` is a sequence of named steps: open the folders, deliver the
rows one folder holds and another needs, merge stored shards, plan, dispatch.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from factorkit._progress import progress as progress_reporter
from factorkit._validation import check_int, resolve_device
from factorkit.experiments.config import Cell
from factorkit.experiments.run.executors import dask_results, executor_options, local_results
from factorkit.experiments.run.folders import (
    all_shards,
    claim_folder,
    folder_lock,
    prepare_folders,
    stored_layout,
)
from factorkit.experiments.run.jobs import merge_shards
from factorkit.experiments.run.plan import plan_cells
from factorkit.experiments.store import ResultStore

# off a terminal, a study writes a line as runs finish, at most one per this many seconds
STUDY_LINE_EVERY = 5.0


def run_study(config, out: str | Path, **options) -> dict:
    """Run every unfinished (cell, seed) of ``config``, writing rows to ``out/results.sqlite``.

    Re-running the same study in the same directory skips finished rows (and finished shards).
    ``options`` are :func:`run_studies`'; returns its counts for this study.
    """
    return run_studies([(config, out)], **options)[0]


class _Delivery:
    """Each study's store, its finished keys and counts; a row goes to every study that needs it."""

    def __init__(self, studies, stores):
        self.studies, self.stores = studies, stores
        self.finished = [store.finished_keys() for store in stores]
        self.params_of, self.wanted = {}, []  # every run's cell parameters; per study: its run keys
        for config, _ in studies:
            keys = {cell.key(seed): cell.params for cell in config.cells() for seed in config.seeds}
            self.params_of.update(keys)
            self.wanted.append(set(keys))
        self.counts = [
            {"runs_total": len(keys), "skipped": len(done & keys), "written": 0, "reused": 0, "shared": 0,
             "shards_run": 0, "shards_skipped": 0}
            for keys, done in zip(self.wanted, self.finished, strict=True)
        ]  # fmt: skip

    def deliver(self, row: dict, reused: bool = False) -> None:
        targets = [
            i
            for i, keys in enumerate(self.wanted)
            if row["key"] in keys and row["key"] not in self.finished[i]
        ]
        for index in targets:
            self.stores[index].write({**row, "study": self.studies[index][0].name})
            self.finished[index].add(row["key"])
            self.counts[index]["reused" if reused else "written"] += 1
            if len(targets) > 1 and not reused:
                self.counts[index]["shared"] += 1

    def copy_between_folders(self) -> None:
        """Rows one folder holds and another needs: copied, not recomputed."""
        missing = set().union(*(keys - done for keys, done in zip(self.wanted, self.finished, strict=True)))
        for store, done in zip(self.stores, self.finished, strict=True):
            for row in store.rows() if missing & done else ():
                if row["key"] in missing:
                    self.deliver({k: v for k, v in row.items() if k not in ("versions", "finished_at")}, True)

    def home_of(self, key: str) -> int:
        return next(i for i, keys in enumerate(self.wanted) if key in keys)


class _Shards:
    """Shards stored for runs no folder has finished, and where each run's shards are stored."""

    def __init__(self, delivery: _Delivery):
        self.delivery = delivery
        done_anywhere = set().union(*delivery.finished)
        self.stored: dict[str, dict[int, dict]] = {}
        self.home: dict[str, int] = {}  # the store a sharded run's shards go to: the first that needs it
        for index, store in enumerate(delivery.stores):
            for key, payloads in store.shard_payloads().items():
                if key in done_anywhere or key not in delivery.wanted[index]:
                    continue
                self.stored.setdefault(key, {}).update(payloads)
                self.home.setdefault(key, index)
        # a run whose every shard is stored but whose row is not (the coordinator stopped between
        # the two commits) is merged now: no job would ever finish it
        self.merged = {key for key in list(self.stored) if self._merge_if_complete(key)}
        # what was stored before this run, as planned (dispatch adds to self.stored)
        self.pending = {k: dict(v) for k, v in self.stored.items() if k not in self.merged}

    def _merge_if_complete(self, key: str) -> bool:
        parts = all_shards(self.stored[key])
        if parts:
            self.delivery.deliver(merge_shards(self.delivery.params_of[key], parts))
        return bool(parts)

    def store(self, payload: dict) -> bool:
        """Store a finished shard; True when it completed its run (whose row is then delivered)."""
        key = payload["key"]
        index = self.home.setdefault(key, self.delivery.home_of(key))
        self.delivery.stores[index].write_shard(key, payload["shard"], payload)
        self.delivery.counts[index]["shards_run"] += 1
        self.stored.setdefault(key, {})[payload["shard"]] = payload
        return self._merge_if_complete(key)

    def count_skipped(self) -> None:
        for key, payloads in self.pending.items():
            self.delivery.counts[self.home[key]]["shards_skipped"] += len(payloads)


def _plan(studies, delivery: _Delivery, shards: _Shards, shard_draws, device: str):
    """Every study's cells with the union of their seeds, planned once across the studies."""
    cells: dict[Cell, list[int]] = {}
    for config, _ in studies:
        for cell in config.cells():
            seeds = cells.setdefault(cell, [])
            seeds += [s for s in config.seeds if s not in seeds]
    return plan_cells(
        [(cell, tuple(seeds)) for cell, seeds in cells.items()],
        set().union(*delivery.finished) | shards.merged,
        shard_draws=shard_draws,
        shard_layouts={k: stored_layout(v) for k, v in shards.pending.items()},
        finished_shards={k: set(v) for k, v in shards.pending.items()},
        device=device,
    )


def run_studies(
    studies,
    *,
    workers: int | None = None,
    device: str = "cpu",
    progress: bool | None = None,
    executor: str = "process",
    scheduler=None,
    dask_local: int | None = None,
    shard_draws: int | None = None,
    callback=None,
) -> list[dict]:
    """Run several studies, each in its own folder, as one pool of jobs.

    ``studies``: ``(config, out)`` pairs. A run two studies share (the same cell and seed, so the
    same key: e.g. GD of a uniform-prior figure and of its Gaussian twin) is computed once and its
    row written to every folder that needs it, also when one folder already holds it from an
    earlier run ("reused"). GD cells of all studies batch together where they can.

    Parameters
    ----------
    workers : int, optional
        Processes of the local pool (default: every core; 1 runs inline).
    device : str
        ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'auto'``; a CUDA device runs one job at a time.
    progress : bool, optional
        ``None``: a bar on a terminal, a line per finished run elsewhere (:mod:`factorkit._progress`).
    executor : {'process', 'dask'}
        ``'process'``: the local pool. ``'dask'``: jobs are Dask tasks on the cluster at
        ``scheduler`` (an address or a ``dask.distributed.Client``), or on a local cluster of
        ``dask_local`` single-threaded worker processes started for the study.
    shard_draws : int, optional
        Split every G&C rejection run of more draws into shards of about this many draws (whole
        chunks of its candidate stream), run as separate tasks and merged exactly. Default: no
        splitting with the process pool, 2^22 draws with Dask.
    callback : callable, optional
        Called as ``callback(kind, key)`` after each stored shard (``kind='shard'``) or run
        (``kind='run'``).

    Returns
    -------
    list of dict
        Per study: ``runs_total``, ``skipped`` (already stored), ``written`` (stored now),
        ``reused`` (copied from another study's folder), ``shared`` (computed now for several
        studies), ``shards_run`` and ``shards_skipped``.
    """
    device = str(resolve_device(device))
    scheduler, dask_local, shard_draws = executor_options(executor, scheduler, dask_local, shard_draws)
    workers = (os.cpu_count() or 1) if workers is None else check_int("workers", workers)
    if device.startswith("cuda"):
        workers = 1  # one process owns the GPU; its batches are already large
    studies = [(config, Path(out)) for config, out in studies]
    if not studies:
        raise ValueError("studies must hold at least one (config, out) pair")
    prepare_folders([out for _, out in studies])
    with contextlib.ExitStack() as stack:
        stores = []
        for config, out in studies:
            stack.enter_context(folder_lock(out))
            stores.append(stack.enter_context(ResultStore(out)))
            claim_folder(config, out)
        delivery = _Delivery(studies, stores)
        delivery.copy_between_folders()
        shards = _Shards(delivery)
        jobs = _plan(studies, delivery, shards, shard_draws, device)
        name = studies[0][0].name if len(studies) == 1 else f"{len(studies)} studies"
        if executor == "dask":
            results = dask_results(jobs, name, device, scheduler, dask_local)
        else:
            results = local_results(jobs, name, device, workers)
        _dispatch(
            results, delivery, shards, name, sum(j.runs or 1 / j.shards for j in jobs), progress, callback
        )
    shards.count_skipped()
    return delivery.counts


def _dispatch(results, delivery: _Delivery, shards: _Shards, name: str, total: float, progress, callback):
    """Store each finished job: its rows, or its shard (and the run it completes)."""
    notify = callback or (lambda kind, key: None)
    bar = progress_reporter(
        total, name, "runs", enabled=progress, every=STUDY_LINE_EVERY,
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} [{elapsed}<{remaining}]",
    )  # fmt: skip
    with bar:
        for job, (kind, value) in results:
            if kind == "rows":
                for row in value:
                    delivery.deliver(row)
                    notify("run", row["key"])
                bar.update(len(value))
                continue
            completed = shards.store(value)
            notify("shard", value["key"])
            if completed:
                notify("run", value["key"])
            bar.update(1 / job.shards)
