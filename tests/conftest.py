import torch

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
