"""Thread policy (issue 18): small work on one thread, large work within the user's limits."""

import numpy as np
import pytest
import torch

from factorkit._threads import SMALL_WORK, thread_count, threads_for
from factorkit.methods.nmf import NMF


def threads_seen_by_nmf(X, **kwargs):
    seen = []
    NMF(4, max_iter=3, callback=lambda *_: seen.append(torch.get_num_threads()), **kwargs).fit(X)
    return set(seen)


@pytest.fixture
def two_threads(monkeypatch):
    """A user who allows two threads, whatever this process was started with: no OMP_NUM_THREADS,
    and the OpenMP / BLAS pools raised to 2 (a run under OMP_NUM_THREADS=1 starts them at 1, and
    threadpoolctl reports that limit)."""
    from threadpoolctl import threadpool_limits

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    with threadpool_limits(limits=2):
        yield
    torch.set_num_threads(previous)


def test_small_problems_run_on_one_thread_and_the_setting_is_restored(two_threads):
    X = np.random.default_rng(0).random((50, 20))
    assert threads_seen_by_nmf(X) == {1}
    assert torch.get_num_threads() == 2


def test_large_problems_use_torchs_threads_within_omp_num_threads(two_threads, monkeypatch):
    assert thread_count(10 * SMALL_WORK) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert thread_count(10 * SMALL_WORK) == 1
    with threads_for(10 * SMALL_WORK) as chosen:
        assert chosen == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    # 2400 x 1600 at k = 4: 4 n m k = 6e7 flops per iteration, above SMALL_WORK
    assert threads_seen_by_nmf(np.random.default_rng(0).random((2400, 1600))) == {2}


def test_threadpoolctl_limits_are_respected(two_threads):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        assert thread_count(10 * SMALL_WORK) == 1
    assert thread_count(10 * SMALL_WORK) == 2
