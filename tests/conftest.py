import os

import torch

# The suite runs under pytest-xdist (`-n auto` in pyproject.toml: one worker process per core),
# each worker on one thread: as many threads as cores, none oversubscribed (two workers of two
# threads each took 12 min on a 2-core machine, one thread each 5 min). Alone (`-n 0`) the tests
# run on two threads: .ci/run runs the numerically sensitive files that way too, so both summation
# orders are checked.
if os.environ.get("PYTEST_XDIST_WORKER"):
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # NumPy's and SciPy's BLAS as well as torch's
    torch.set_num_threads(1)
    # and the processes tests start (study pools, Dask workers, the command line) inherit it: with
    # the machine's cores each, the suite took 5:56-6:05 on 2 cores (two runs), with one 5:01-5:12
    os.environ["OMP_NUM_THREADS"] = "1"
else:
    torch.set_num_threads(2)

import pytest  # noqa: E402

CUDA_SKIP_REASON = "no CUDA device on this machine: the GPU half of the device-parametrised tests is skipped"


@pytest.fixture(
    params=[
        "cpu",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason=CUDA_SKIP_REASON)
        ),
    ]
)
def device(request):
    """Each device-parametrised test runs on the CPU and, where one is present, on CUDA."""
    return request.param
