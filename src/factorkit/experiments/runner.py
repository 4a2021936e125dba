"""Run a study: cells x seeds -> rows in the results store, resumable, locally or on Dask.

Seeds: seed ``s`` fixes the problem (``W*`` and the ``A_i``) and, through fixed offsets, the
GD initialisation (``s + GD_SEED_OFFSET``) and the G&C candidate stream (``s + GC_SEED_OFFSET``),
so GD and G&C of the same seed face the same problem and every run is reproducible alone.

A G&C job is one (cell, seed), or, with ``shard_draws``, one shard of it: a range of whole chunks
of its candidate stream whose partial sums are stored as they finish and merged exactly
(:func:`factorkit.fit.guess_check.combine_results`) once every shard is in. A GD job is one cell
with all its unfinished seeds, trained as one batched population (each seed on its own problem,
via :class:`ProblemBatch`). Jobs run inline, in a local process pool or as Dask tasks; only the
coordinator writes the SQLite store.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import functools
import json
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from factorkit._choices import EXECUTORS
from factorkit._progress import progress as progress_reporter
from factorkit._validation import check_choice, check_int, resolve_device
from factorkit.experiments.config import Cell, StudyConfig
from factorkit.experiments.store import ResultStore
from factorkit.fit.auto import sample_posterior
from factorkit.fit.gd import initial_weights, train_gd
from factorkit.fit.guess_check import GuessCheckResult, Prior, combine_results, guess_and_check, stream_layout
from factorkit.fit.nuclear import min_nuclear_norm, robust_nuclear_norm
from factorkit.models.deep import DeepFactorization
from factorkit.problems.sensing import ProblemBatch, corrupt, make_sensing_problem, restricted_isometry

# off a terminal, a study writes a line as runs finish, at most one per this many seconds
STUDY_LINE_EVERY = 5.0
GD_SEED_OFFSET = 1_000_003
GC_SEED_OFFSET = 2_000_003
CORRUPTION_SEED_OFFSET = 3_000_017


@dataclass(frozen=True)
class Job:
    """A unit of work: a GD cell with its seeds, a G&C (cell, seed), or one shard of a G&C run.

    A shard draws ``draws`` prior draws of the run's candidate stream in chunks of ``chunk_size``,
    from chunk ``first_chunk`` on; ``shard`` is its index among ``shards``.
    """

    cell: Cell
    seeds: tuple[int, ...]
    shard: int | None = None
    shards: int = 1
    first_chunk: int = 0
    draws: int = 0
    chunk_size: int | None = None
    others: tuple[tuple[Cell, tuple[int, ...]], ...] = ()
    """GD: further cells (with their unfinished seeds) that differ from ``cell`` in width only and
    train in the same batch, zero-padded to the widest (:meth:`DeepFactorization.pad`)."""

    @property
    def runs(self) -> int:
        """How many whole runs this job finishes (a shard: none on its own)."""
        if self.shard is not None:
            return 0
        return len(self.seeds) + sum(len(seeds) for _, seeds in self.others)


PROBLEM_KEYS = ("m", "m2", "rank", "n", "measurements", "norm", "outliers", "noise")
# what GD members of one batch may differ in: the width (zero-padded) and what their problems
# hold (every member brings its own problem of the same sizes, m x m' and n measurements)
BATCHABLE_KEYS = ("width", "rank", "measurements", "norm", "outliers", "noise", "pairing")


def problem_seed(params: dict, seed: int) -> int:
    """The seed of run ``seed``'s problem: ``seed`` itself when problems are paired across the grid
    (the same ``W*`` and ``A_i`` at every width and depth), else one spawned from
    ``(seed, width, depth)`` (``pairing = 'fresh'``: a new problem per point, as the paper's code)."""
    if params.get("pairing", "paired") == "paired":
        return seed
    sequence = np.random.SeedSequence([seed, params["width"], params["depth"]])
    return int(sequence.generate_state(1, np.uint32)[0])


@functools.lru_cache(maxsize=256)
def _convex_reference(*values) -> tuple[float, float]:
    """(L_gen, rel. error) of the convex reference on the run's problem, as the runs see it.

    ``values``: the :data:`PROBLEM_KEYS` settings, then the problem's seed (:func:`problem_seed`,
    so paired problems are solved once for the whole grid). Minimum nuclear norm
    subject to the measurements; with outliers, nuclear norm plus an l1 data fit
    (:func:`~factorkit.fit.nuclear.robust_nuclear_norm`).
    """
    *settings, seed = values
    params = dict(zip(PROBLEM_KEYS, settings, strict=True))
    problem = _problem(params, seed, "cpu", "float64")
    result = robust_nuclear_norm(problem) if params["outliers"] > 0 else min_nuclear_norm(problem)
    return result.gen_loss, result.rel_error


@functools.lru_cache(maxsize=256)
def _isometry(*values) -> tuple[float, float]:
    """Empirical rank-1 restricted-isometry bounds of the run's measurement operator
    (:func:`~factorkit.problems.sensing.restricted_isometry`); ``values`` as for
    :func:`_convex_reference`."""
    *settings, seed = values
    params = dict(zip(PROBLEM_KEYS, settings, strict=True))
    return restricted_isometry(_problem(params, seed, "cpu", "float64"))


def _problem(params: dict, seed: int, device: str, dtype: str):
    """The problem of run ``seed`` (see :func:`problem_seed`), on ``device`` in ``dtype``."""
    seed = problem_seed(params, seed)
    problem = make_sensing_problem(
        params["m"],
        params["m2"],
        params["rank"],
        params["n"],
        params["measurements"],
        seed,
        params["norm"],
        device,
        dtype,
    )
    if params["outliers"] or params["noise"]:
        problem = corrupt(
            problem, params["outliers"], noise_std=params["noise"], seed=seed + CORRUPTION_SEED_OFFSET
        )
    return problem


def _gc_setup(params: dict, seed: int, device: str) -> tuple:
    """``(problem, model, prior)`` a G&C run samples with.

    ``orientation = 'transposed'`` samples ``W^T`` as the paper's code does: the transposed
    problem with the model's ``m`` and ``m'`` swapped (the same losses, see
    :meth:`~factorkit.problems.SensingProblem.transposed`).
    """
    problem = _problem(params, seed, device, params["dtype"])
    model = _model(params)
    if params.get("orientation", "model") == "transposed":
        problem = problem.transposed()
        model = replace(model, m=model.m2, m2=model.m)
    prior = Prior.from_name(
        params["prior"],
        target_norm=float(problem.W_star.norm()),
        # a cell always names its scaling; settings without one come from before fan-out was the default
        layer_scaling=params.get("layer_scaling", "fan_in"),
    )
    return problem, model, prior


def _base_row(study: str, cell: Cell, seed: int) -> dict:
    params = cell.params
    problem_values = (*(params[k] for k in PROBLEM_KEYS), problem_seed(params, seed))
    nuclear_gen_loss, nuclear_rel_error = _convex_reference(*problem_values)
    rip_low, rip_high = _isometry(*problem_values) if cell.method == "gc" else (None, None)
    return {
        "key": cell.key(seed),
        "study": study,
        "method": cell.method,
        "seed": seed,
        **{
            k: params[k]
            for k in ("width", "depth", "activation", "m", "m2", "rank", "n", "measurements", "outliers")
        },
        "prior": params.get("prior"),
        "eps": params.get("eps"),
        "loss": params.get("loss"),
        "optimizer": params.get("optimizer"),
        "settings": json.dumps(params, sort_keys=True),
        "nuclear_gen_loss": nuclear_gen_loss,
        "nuclear_rel_error": nuclear_rel_error,
        "rip_low": rip_low,
        "rip_high": rip_high,
    }


def _model(params: dict) -> DeepFactorization:
    return DeepFactorization(
        params["m"], params["m2"], params["width"], params["depth"], params["activation"]
    )


def _gc_options(params: dict) -> dict:
    smc = {
        "n_particles": params["particles"],
        "p0": params["p0"],
        "mcmc_steps": params["mcmc_steps"],
        "runs": params["runs"],
    }
    if params["sampler"] == "smc":
        return smc
    rejection = {"chunk_size": params["chunk_size"], "backend": params["backend"]}
    if params["sampler"] == "auto":
        return {**smc, **rejection, "target_ess": params.get("target_ess", 200)}
    return {**rejection, "progress": False}


def _gc_row(base: dict, params: dict, result: GuessCheckResult) -> dict:
    """The store row of a finished G&C run (``base``: :func:`_base_row` of its cell and seed)."""
    summary = result.summary()
    smc = result.sampler == "smc"  # the sampler that ran ('auto' chose one)
    if smc and not result.reached_target:
        status = "budget_exhausted"
    else:
        enough = (summary["ess"] if smc else result.accepted) >= max(params["min_accepted"], 1)
        status = "ok" if enough else "few_accepted"
    curve = (
        [[level["threshold"], level["log_volume"]] for level in result.extra["level_log"][0]] if smc else None
    )
    return {
        **base,
        "status": status,
        "sampler": result.sampler,
        "log_volume": summary["log_volume"] if result.accepted else None,
        "log_volume_se": summary["log_volume_se"] if result.accepted else None,
        "ess": summary["ess"] if smc else result.accepted,
        "volume_curve": json.dumps(curve) if curve else None,
        "pilot": json.dumps(result.extra["pilot"]) if "pilot" in result.extra else None,
        "rank1_energy": _rank1_energy(result.accepted_W),
        "gen_loss": summary["gen_loss"] if result.accepted else None,
        "gen_loss_ci_low": summary["gen_loss_ci"][0] if result.accepted > 1 else None,
        "gen_loss_ci_high": summary["gen_loss_ci"][1] if result.accepted > 1 else None,
        "gen_loss_median": summary["gen_loss_median"] if result.accepted else None,
        "train_loss": summary["train_loss"] if result.accepted else None,
        "accepted": result.accepted,
        "evaluations": result.evaluations,
        "acceptance_rate": result.acceptance_rate,
        "prior_gen_loss": result.prior_gen_loss_mean,
        "wall_time": result.wall_time,
    }


def _rank1_energy(W: torch.Tensor | None) -> float | None:
    """Mean share of the top singular value in ``||W||_F^2`` over sampled matrices (1: rank one)."""
    if W is None or not W.numel():
        return None
    values = torch.linalg.svdvals(W.double()).square()
    return float((values[:, 0] / values.sum(1).clamp_min(1e-300)).mean())


def run_job(job: Job, study: str, device: str = "cpu") -> list[dict]:
    """Run one whole job (not a shard) and return its finished rows (one per seed)."""
    params = job.cell.params
    model = _model(params)
    if job.cell.method == "gc":
        rows = []
        for seed in job.seeds:
            problem, gc_model, prior = _gc_setup(params, seed, device)
            result = sample_posterior(
                problem,
                gc_model,
                eps=params["eps"],
                prior=prior,
                sampler=params["sampler"],
                max_evaluations=params["draws"],
                seed=seed + GC_SEED_OFFSET,
                # SMC's and auto's samples are small (populations, a target ESS): kept for their
                # singular values; rejection may accept millions
                keep_samples=params["sampler"] != "rejection",
                **_gc_options(params),
            )
            rows.append(_gc_row(_base_row(study, job.cell, seed), params, result))
        return rows
    start = time.perf_counter()
    members = [(job.cell, seed) for seed in job.seeds] + [
        (cell, seed) for cell, seeds in job.others for seed in seeds
    ]
    width = max(cell.params["width"] for cell, _ in members)
    model = replace(model, width=width)
    # every member starts as its own width's net would (its seed, its fan-in), zero-padded
    starts = []
    for cell, seed in members:
        own = _model(cell.params)
        weights = initial_weights(
            own, [seed + GD_SEED_OFFSET], params["init_scale"], params.get("init", "gaussian")
        )
        starts.append(own.pad(weights, width))
    initial = [torch.cat([member[layer] for member in starts]) for layer in range(len(starts[0]))]
    batch = ProblemBatch.of([_problem(cell.params, seed, device, params["dtype"]) for cell, seed in members])
    result = train_gd(
        batch,
        model,
        seeds=[seed + GD_SEED_OFFSET for _, seed in members],
        initial=initial,
        init_scale=params["init_scale"],
        init=params.get("init", "gaussian"),
        lr=params["lr"],
        optimizer_options={"momentum": params["momentum"]} if params.get("momentum") else None,
        max_steps=params["steps"],
        eps_train=params["eps_train"],
        optimizer=params["optimizer"],
        progress=False,
        loss=params["loss"],
        lr_decay=params["lr_decay"],
    )
    elapsed = (time.perf_counter() - start) / len(members)
    rows = []
    for index, (cell, seed) in enumerate(members):
        converged = params["eps_train"] is None or bool(result.converged[index])
        finite = bool(torch.isfinite(result.W[index]).all())
        rows.append(
            {
                **_base_row(study, cell, seed),
                "status": ("ok" if converged else "not_converged") if finite else "diverged",
                "gen_loss": float(result.gen_loss[index]),
                "train_loss": float(result.train_loss[index]),
                "rel_error": float(result.rel_error[index]),
                "steps": int(result.steps[index]),
                "wall_time": elapsed,
            }
        )
    return rows


def run_shard(job: Job, study: str, device: str = "cpu") -> dict:
    """Run one shard of a G&C rejection run; return its partial sums as a JSON-ready payload.

    The payload holds the accepted count, evaluations, the sums of ``L_gen`` and ``L_gen^2`` over
    every draw and the accepted draws' losses (exact: float32/float64 values survive JSON), so
    :func:`_merge_shards` rebuilds exactly the unsharded run. Shard 0 also carries the run's base
    row (with the convex reference), computed on the worker rather than the coordinator.
    """
    params = job.cell.params
    (seed,) = job.seeds
    problem, model, prior = _gc_setup(params, seed, device)
    result = guess_and_check(
        problem,
        model,
        eps=params["eps"],
        prior=prior,
        max_evaluations=job.draws,
        seed=seed + GC_SEED_OFFSET,
        first_chunk=job.first_chunk,
        keep_samples=False,
        # the planned chunk size, also when resuming a layout stored by an earlier run
        **{**_gc_options(params), "chunk_size": job.chunk_size},
    )
    return {
        "key": job.cell.key(seed),
        "shard": job.shard,
        "shards": job.shards,
        "eps": result.eps,
        "accepted": result.accepted,
        "evaluations": result.evaluations,
        "prior_gen_loss_sums": list(result.prior_gen_loss_sums),
        "accepted_sums": list(result.accepted_sums),
        "accepted_gen_loss": result.accepted_gen_loss.tolist(),
        "accepted_train_loss": result.accepted_train_loss.tolist(),
        "dtype": params["dtype"],
        "wall_time": result.wall_time,
        "extra": result.extra,
        "base": _base_row(study, job.cell, seed) if job.shard == 0 else None,
    }


def _merge_shards(params: dict, payloads: list[dict]) -> dict:
    """The store row of a sharded run from its shards' payloads (in shard order)."""
    parts = []
    for payload in payloads:
        dtype = getattr(torch, payload["dtype"])
        parts.append(
            GuessCheckResult(
                eps=payload["eps"],
                accepted=payload["accepted"],
                evaluations=payload["evaluations"],
                accepted_gen_loss=torch.tensor(payload["accepted_gen_loss"], dtype=dtype),
                accepted_train_loss=torch.tensor(payload["accepted_train_loss"], dtype=dtype),
                accepted_W=None,
                prior_gen_loss_mean=float("nan"),
                prior_gen_loss_se=float("nan"),
                wall_time=payload["wall_time"],
                reached_target=True,
                extra=payload["extra"],
                prior_gen_loss_sums=tuple(payload["prior_gen_loss_sums"]),
                # shards stored by an older version carry no sums: they kept every acceptance
                accepted_sums=tuple(payload["accepted_sums"]) if "accepted_sums" in payload else None,
            )
        )
    return _gc_row(payloads[0]["base"], params, combine_results(parts))


@functools.cache
def _keep_freed_memory() -> bool:
    """Let glibc reuse freed chunk buffers instead of returning them to the OS after every chunk.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also freezes glibc's
    mmap threshold: every multi-megabyte chunk buffer is then mapped, zero-filled page by page and
    unmapped, which measured 2x slower G&C in a Dask worker than in a plain process. Raising the
    mmap (256 MiB) and trim (512 MiB) thresholds in the worker restores the plain-process speed;
    memory held stays bounded by the chunk work space. A no-op where glibc is absent.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, 1 << 28)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 29))


def run_task(job: Job, study: str, device: str = "cpu", threads: int | None = None):
    """Worker entry point (process pool or Dask): ``('rows', [row, ...])`` or ``('shard', payload)``.

    ``threads`` (Dask workers): torch threads per task, and glibc's allocator is told to keep freed
    buffers (see :func:`_keep_freed_memory`).
    """
    if threads is not None:
        torch.set_num_threads(threads)
        _keep_freed_memory()
    if job.shard is not None:
        return "shard", run_shard(job, study, device)
    return "rows", run_job(job, study, device)


def _shard_layout(params: dict, device: str, shard_draws: int | None) -> tuple[int, int] | None:
    """``(chunk_size, chunks per shard)`` of a G&C rejection run split into shards, or None."""
    if shard_draws is None or params["sampler"] != "rejection":
        return None
    _, chunk_size = stream_layout(
        _model(params),
        Prior.from_name(params["prior"]),
        torch.device(device),
        params["backend"],
        params["chunk_size"],
    )
    if params["draws"] <= max(shard_draws, chunk_size):
        return None
    return chunk_size, max(shard_draws // chunk_size, 1)


def plan(
    config: StudyConfig,
    finished: set[str],
    *,
    shard_draws: int | None = None,
    shard_layouts: dict[str, tuple[int, int]] | None = None,
    finished_shards: dict[str, set[int]] | None = None,
    device: str = "cpu",
) -> list[Job]:
    """The jobs still to run: GD one per group of cells (see :func:`_gd_jobs`); G&C one per
    (cell, seed), or its unfinished shards.

    With ``shard_draws``, a G&C rejection run of more draws is split into shards of about that
    many draws (whole chunks of its stream); ``shard_layouts`` (chunk size and chunks per shard of
    runs already partly stored) keeps a resumed run's layout, and ``finished_shards`` are not run again.
    """
    return _plan_cells(
        [(cell, config.seeds) for cell in config.cells()],
        finished,
        shard_draws=shard_draws,
        shard_layouts=shard_layouts,
        finished_shards=finished_shards,
        device=device,
    )


def _plan_cells(
    cells: list[tuple[Cell, tuple[int, ...]]],
    finished: set[str],
    *,
    shard_draws: int | None = None,
    shard_layouts: dict[str, tuple[int, int]] | None = None,
    finished_shards: dict[str, set[int]] | None = None,
    device: str = "cpu",
) -> list[Job]:
    """:func:`plan` over ``(cell, seeds)`` pairs (of one study or several)."""
    shard_layouts = shard_layouts or {}
    finished_shards = finished_shards or {}
    jobs = []
    gd_cells = []
    for cell, seeds in cells:
        todo = tuple(s for s in seeds if cell.key(s) not in finished)
        if not todo:
            continue
        if cell.method == "gd":
            gd_cells.append((cell, todo))
            continue
        layout = _shard_layout(cell.params, device, shard_draws)
        for seed in todo:
            key = cell.key(seed)
            if layout is None and key not in shard_layouts:
                jobs.append(Job(cell, (seed,)))
                continue
            chunk_size, per_shard = shard_layouts.get(key, layout)
            draws = cell.params["draws"]
            shards = -(-draws // (chunk_size * per_shard))
            for index in range(shards):
                if index in finished_shards.get(key, ()):
                    continue
                first = index * per_shard
                budget = min(per_shard * chunk_size, draws - first * chunk_size)
                jobs.append(Job(cell, (seed,), index, shards, first, budget, chunk_size))
    # the longest jobs first keeps the pool busy to the end: GD batches by their steps times depth,
    # then G&C (wide, deep first)
    gc_jobs = sorted(jobs, key=lambda j: -j.cell.params["width"] * j.cell.params["depth"])
    gd_jobs = sorted(_gd_jobs(gd_cells), key=lambda j: -j.cell.params["steps"] * j.cell.params["depth"])
    return gd_jobs + gc_jobs


def _gd_jobs(cells: list[tuple[Cell, tuple[int, ...]]]) -> list[Job]:
    """One GD job per group of cells equal but for the width and the problem (depth >= 2, see
    :data:`BATCHABLE_KEYS`), trained as one batch zero-padded to the widest (exact: every built-in
    activation has s(0) = 0) with one problem per member; GD at small sizes is bound by per-step
    overhead, so a width sweep's steps (and a completion twin's) are paid once, not once per cell."""
    groups: dict[tuple, list[tuple[Cell, tuple[int, ...]]]] = {}
    for cell, seeds in cells:
        params = cell.params
        # members may differ in width and in their problems (one ProblemBatch), not in sizes or GD settings
        shared = tuple(sorted((k, v) for k, v in params.items() if k not in BATCHABLE_KEYS))
        key = shared if params["depth"] >= 2 else (cell,)
        groups.setdefault(key, []).append((cell, seeds))
    return [Job(members[0][0], members[0][1], others=tuple(members[1:])) for members in groups.values()]


def _init_worker(parent: int | None = None) -> None:
    """A pool worker: one torch thread, and it exits when the study process that started it dies.

    On Linux the kernel sends SIGKILL when the parent exits (``prctl(PR_SET_PDEATHSIG)``); a
    watchdog thread also polls the parent's pid, for other systems and for a parent killed before
    the call took effect.
    """
    torch.set_num_threads(1)
    if parent is None:
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="factorkit-parent-watch").start()


def _local_results(jobs: list[Job], study: str, device: str, workers: int):
    """Yield ``(job, result)`` as jobs finish, inline or in a pool of ``workers`` processes."""
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield job, run_task(job, study, device)
        return
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(os.getpid(),)
    ) as pool:
        futures = {pool.submit(run_task, job, study, device): job for job in jobs}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            # interrupted (Ctrl-C, SIGTERM) or failed: stop the workers now rather than after
            # their current job; what they were computing is not stored and reruns on resume
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            raise


def _dask_results(jobs: list[Job], study: str, device: str, scheduler, dask_local: int | None):
    """Yield ``(job, result)`` as Dask tasks finish (a worker lost mid-task: Dask reruns the task)."""
    try:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_completed
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the dask executor needs dask.distributed: pip install 'factorkit[dask]'") from err
    cluster = None
    if scheduler is None:
        # ":0": the scheduler's HTTP server (health, metrics, the dashboard when bokeh is present)
        # on a free port, never clashing with another cluster on 8787
        cluster = LocalCluster(
            n_workers=dask_local, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
    client = scheduler if isinstance(scheduler, Client) else Client(cluster or scheduler)
    try:
        futures = {client.submit(run_task, job, study, device, 1, pure=False): job for job in jobs}
        try:
            for future in dask_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            client.cancel(list(futures))
            raise
    finally:
        if client is not scheduler:
            client.close()
        if cluster is not None:
            cluster.close()


def run_study(
    config: StudyConfig,
    out: str | Path,
    *,
    workers: int | None = None,
    device: str = "cpu",
    progress: bool | None = None,
    executor: str = "process",
    scheduler=None,
    dask_local: int | None = None,
    shard_draws: int | None = None,
    callback=None,
) -> dict:
    """Run every unfinished (cell, seed) of ``config``, writing rows to ``out/results.sqlite``.

    Re-running the same study in the same directory skips finished rows (and finished shards).

    Parameters
    ----------
    config : StudyConfig
    out : path
        Results folder; rows (and shards) are committed as they finish.
    workers : int, optional
        Processes of the local pool (default: every core; 1 runs inline).
    device : str
        ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'auto'``; a CUDA device runs one job at a time.
    progress : bool, optional
        Progress bar (``None``: only on a terminal).
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
    dict
        ``runs_total``, ``skipped`` (runs already stored), ``written`` (runs stored now),
        ``shards_run`` (shards computed now) and ``shards_skipped`` (already stored).
    """
    return run_studies(
        [(config, out)],
        workers=workers,
        device=device,
        progress=progress,
        executor=executor,
        scheduler=scheduler,
        dask_local=dask_local,
        shard_draws=shard_draws,
        callback=callback,
    )[0]


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
    earlier run ("reused"). GD cells of all studies batch together where they can
    (:func:`_gd_jobs`). Options as :func:`run_study`; returns its counts per study, plus ``reused``
    (rows copied from another study's folder) and ``shared`` (rows computed now for several studies).
    """
    device_obj = resolve_device(device)
    check_choice("executor", executor, EXECUTORS)
    if executor == "dask":
        if (scheduler is None) == (dask_local is None):
            raise ValueError("the dask executor needs exactly one of scheduler (an address) or dask_local")
        if dask_local is not None:
            dask_local = check_int("dask_local", dask_local)
        shard_draws = 2**22 if shard_draws is None else shard_draws
    elif scheduler is not None or dask_local is not None:
        raise ValueError("scheduler and dask_local apply to executor='dask' only")
    if shard_draws is not None:
        shard_draws = check_int("shard_draws", shard_draws)
    workers = (os.cpu_count() or 1) if workers is None else check_int("workers", workers)
    if device_obj.type == "cuda":
        workers = 1  # one process owns the GPU; its batches are already large
    studies = [(config, Path(out)) for config, out in studies]
    if not studies:
        raise ValueError("studies must hold at least one (config, out) pair")
    folders = [out.resolve() for _, out in studies]
    if len(set(folders)) < len(folders):
        raise ValueError("every study needs its own folder; two were given the same --out")
    for _, out in studies:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {str(out)!r} is a file, not a folder")
        out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        stores = []
        for config, out in studies:
            stack.enter_context(_folder_lock(out))
            stores.append(stack.enter_context(ResultStore(out)))
            _claim_folder(config, out)
        finished = [store.finished_keys() for store in stores]
        params_of = {}
        wanted = []  # per study: its run keys
        for config, _ in studies:
            keys = {}
            for cell in config.cells():
                for seed in config.seeds:
                    keys[cell.key(seed)] = cell.params
            params_of.update(keys)
            wanted.append(set(keys))
        counts = [
            {
                "runs_total": len(keys),
                "skipped": len(done & keys),
                "written": 0,
                "reused": 0,
                "shared": 0,
                "shards_run": 0,
                "shards_skipped": 0,
            }
            for keys, done in zip(wanted, finished, strict=True)
        ]

        def deliver(row: dict, reused: bool = False) -> None:
            targets = [
                i for i, keys in enumerate(wanted) if row["key"] in keys and row["key"] not in finished[i]
            ]
            for index in targets:
                stores[index].write({**row, "study": studies[index][0].name})
                finished[index].add(row["key"])
                counts[index]["reused" if reused else "written"] += 1
                if len(targets) > 1 and not reused:
                    counts[index]["shared"] += 1

        # rows one folder holds and another needs: copied, not recomputed
        missing = set().union(*(keys - done for keys, done in zip(wanted, finished, strict=True)))
        for store, done in zip(stores, finished, strict=True):
            for row in store.rows() if missing & done else ():
                if row["key"] in missing:
                    row = {k: v for k, v in row.items() if k not in ("versions", "finished_at")}
                    deliver(row, reused=True)
        done_anywhere = set().union(*finished)
        stored: dict[str, dict[int, dict]] = {}
        home = {}  # the store a sharded run's shards go to: the first that needs it
        for index, store in enumerate(stores):
            for key, payloads in store.shard_payloads().items():
                if key in done_anywhere or key not in wanted[index]:
                    continue
                stored.setdefault(key, {}).update(payloads)
                home.setdefault(key, index)
        # a run whose every shard is stored but whose row is not (the coordinator stopped between
        # the two commits) is merged now: no job would ever finish it
        merged = set()
        for key, payloads in stored.items():
            parts = _all_shards(payloads)
            if parts:
                deliver(_merge_shards(params_of[key], parts))
                merged.add(key)
        cells: dict[Cell, list[int]] = {}
        for config, _ in studies:
            for cell in config.cells():
                seeds = cells.setdefault(cell, [])
                seeds += [s for s in config.seeds if s not in seeds]
        jobs = _plan_cells(
            [(cell, tuple(seeds)) for cell, seeds in cells.items()],
            done_anywhere | merged,
            shard_draws=shard_draws,
            shard_layouts={k: _stored_layout(v) for k, v in stored.items() if k not in merged},
            finished_shards={k: set(v) for k, v in stored.items() if k not in merged},
            device=str(device_obj),
        )
        skipped_shards = {k: len(v) for k, v in stored.items() if k not in merged}
        name = studies[0][0].name if len(studies) == 1 else f"{len(studies)} studies"
        bar = progress_reporter(
            sum(j.runs or 1 / j.shards for j in jobs),
            name,
            "runs",
            enabled=progress,
            every=STUDY_LINE_EVERY,
            bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} [{elapsed}<{remaining}]",
        )
        if executor == "dask":
            results = _dask_results(jobs, name, str(device_obj), scheduler, dask_local)
        else:
            results = _local_results(jobs, name, str(device_obj), workers)
        for job, (kind, value) in results:
            if kind == "rows":
                for row in value:
                    deliver(row)
                    if callback is not None:
                        callback("run", row["key"])
                bar.update(len(value))
                continue
            key = value["key"]
            index = home.setdefault(key, next(i for i, keys in enumerate(wanted) if key in keys))
            stores[index].write_shard(key, value["shard"], value)
            counts[index]["shards_run"] += 1
            stored.setdefault(key, {})[value["shard"]] = value
            if callback is not None:
                callback("shard", key)
            parts = _all_shards(stored[key])
            if parts:
                deliver(_merge_shards(params_of[key], parts))
                if callback is not None:
                    callback("run", key)
            bar.update(1 / job.shards)
        bar.close()
    for key, count in skipped_shards.items():
        counts[home[key]]["shards_skipped"] += count
    return counts


