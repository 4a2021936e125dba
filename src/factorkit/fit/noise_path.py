"""Sequential Monte Carlo to the ``eps = 0`` posterior along the measurement-noise path.

At ``eps = 0`` the hidden layers weigh ``w(G) = N(y; 0, Sigma(G))``, a density that is unbounded
near hidden layers of low rank whose range still fits ``y`` (:mod:`factorkit.fit.tail`). Where the
counted tail index ``alpha`` is below 2 the posterior's mass spreads over many decades of that
depth: the posterior probability that ``Sigma``'s small eigenvalues lie below ``d`` falls only like
a power of ``d`` (``d^(alpha - 1)`` for the simplest strata, ``d^(1/7)`` at ``width_rank2``'s width 5).
Tempering the weight, ``prior * w^beta`` with ``beta`` from 0 to 1
(:func:`~factorkit.fit.weights.temper`), keeps that depth out of sight until ``beta`` is close to
1 and then asks the particles to find it in a few temperatures; they do not, and the answers move
with the moves per temperature (``benchmarks/bench_noise_path.py``).

This path adds Gaussian noise of variance ``d`` to the measurements instead: the targets

    pi_d(u) ∝ prior(u) N(y; 0, Sigma(G(u)) + d I),

the posterior of G&C with a Gaussian acceptance kernel of width ``d``, bounded by
``(2 pi d)^(-n/2)``: strata deeper than ``d`` are flattened to depth ``d``. ``d`` starts far
above ``Sigma``'s eigenvalues (``pi_d`` is then nearly the prior) and falls by at most
:data:`NOISE_RATIO` per level, so the population follows the strata down a decade at a time (the
singular-value moves of :func:`~factorkit.fit.weights.singular_value_moves` walk that depth), and
ends at ``d = 0``, the ``eps = 0`` posterior itself, once ``d`` is below :data:`NOISE_FLOOR` of
its start. Each level: the next ``d`` (the smallest the ratio allows, or larger where the
incremental weights ``N(y; Sigma + d' I) / N(y; Sigma + d I)`` would keep less than half the
population's ESS), the incremental weights' mean into ``log p(y)``, systematic resampling, then
pCN and singular-value moves with a Metropolis test on ``pi_d'``. Every target along the path is
exact and every kernel leaves it invariant, so the run's estimates carry SMC's usual guarantees
(unbiased ``p(y)``, consistent posterior means); only the path differs from tempering.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from factorkit.fit import weights
from factorkit.fit.ball import log_gaussian_density
from factorkit.fit.smc import pcn_moves
from factorkit.fit.weights import (
    MAX_TEMPERATURES,
    Power,
    kish_ess,
    log_mean_exp,
    normalized_weights,
    singular_cache,
    singular_value_moves,
    systematic_resample,
)

WHOLE = Power(1.0)
"""Each noise level's target weighs the particles by its whole density (a power of 1)."""
NOISE_START = 100.0
"""The first noise variance over the median (over the first population) of ``Sigma``'s largest
eigenvalue: the first target is then within a few percent of the prior."""
NOISE_RATIO = 10.0
"""The most the noise variance falls in one level. Ten: on ``width_rank2``'s width-5 ``eps = 0``
cells a level per decade and 40 moves a level agree with the funnel proposal and 640-step
tempering where tempering at 40 moves is 25-40% off (``benchmarks/bench_noise_path.py``)."""
NOISE_FLOOR = 1e-14
"""The path jumps to ``d = 0`` once ``d`` is below this times its start (``1e-12`` of the largest
eigenvalues): deeper than ``CHOLESKY_RTOL`` and close to ``NULL_RTOL``, where the weight itself
is computed by the eigenvalues (:mod:`factorkit.fit.marginal`)."""


def log_noisy_density(values: np.ndarray, centre: np.ndarray, noise: float) -> np.ndarray:
    """``log N(y; 0, Sigma + noise I)`` per row from ``Sigma``'s eigenvalues and ``centre = U^T y``
    (``noise = 0``: :func:`~factorkit.fit.ball.log_gaussian_density`, singular ``Sigma`` included)."""
    if noise == 0:
        return log_gaussian_density(values, centre)
    shifted = np.asarray(values, dtype=np.float64) + noise
    n = shifted.shape[-1]
    return -0.5 * (n * math.log(2 * math.pi) + np.log(shifted).sum(-1) + (centre**2 / shifted).sum(-1))


