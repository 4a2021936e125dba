"""Matrix completion: the entry-wise special case of sensing, ``A_i = e_j e_k^T``."""

from __future__ import annotations

import torch

from factorkit._validation import check_int


def random_mask(m: int, m2: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """A boolean ``(m, m')`` mask with exactly ``n`` observed entries, chosen uniformly."""
    m, m2, n = check_int("m", m), check_int("m2", m2), check_int("n", n)
    if n > m * m2:
        raise ValueError(f"n must be <= m * m2 = {m * m2}, got {n}")
    chosen = torch.randperm(m * m2, generator=generator)[:n]
    mask = torch.zeros(m * m2, dtype=torch.bool)
    mask[chosen] = True
    return mask.reshape(m, m2)


def entry_measurements(mask: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The measurement matrices ``e_j e_k^T`` of the observed entries, row-major order."""
    if mask.dtype != torch.bool or mask.dim() != 2:
        raise TypeError(f"mask must be a 2-D bool tensor, got {mask.dtype} of dim {mask.dim()}")
    rows, cols = mask.nonzero(as_tuple=True)
    A = torch.zeros(rows.numel(), *mask.shape, dtype=dtype)
    A[torch.arange(rows.numel()), rows, cols] = 1.0
    return A
