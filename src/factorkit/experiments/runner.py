"""Run a study: cells x seeds -> rows in the results store, resumable, in a process pool.

Seeds: seed ``s`` fixes the problem (``W*`` and the ``A_i``) and, through fixed offsets, the
GD initialisation (``s + GD_SEED_OFFSET``) and the G&C candidate stream (``s + GC_SEED_OFFSET``),
so GD and G&C of the same seed face the same problem and every run is reproducible alone.

A G&C job is one (cell, seed); a GD job is one cell with all its unfinished seeds, trained as one
batched population (each seed on its own problem, via :class:`ProblemBatch`).
"""

from __future__ import annotations

import functools
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm.auto import tqdm

from factorkit._validation import check_int, resolve_device
from factorkit.experiments.config import Cell, StudyConfig
from factorkit.experiments.store import ResultStore
from factorkit.fit.gd import train_gd
from factorkit.fit.guess_check import sample_posterior
from factorkit.fit.nuclear import min_nuclear_norm, robust_nuclear_norm
from factorkit.models.deep import DeepFactorization
from factorkit.problems.sensing import ProblemBatch, corrupt, make_sensing_problem

GD_SEED_OFFSET = 1_000_003
GC_SEED_OFFSET = 2_000_003
CORRUPTION_SEED_OFFSET = 3_000_017


@dataclass(frozen=True)
class Job:
    cell: Cell
    seeds: tuple[int, ...]


PROBLEM_KEYS = ("m", "m2", "rank", "n", "measurements", "norm", "outliers", "noise")


@functools.lru_cache(maxsize=256)
def _convex_reference(m, m2, rank, n, measurements, norm, outliers, noise, seed) -> tuple[float, float]:
    """(L_gen, rel. error) of the convex reference on the seed's problem, as the runs see it.

    Minimum nuclear norm subject to the measurements; with outliers, nuclear norm plus an l1
    data fit (:func:`~factorkit.fit.nuclear.robust_nuclear_norm`).
    """
    params = dict(zip(PROBLEM_KEYS, (m, m2, rank, n, measurements, norm, outliers, noise), strict=True))
    problem = _problem(params, seed, "cpu", "float64")
    result = robust_nuclear_norm(problem) if outliers > 0 else min_nuclear_norm(problem)
    return result.gen_loss, result.rel_error


def _problem(params: dict, seed: int, device: str, dtype: str):
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


def _base_row(study: str, cell: Cell, seed: int) -> dict:
    params = cell.params
    nuclear_gen_loss, nuclear_rel_error = _convex_reference(*(params[k] for k in PROBLEM_KEYS), seed)
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
    }


def _model(params: dict) -> DeepFactorization:
    return DeepFactorization(
        params["m"], params["m2"], params["width"], params["depth"], params["activation"]
    )


