"""Where jobs run: inline, in a local pool of spawned processes, or as Dask tasks; each yields
``(job, result)`` as jobs finish. Worker set-up (one torch thread, exit with the parent, glibc's
allocator told to keep freed buffers) lives here too, for every pool factorkit starts."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

import torch

from factorkit._choices import EXECUTORS
from factorkit._threads import cap_blas_threads
from factorkit._validation import check_choice, check_int
from factorkit.experiments.run import jobs
from factorkit.experiments.run.jobs import Job

DASK_SHARD_DRAWS = 2**22  # with Dask, G&C runs split into shards of about this many draws by default


def executor_options(executor: str, scheduler, dask_local, shard_draws):
    """Checked executor options: ``(scheduler, dask_local, shard_draws)`` (Dask's default shards)."""
    check_choice("executor", executor, EXECUTORS)
    if executor == "dask":
        if (scheduler is None) == (dask_local is None):
            raise ValueError("executor='dask' needs exactly one of scheduler=ADDRESS or dask_local=N")
        if dask_local is not None:
            dask_local = check_int("dask_local", dask_local)
        shard_draws = DASK_SHARD_DRAWS if shard_draws is None else shard_draws
    elif scheduler is not None or dask_local is not None:
        raise ValueError(
            "scheduler= and dask_local= need executor='dask' (they apply to executor='dask' only)"
        )
    if shard_draws is not None:
        shard_draws = check_int("shard_draws", shard_draws)
    return scheduler, dask_local, shard_draws


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

    ``threads`` (Dask workers): torch threads (and NumPy's BLAS threads) per task, and glibc's
    allocator is told to keep freed buffers (see :func:`_keep_freed_memory`).
    """
    if threads is not None:
        torch.set_num_threads(threads)
        cap_blas_threads(threads)
        _keep_freed_memory()
    if job.shard is not None:
        return "shard", jobs.run_shard(job, study, device)
    return "rows", jobs.run_job(job, study, device)


def init_worker(parent: int | None = None) -> None:
    """A pool worker: one torch thread and one BLAS thread for NumPy (whose stacked products the
    deep models use: ``factorkit._kernels``), and it exits when the study process that started it dies.

    On Linux the kernel sends SIGKILL when the parent exits (``prctl(PR_SET_PDEATHSIG)``); a
    watchdog thread also polls the parent's pid, for other systems and for a parent killed before
    the call took effect.
    """
    torch.set_num_threads(1)
    cap_blas_threads(1)
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


@contextlib.contextmanager
def process_pool(workers: int):
    """A pool of ``workers`` spawned processes set up by :func:`init_worker` (they die with this one)."""
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=init_worker, initargs=(os.getpid(),)
    ) as pool:
        yield pool


def local_results(job_list: list[Job], study: str, device: str, workers: int):
    """Yield ``(job, result)`` as jobs finish, inline or in a pool of ``workers`` processes."""
    if workers == 1 or len(job_list) <= 1:
        for job in job_list:
            yield job, run_task(job, study, device)
        return
    with process_pool(workers) as pool:
        futures = {pool.submit(run_task, job, study, device): job for job in job_list}
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


def dask_results(job_list: list[Job], study: str, device: str, scheduler, dask_local: int | None):
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
        futures = {client.submit(run_task, job, study, device, 1, pure=False): job for job in job_list}
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
