"""Pooling independent runs by their normalizing constants, shared by subset simulation
(:mod:`factorkit.fit.smc`) and the marginal samplers' tempered runs (:mod:`factorkit.fit.weights`,
which re-exports :func:`log_mean_exp` and :func:`systematic_resample`): the log of a mean of
constants given by their logs, its delta-method standard error, systematic resampling, and the
draws of several runs resampled to the runs' weights."""

from __future__ import annotations

import math

import numpy as np
import torch


def log_mean_exp(values: np.ndarray) -> float:
    """``log mean exp(values)`` without overflow (``-inf`` when every value is)."""
    values = np.asarray(values, dtype=np.float64)
    top = values.max() if values.size else -np.inf
    if not np.isfinite(top):
        return float(top)
    return float(top + np.log(np.mean(np.exp(values - top))))


def log_mean_se(log_values: np.ndarray) -> float:
    """The standard error of ``log mean exp(log_values)`` by the delta method (the runs' spread of
    ``exp(log_values)`` over their mean, over ``sqrt(runs)``); NaN for one run."""
    log_values = np.asarray(log_values, dtype=np.float64)
    if log_values.size < 2:
        return math.nan
    scaled = np.exp(log_values - log_values.max())
    return float(scaled.std(ddof=1) / math.sqrt(scaled.size) / scaled.mean())


def systematic_resample(weights: np.ndarray, count: int, generator: torch.Generator) -> np.ndarray:
    """``count`` indices drawn by systematic resampling of normalized ``weights``: one uniform
    offset (from ``generator``, on its device), points ``(offset + i) / count``; each index appears
    ``floor`` or ``ceil`` of ``count * w`` times (unbiased, the least resampling noise of the
    standard schemes)."""
    offset = float(torch.rand(1, generator=generator, dtype=torch.float64, device=generator.device))
    points = (offset + np.arange(count)) / count
    cumulative = np.cumsum(weights)
    cumulative[-1] = 1.0
    return np.searchsorted(cumulative, points, side="right").clip(0, weights.size - 1)


def pooled_index(sizes: np.ndarray, run_weights: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """Indices into the runs' draws concatenated (run ``r`` contributing ``sizes[r]``), as many as
    there are, systematically resampled so that every draw of run ``r`` weighs ``run_weights[r]``
    over its run's draws: the pooled sample's mean is then the runs' means pooled by their weights."""
    sizes = np.asarray(sizes)
    per_draw = np.repeat(np.asarray(run_weights, dtype=np.float64) / sizes, sizes)
    return torch.from_numpy(systematic_resample(per_draw / per_draw.sum(), int(sizes.sum()), generator))