def run_job(job: Job, study: str, device: str = "cpu") -> list[dict]:
    """Run one job and return its finished rows (one per seed)."""
    params = job.cell.params
    model = _model(params)
    if job.cell.method == "gc":
        rows = []
        for seed in job.seeds:
            problem = _problem(params, seed, device, params["dtype"])
            if params["sampler"] == "smc":
                options = {
                    "n_particles": params["particles"],
                    "p0": params["p0"],
                    "mcmc_steps": params["mcmc_steps"],
                    "runs": params["runs"],
                }
            else:
                options = {
                    "chunk_size": params["chunk_size"],
                    "backend": params["backend"],
                    "progress": False,
                }
            result = sample_posterior(
                problem,
                model,
                eps=params["eps"],
                prior=params["prior"],
                sampler=params["sampler"],
                max_evaluations=params["draws"],
                seed=seed + GC_SEED_OFFSET,
                keep_samples=False,
                **options,
            )
            summary = result.summary()
            smc = params["sampler"] == "smc"
            if smc and not result.reached_target:
                status = "budget_exhausted"
            else:
                enough = (summary["ess"] if smc else result.accepted) >= max(params["min_accepted"], 1)
                status = "ok" if enough else "few_accepted"
            curve = (
                [[level["threshold"], level["log_volume"]] for level in result.extra["level_log"][0]]
                if smc
                else None
            )
            rows.append(
                {
                    **_base_row(study, job.cell, seed),
                    "status": status,
                    "sampler": params["sampler"],
                    "log_volume": summary["log_volume"] if result.accepted else None,
                    "log_volume_se": summary["log_volume_se"] if result.accepted else None,
                    "ess": summary["ess"] if smc else result.accepted,
                    "volume_curve": json.dumps(curve) if curve else None,
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
            )
        return rows
    start = time.perf_counter()
    batch = ProblemBatch.of([_problem(params, seed, device, params["dtype"]) for seed in job.seeds])
    result = train_gd(
        batch,
        model,
        seeds=[s + GD_SEED_OFFSET for s in job.seeds],
        init_scale=params["init_scale"],
        lr=params["lr"],
        max_steps=params["steps"],
        eps_train=params["eps_train"],
        optimizer=params["optimizer"],
        progress=False,
        loss=params["loss"],
        lr_decay=params["lr_decay"],
    )
    elapsed = (time.perf_counter() - start) / len(job.seeds)
    rows = []
    for index, seed in enumerate(job.seeds):
        converged = params["eps_train"] is None or bool(result.converged[index])
        finite = bool(torch.isfinite(result.W[index]).all())
        rows.append(
            {
                **_base_row(study, job.cell, seed),
                "status": ("ok" if converged else "not_converged") if finite else "diverged",
                "gen_loss": float(result.gen_loss[index]),
                "train_loss": float(result.train_loss[index]),
                "rel_error": float(result.rel_error[index]),
                "steps": int(result.steps[index]),
                "wall_time": elapsed,
            }
        )
    return rows


def plan(config: StudyConfig, finished: set[str]) -> list[Job]:
    """The jobs still to run: G&C one per (cell, seed), GD one per cell."""
    jobs = []
    for cell in config.cells():
        todo = tuple(s for s in config.seeds if cell.key(s) not in finished)
        if not todo:
            continue
        if cell.method == "gd":
            jobs.append(Job(cell, todo))
        else:
            jobs.extend(Job(cell, (s,)) for s in todo)
    # expensive G&C jobs (wide, deep) first keeps the pool busy to the end
    return sorted(jobs, key=lambda j: -j.cell.params["width"] * j.cell.params["depth"])


def _init_worker() -> None:
    torch.set_num_threads(1)


def run_study(
    config: StudyConfig,
    out: str | Path,
    *,
    workers: int | None = None,
    device: str = "cpu",
    progress: bool | None = None,
) -> dict:
    """Run every unfinished (cell, seed) of ``config``, writing rows to ``out/results.sqlite``.

    Re-running the same study in the same directory skips finished rows. Returns counts.
    """
    device_obj = resolve_device(device)
    workers = (os.cpu_count() or 1) if workers is None else check_int("workers", workers)
    if device_obj.type == "cuda":
        workers = 1  # one process owns the GPU; its batches are already large
    out = Path(out)
    with ResultStore(out) as store:
        (out / "study.json").write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))
        finished = store.finished_keys()
        jobs = plan(config, finished)
        total_runs = len(config.cells()) * len(config.seeds)
        bar = tqdm(
            total=sum(len(j.seeds) for j in jobs),
            desc=config.name,
            unit="run",
            disable=None if progress is None else not progress,
        )
        written = 0
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                for row in run_job(job, config.name, str(device_obj)):
                    store.write(row)
                    written += 1
                bar.update(len(job.seeds))
        else:
            with ProcessPoolExecutor(
                workers, mp_context=get_context("spawn"), initializer=_init_worker
            ) as pool:
                futures = [pool.submit(run_job, job, config.name, str(device_obj)) for job in jobs]
                try:
                    for future in as_completed(futures):
                        rows = future.result()
                        for row in rows:
                            store.write(row)
                            written += 1
                        bar.update(len(rows))
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
        bar.close()
    return {
        "runs_total": total_runs,
        "skipped": len(finished & {c.key(s) for c in config.cells() for s in config.seeds}),
        "written": written,
    }
