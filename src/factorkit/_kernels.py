"""CPU kernels for the many small tensors of the deep models: batched products, ``tanh`` and row
selection through NumPy where torch's CPU kernels are slower.

The paper's GD batches, G&C prior draws and SMC populations are thousands of tiny matrices
(``5 x 5`` to ``5 x 160``). On the CPU, torch's ``bmm`` loops over such a batch with a per-matrix
kernel, and its float32 ``tanh`` is not vectorized in the builds measured here; NumPy's stacked
``matmul`` and its SIMD ``tanh`` compute the same values (the products to rounding, summed in
another order; ``tanh`` within 1.4 float32 ulps of the correctly rounded value, torch's 0.5) in
a fraction of the time (``python benchmarks/bench_kernels.py``: 1.6-12x on the products it
routes, 2.5-6x on ``tanh``). NumPy only sees tensors that need no gradient (``torch.from_numpy`` and
``Tensor.numpy`` share memory, nothing is copied); autograd, CUDA and other dtypes keep torch's
kernels, and so does every call while :data:`NUMPY_KERNELS` is off (the benchmarks' baseline).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

NUMPY_KERNELS = True
"""Whether the kernels below may route through NumPy (:func:`torch_kernels` turns it off)."""
SMALL_PRODUCT_BATCH = 64
"""Batches below this many products stay with ``torch.bmm`` (one call's overhead either way)."""
_DTYPES = (torch.float32, torch.float64)


@contextlib.contextmanager
def torch_kernels():
    """Within the block every kernel here is torch's own: the baseline the benchmarks time against."""
    global NUMPY_KERNELS
    saved, NUMPY_KERNELS = NUMPY_KERNELS, False
    try:
        yield
    finally:
        NUMPY_KERNELS = saved


def numpy_path(a: torch.Tensor, b: torch.Tensor | None = None) -> bool:
    """Whether ``a`` (and ``b``) may go through NumPy: on the CPU, one float dtype, no gradient
    needed. Written out for one or two tensors, no loop: :func:`batched_product` asks about 30
    times a GD step of the paper's deep nets, where a general form's overhead was ~7% of the step
    (``benchmarks/bench_gd_step.py``, last line)."""
    b = a if b is None else b
    dtype = a.dtype
    return (
        NUMPY_KERNELS
        and dtype in _DTYPES
        and b.dtype is dtype
        and a.is_cpu
        and b.is_cpu
        and not ((a.requires_grad or b.requires_grad) and torch.is_grad_enabled())
    )


def _array(t: torch.Tensor) -> np.ndarray:
    """``t``'s memory as a NumPy array (a tensor that requires a gradient is detached first)."""
    return (t.detach() if t.requires_grad else t).numpy()


def _transposed(matrix: torch.Tensor) -> bool:
    """A transposed view (its last two axes column-major), as the backward pass's ``G H^T``: there
    ``torch.bmm`` is as fast as NumPy or faster in float32 (it hands the transpose to BLAS)."""
    return not matrix.is_contiguous() and matrix.mT.is_contiguous()


def batched_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(a, b)``; through NumPy's stacked matmul for batches of at least
    :data:`SMALL_PRODUCT_BATCH` CPU products that need no gradient, unless ``b`` is a transposed
    view (``benchmarks/bench_kernels.py``: a layer's product and the backward's ``W^T G`` 1.6-12x
    faster on the paper's shapes; the backward's ``G H^T`` 0.6-1.1x in float32, left to torch)."""
    if a.shape[0] >= SMALL_PRODUCT_BATCH and numpy_path(a, b) and not _transposed(b):
        return torch.from_numpy(np.matmul(_array(a), _array(b)))
    return torch.bmm(a, b)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """``torch.tanh(x)``, by NumPy's vectorized ``tanh`` where :func:`numpy_path` allows."""
    if numpy_path(x):
        return torch.from_numpy(np.tanh(_array(x)))
    return torch.tanh(x)


def copy_rows(target: torch.Tensor, source: torch.Tensor, rows: torch.Tensor) -> None:
    """``target[rows] = source[rows]`` in place (``rows`` a boolean mask of the leading axis): the
    accepted proposals of an MCMC step, copied exactly."""
    if numpy_path(target, source) and not target.requires_grad:
        keep = rows.cpu().numpy()
        target.numpy()[keep] = _array(source)[keep]
    else:
        target[rows] = source[rows]
