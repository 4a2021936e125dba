"""The NumPy routes of ``factorkit._kernels`` against torch's own kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from factorkit import _kernels
from factorkit._kernels import SMALL_PRODUCT_BATCH, batched_product, copy_rows, tanh, torch_kernels


@pytest.fixture
def matmul_calls(monkeypatch):
    """Counts the calls of NumPy's matmul made by the kernels."""
    calls = []
    original = np.matmul

    def counting(a, b):
        calls.append((a.shape, b.shape))
        return original(a, b)

    monkeypatch.setattr(_kernels.np, "matmul", counting)
    return calls


def _layouts(batch, m, k, n, dtype, generator):
    """``(a, b, route)``: contiguous factors, a transposed ``a``, a transposed ``b`` (torch's)."""
    a = torch.randn(batch, m, k, generator=generator, dtype=dtype)
    b = torch.randn(batch, k, n, generator=generator, dtype=dtype)
    return [
        (a, b, "numpy"),
        (a.mT.contiguous().mT, b, "numpy"),
        (a, b.mT.contiguous().mT, "torch"),
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(5, 5, 5), (5, 160, 5), (160, 5, 5), (20, 20, 5)])
def test_batched_product_matches_bmm_on_each_route(dtype, shape, matmul_calls):
    """Every layout of the paper's shapes equals ``torch.bmm`` to rounding: NumPy sums the ``k``
    products in another order, so the bound is ``k`` ulps of the sum of their magnitudes (any
    order's error is below it); a transposed ``b`` stays with torch (bit-identical), the others
    go through NumPy (counted)."""
    g = torch.Generator().manual_seed(0)
    for a, b, route in _layouts(SMALL_PRODUCT_BATCH * 2, *shape, dtype, g):
        before = len(matmul_calls)
        fast, reference = batched_product(a, b), torch.bmm(a, b)
        assert fast.dtype == dtype and fast.shape == reference.shape
        assert len(matmul_calls) - before == (route == "numpy")
        if route == "torch":
            assert torch.equal(fast, reference)
        bound = shape[1] * torch.finfo(dtype).eps * (a.abs() @ b.abs())
        assert bool(((fast - reference).abs() <= bound).all())


def test_batched_product_keeps_torch_for_gradients_small_batches_and_the_switch(matmul_calls):
    g = torch.Generator().manual_seed(1)
    a = torch.randn(SMALL_PRODUCT_BATCH, 5, 5, generator=g, requires_grad=True)
    b = torch.randn(SMALL_PRODUCT_BATCH, 5, 3, generator=g)
    out = batched_product(a, b)
    assert out.grad_fn is not None and not matmul_calls
    out.sum().backward()
    torch.testing.assert_close(a.grad, b.sum(2).unsqueeze(1).expand_as(a), rtol=0, atol=0)
    with torch.no_grad():  # no gradient needed: NumPy, even for a leaf that requires one
        batched_product(a, b)
    assert len(matmul_calls) == 1
    batched_product(a.detach()[: SMALL_PRODUCT_BATCH - 1], b[: SMALL_PRODUCT_BATCH - 1])
    assert len(matmul_calls) == 1  # a batch below SMALL_PRODUCT_BATCH
    with torch_kernels():
        assert torch.equal(batched_product(a.detach(), b), torch.bmm(a.detach(), b))
    assert len(matmul_calls) == 1 and _kernels.NUMPY_KERNELS
    batched_product(a.detach().long(), b.long())  # integers: torch
    assert len(matmul_calls) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tanh_is_within_two_ulps_of_the_correctly_rounded_value(dtype):
    """NumPy's tanh within 2 ulps of a reference at every magnitude, from tiny inputs (where
    ``tanh(x) = x`` to rounding) to saturation: float32 against torch's float64 tanh (correctly
    rounded in float32 to within its own 0.5 ulp), float64 against torch's float64 (two
    implementations of at most an ulp each; NumPy's SIMD float32 tanh measured 1.4 ulps at most).
    Exactly ``torch.tanh`` inside ``torch_kernels``."""
    g = torch.Generator().manual_seed(2)
    x = torch.cat([torch.randn(20000, generator=g, dtype=dtype) * s for s in (1e-30, 1e-6, 1e-2, 1, 4, 30)])
    x = torch.cat([x, torch.tensor([0.0, -0.0, float("inf"), -float("inf")], dtype=dtype)])
    y = tanh(x)
    assert y.dtype == dtype and y.shape == x.shape
    reference = torch.tanh(x.double()) if dtype == torch.float32 else torch.tanh(x)
    ulp = torch.finfo(dtype).eps * reference.abs().to(dtype).double()
    assert bool(((y.double() - reference).abs() <= 2 * ulp + torch.finfo(dtype).tiny).all())
    assert torch.equal(y[-4:], torch.tensor([0.0, -0.0, 1.0, -1.0], dtype=dtype))
    assert bool(torch.isnan(tanh(torch.tensor([float("nan")], dtype=dtype))).all())
    with torch_kernels():
        assert torch.equal(tanh(x), torch.tanh(x))


def test_tanh_keeps_autograd():
    x = torch.linspace(-3, 3, 50, requires_grad=True)
    tanh(x).sum().backward()
    torch.testing.assert_close(x.grad, 1 - torch.tanh(x.detach()) ** 2)


def test_copy_rows_copies_exactly_the_masked_rows():
    g = torch.Generator().manual_seed(3)
    target, source = torch.randn(100, 5, 4, generator=g), torch.randn(100, 5, 4, generator=g)
    rows = torch.rand(100, generator=g) < 0.4
    expected = target.clone()
    expected[rows] = source[rows]
    copy_rows(target, source, rows)
    assert torch.equal(target, expected)
    leaf = torch.zeros(10, 2, requires_grad=True)  # needs a gradient: torch's indexing, which refuses
    with pytest.raises(RuntimeError):
        copy_rows(leaf, torch.ones(10, 2), torch.ones(10, dtype=torch.bool))