@contextlib.contextmanager
def _folder_lock(out: Path):
    """Hold ``out/.lock`` for the whole run: a second study on the same folder is refused at once
    (no run computed twice). The lock dies with its process, SIGKILL included."""
    handle = (out / ".lock").open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise RuntimeError(
                f"another study is running in {out} (pid {holder}); wait for it or use another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def _claim_folder(config: StudyConfig, out: Path) -> None:
    """Make ``out`` the folder of ``config``: write its ``study.json``, or refuse when the folder
    already holds another config (a folder describes one study; rows of two configs are never
    pooled). Growing the study (more seeds, more values on a grid axis, every setting else equal)
    is the same study: every stored row is one of its runs."""
    path = out / "study.json"
    if path.is_file():
        try:
            stored = StudyConfig.from_stored(json.loads(path.read_text()))
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"{path} does not hold a readable study config ({err}); use another --out"
            ) from err
        changes = stored.differences(config)
        if changes and not _extends(stored, config):
            shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
            raise ValueError(
                f"{out} holds study {stored.name!r} run with another config ({shown}). A study folder "
                "holds one config: give this one its own --out, or move the folder aside to start over"
            )
    path.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))


def _extends(stored: StudyConfig, config: StudyConfig) -> bool:
    """Whether ``config`` is ``stored`` with seeds or grid values added and nothing else changed."""
    if not set(stored.seeds) <= set(config.seeds) or set(stored.grid) != set(config.grid):
        return False
    if any(not set(values) <= set(config.grid[key]) for key, values in stored.grid.items()):
        return False
    return not replace(stored, seeds=config.seeds, grid=config.grid, description="").differences(
        replace(config, description="")
    )


def _all_shards(payloads: dict[int, dict]) -> list[dict] | None:
    """The payloads of a run in shard order once every shard is in, else None."""
    shards = next(iter(payloads.values()))["shards"]
    return [payloads[i] for i in range(shards)] if len(payloads) == shards else None


def _stored_layout(payloads: dict[int, dict]) -> tuple[int, int]:
    """``(chunk_size, chunks per shard)`` of a partly stored sharded run, from its payloads."""
    payload = next(iter(payloads.values()))
    chunk_size = payload["extra"]["chunk_size"]
    if payload["shard"] < payload["shards"] - 1 or payload["shards"] == 1:
        return chunk_size, payload["extra"]["chunks"] - payload["extra"]["first_chunk"]
    # the last shard starts at chunk (shards - 1) * chunks per shard
    return chunk_size, payload["extra"]["first_chunk"] // (payload["shards"] - 1)
