"""Argument checks shared by every module.

Each helper raises ``ValueError``/``TypeError`` naming the argument, the value received and
what is allowed, so that a bad call fails at the edge instead of deep inside a tensor op.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported where a check needs it, not here: modules that use only the scalar checks
# (QWEM, the eigensolver) start without paying torch's import
_DTYPE_NAMES = ("float32", "float64")


def check_int(name: str, value: object, minimum: int | None = 1) -> int:
    """Return ``value`` as ``int`` if it is an integer >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(
    name: str,
    value: object,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    upper: float | None = None,
) -> float:
    """Return ``value`` as a finite ``float`` satisfying the requested sign/upper bound."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    if upper is not None and value > upper:
        raise ValueError(f"{name} must be <= {upper}, got {value}")
    return value


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise name the allowed options."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_finite_tensor(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Refuse tensors that are not floating point or that hold NaN/inf."""
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {tensor.dtype}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or inf")
    return tensor


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Map ``'float32'``/``'float64'`` (or the torch dtypes themselves) to a torch dtype."""
    import torch

    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    return getattr(torch, check_choice("dtype", dtype, _DTYPE_NAMES))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Map ``None``/``'auto'`` to CUDA when available, else CPU; validate explicit names."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {device!r}") from err
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return resolved


def make_generator(seed: int | torch.Generator, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by ``seed`` (a generator passes through)."""
    import torch

    if isinstance(seed, torch.Generator):
        return seed
    seed = check_int("seed", seed, minimum=0)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
