"""How many threads a computation uses: by its size, within the limits the user set.

PyTorch starts one thread per core. A small computation (an NMF iteration on digits, a Lanczos step on
a few thousand words) is bound by per-operation overhead, and on a busy machine extra threads only
wait for cores: measured 4-20x slower with 2 threads than with 1 while another process ran. So a
computation of fewer than :data:`SMALL_WORK` flops per step runs on one thread; larger ones use
torch's setting, capped by the limits a user set: ``OMP_NUM_THREADS``, and any
``threadpoolctl.threadpool_limits`` in force on the OpenMP or BLAS runtimes. torch's setting is
restored afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import os

SMALL_WORK = 2e7


def user_thread_limit() -> int | None:
    """The tightest thread limit set by the user (``OMP_NUM_THREADS``, threadpoolctl), or None."""
    limits = []
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        limits.append(int(given))
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return min(limits) if limits else None
    limits += [pool["num_threads"] for pool in threadpool_info() if pool.get("num_threads")]
    return min(limits) if limits else None


def cpu_threads() -> int:
    """Threads a NumPy/SciPy computation of ours may start: the cores this process may run on,
    capped by ``OMP_NUM_THREADS`` (torch-free and threadpoolctl-free, for cold start paths)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        cores = min(cores, int(given))
    return max(1, cores)


def thread_count(work: float) -> int:
    """Threads for a computation of about ``work`` flops per step."""
    import torch

    if work < SMALL_WORK:
        return 1
    limit = user_thread_limit()
    current = torch.get_num_threads()
    return max(1, min(current, limit) if limit else current)


@functools.cache
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def blas_threads(limit: int | None):
    """Cap the BLAS pools (NumPy's, SciPy's) at ``limit`` threads for the block (None: leave them).

    Small computations that mix many BLAS calls with other work run best on one thread: an idle
    BLAS worker spins between calls and takes the other core (NMF on digits measured 0.04 s to
    0.15 s for the same fit with two BLAS threads; steady with one)."""
    if limit is None:
        yield
        return
    with _blas_controller().limit(limits=limit, user_api="blas"):
        yield


def cap_blas_threads(limit: int) -> None:
    """Cap the BLAS pools (NumPy's, SciPy's) at ``limit`` threads for the rest of the process: a
    pool worker's set-up, beside ``torch.set_num_threads`` (:func:`blas_threads` for one block)."""
    _blas_controller().limit(limits=limit, user_api="blas")


@contextlib.contextmanager
def threads_for(work: float):
    """Run the block with :func:`thread_count` ``(work)`` torch threads (and BLAS threads capped
    alike when that is one), then restore the settings."""
    import torch

    previous = torch.get_num_threads()
    chosen = thread_count(work)
    if chosen != previous:
        torch.set_num_threads(chosen)
    try:
        with blas_threads(1 if chosen == 1 else None):
            yield chosen
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