def next_noise(values: np.ndarray, centre: np.ndarray, current: np.ndarray, noise: float, floor: float,
               fraction: float = 0.5) -> float:  # fmt: skip
    """The next level's noise variance after ``noise``: the lowest the ratio allows,
    ``noise / NOISE_RATIO`` (``0`` once that is below ``floor``), where the incremental weights
    from the population's ``current`` log-weights keep Kish's ESS at ``fraction`` of the
    population; else the smallest ``d`` above ``noise / NOISE_RATIO`` that does (bisection on
    ``log d``; the ESS falls as ``d`` does)."""
    lowest = noise / NOISE_RATIO

    def kept(d: float) -> float:
        increment = log_noisy_density(values, centre, d) - current
        increment = np.where(np.isfinite(increment), increment, -np.inf)
        return kish_ess(normalized_weights(increment)) / increment.size

    if kept(lowest if lowest >= floor else 0.0) >= fraction:
        return lowest if lowest >= floor else 0.0
    if kept(lowest) >= fraction:  # below the floor, 0 is too far yet: the ratio's step
        return lowest
    low, high = math.log(lowest), math.log(noise)  # kept(e^low) < fraction <= kept(e^high)
    for _ in range(50):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if kept(math.exp(middle)) < fraction else (low, middle)
    return min(math.exp(high), noise * (1 - 1e-9))


def anneal_noise(log_density_at, spectrum_of, latent, n_particles, mcmc_steps, target_acceptance, generator,
                 *, matrices: int = 0):  # fmt: skip
    """One SMC run along the noise path (module docstring) from standard-normal ``latent``.

    ``log_density_at(latent, noise)``: ``log N(y; 0, Sigma + noise I)`` per particle (a tensor;
    ``noise = 0`` the exact ``eps = 0`` weight); ``spectrum_of(latent)``: ``(values, centre)`` of
    ``Sigma`` per particle, read once a level to choose the next noise. ``mcmc_steps`` moves per
    level, half of them :func:`~factorkit.fit.weights.singular_value_moves` of the first
    ``matrices`` latents where there are any (as :func:`~factorkit.fit.weights.temper`). Returns
    the final ``latent``, their log-weights at ``noise = 0``, ``log p(y)`` (the product of the
    levels' mean incremental weights), the levels (each with its ``noise``) and the evaluations."""
    scale_moves = mcmc_steps // 2 if matrices else 0
    pcn_steps = mcmc_steps - scale_moves
    values, centre = spectrum_of(latent)
    noise = NOISE_START * float(np.median(values.max(-1)))
    if not noise > 0:
        raise RuntimeError("every hidden-layer draw gives Sigma = 0: there is no noise scale to start from")
    floor = NOISE_FLOOR * noise
    value = log_density_at(latent, noise)
    evaluations = n_particles
    log_volume = log_mean_exp(value.numpy())
    index = torch.from_numpy(systematic_resample(normalized_weights(value.numpy()), n_particles, generator))
    latent, value = [u[index] for u in latent], value[index]
    step, spread = 0.5, 1.0
    levels = []
    while True:
        if len(levels) >= MAX_TEMPERATURES:
            raise RuntimeError(
                f"the noise path did not reach 0 in {MAX_TEMPERATURES} levels (at {noise:.3g})"
            )

        def log_weight_of(proposal, _floor=None, noise=noise):
            return log_density_at(proposal, noise)

        def metropolis(proposal, current):
            log_u = torch.rand(n_particles, generator=generator, dtype=torch.float64).log()
            proposed = log_weight_of(proposal)
            return log_u < WHOLE.log_ratio(proposed, current), proposed

        latent, value, step, acceptance = pcn_moves(
            latent, value, metropolis, step, pcn_steps, target_acceptance, generator
        )
        cache = singular_cache()  # the block of scale moves shares one decomposition per matrix
        for _ in range(scale_moves):
            latent, value, spread, _ = singular_value_moves(
                latent, value, log_weight_of, WHOLE, spread, target_acceptance, generator, matrices, cache
            )
        evaluations += n_particles * mcmc_steps
        levels.append({"noise": noise, "log_volume": log_volume, "acceptance": acceptance, "step": step})
        if noise == 0:
            return latent, value, log_volume, levels, evaluations
        values, centre = spectrum_of(latent)
        following = next_noise(values, centre, value.numpy(), noise, floor, weights.TEMPER_FRACTION)
        new = log_density_at(latent, following)
        evaluations += n_particles
        increment = (new - value).numpy()
        increment = np.where(np.isfinite(increment), increment, -np.inf)
        if not np.isfinite(increment).any():
            raise RuntimeError(f"no particle keeps a weight at noise {following:.3g}")
        log_volume += log_mean_exp(increment)
        index = torch.from_numpy(systematic_resample(normalized_weights(increment), n_particles, generator))
        latent, value, noise = [u[index] for u in latent], new[index], following


__all__ = [
    "NOISE_FLOOR",
    "NOISE_RATIO",
    "NOISE_START",
    "anneal_noise",
    "log_noisy_density",
    "next_noise",
]
