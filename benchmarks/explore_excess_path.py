"""An exploration, not a sampler of the library: the capped path ended by tempering the excess
above its last cap, for the population-size bias of its last level.

    python benchmarks/explore_excess_path.py ACTIVATION STEPS PARTICLES [PARTICLES ...]

The capped path (:class:`factorkit.fit.weights.Capped`) ends with the increment ``w / min(w,
e^c)``, whose variance is infinite under every capped target where the weight's tail index
``alpha`` is 2 or less; at 500 particles its answers stay biased however many moves it gets
(``benchmarks/README.md``, "The particles, not the moves"). Here, where the capped path would jump
to the uncapped weight, it instead walks ``prior * min(w, e^c) * (w / min(w, e^c))^beta`` from
``beta = 0`` to 1 at the last cap ``c``: incremental weights ``(w / min(w, e^c))^(beta' -
beta)``, each step at most 0.9 of ``(alpha - beta) / 2`` (the increment's second moment
``E[w^(beta + 2 (beta' - beta))]`` is finite exactly when ``beta + 2 (beta' - beta) < alpha``),
``alpha`` the counted tail index, and otherwise as large as keeps half the ESS. The sampler's
own moves, accepted on that target. It swaps the path in through ``marginal_sampler.temper``
(``path='capped'``) on ``width_rank2``'s width-5 cell (m = m' = 5, rank 2, n = 22, seed 0,
float64) for ``ACTIVATION`` and prints, for each population size, ``log p(h = y)`` and the
posterior mean of ``L_gen`` with the 8 runs' standard errors, the evaluations and the first runs'
levels (``method='smc'``, ``check_effort=False``, seed 3, as ``bench_effort.py`` runs its cells).
"""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import torch

from factorkit.fit import marginal_sampler, weights
from factorkit.fit.prior import resolve_prior
from factorkit.fit.smc import pcn_moves
from factorkit.fit.tail import weight_tail_index
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem

SAFETY = 0.9  # the share of (alpha - beta) / 2 a step may take


@dataclasses.dataclass(frozen=True)
class Excess:
    """The target ``prior * min(w, e^cap) * (w / min(w, e^cap))^beta``, with the level interface
    of :class:`~factorkit.fit.weights.Capped`."""

    cap: float
    beta: float
    alpha: float

    @property
    def last(self) -> bool:
        return self.beta >= 1.0

    def _target(self, ell: torch.Tensor) -> torch.Tensor:
        inside = ell.clamp(max=self.cap) + self.beta * (ell - self.cap).clamp(min=0)
        return torch.where(torch.isfinite(ell), inside, torch.full_like(ell, -math.inf))

    def log_ratio(self, proposed: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        difference = self._target(proposed) - self._target(current)
        return torch.where(torch.isfinite(proposed), difference, torch.full_like(proposed, -math.inf))

    def floor(self, current: torch.Tensor, log_u: torch.Tensor) -> torch.Tensor:
        target = self._target(current) + log_u
        return torch.where(
            target <= self.cap, target, self.cap + (target - self.cap) / max(self.beta, 1e-300)
        )

    def increment(self, ell: np.ndarray, following: Excess) -> np.ndarray:
        return np.where(
            np.isfinite(ell), (following.beta - self.beta) * np.maximum(ell - self.cap, 0.0), -np.inf
        )

    def following(self, ell: np.ndarray, fraction: float) -> Excess:
        excess = np.where(np.isfinite(ell), np.maximum(ell - self.cap, 0.0), -np.inf)
        beta = weights.next_temperature(excess, self.beta, fraction)
        bound = self.beta + SAFETY * (self.alpha - self.beta) / 2
        return Excess(self.cap, min(beta, bound, 1.0) if bound < 1.0 else min(beta, 1.0), self.alpha)

    def record(self) -> dict:
        return {"cap": self.cap, "beta": self.beta}


def capped_then_excess(alpha: float):
    """A stand-in for :func:`~factorkit.fit.weights.temper` (same arguments and returns): capped
    levels, then :class:`Excess` levels at the last cap (module docstring)."""

    def run(log_weight_of, latent, n_particles, mcmc_steps, target_acceptance, generator, *, nothing, screen,
            matrices=0, fraction=None, path="capped"):  # fmt: skip
        scale_moves = mcmc_steps // 2 if matrices else 0
        mcmc_steps -= scale_moves
        fraction = weights.TEMPER_FRACTION if fraction is None else fraction
        value = log_weight_of(latent, None)
        evaluations, level = n_particles, weights.Capped(-math.inf)
        log_volume, step, spread, levels = 0.0, 0.5, 1.0, []
        while not level.last:
            if not bool(torch.isfinite(value).any()):
                raise RuntimeError(nothing)
            ell = value.numpy()
            following = level.following(ell, fraction)
            if isinstance(following, weights.Capped) and following.last:  # temper the excess instead
                level = Excess(level.cap, 0.0, alpha)
                following = level.following(ell, fraction)
            increment = level.increment(ell, following)
            log_volume += weights.log_mean_exp(increment)
            index = weights.systematic_resample(weights.normalized_weights(increment), n_particles, generator)
            index = torch.from_numpy(index)
            latent, value, level = [u[index] for u in latent], value[index], following

            def metropolis(proposal, current, level=level):
                log_u = torch.rand(n_particles, generator=generator, dtype=torch.float64).log()
                proposed = log_weight_of(proposal, level.floor(current, log_u).numpy() if screen else None)
                return log_u < level.log_ratio(proposed, current), proposed

            latent, value, step, acceptance = pcn_moves(
                latent, value, metropolis, step, mcmc_steps, target_acceptance, generator
            )
            cache = weights.singular_cache()
            for _ in range(scale_moves):
                latent, value, spread, _ = weights.singular_value_moves(
                    latent, value, log_weight_of, level, spread, target_acceptance, generator, matrices, cache
                )
            evaluations += n_particles * (mcmc_steps + scale_moves)
            levels.append(
                {**level.record(), "log_volume": log_volume, "acceptance": acceptance, "step": step}
            )
        return latent, value, log_volume, levels, evaluations

    return run


def main() -> None:
    if len(sys.argv) < 4:
        raise SystemExit(__doc__.splitlines()[3].strip())
    activation, steps, populations = sys.argv[1], int(sys.argv[2]), [int(p) for p in sys.argv[3:]]
    torch.set_num_threads(1)
    problem = make_sensing_problem(5, 5, rank=2, n=22, seed=0, dtype="float64")
    model = DeepFactorization(5, 5, 5, 2, activation)
    prior = resolve_prior("gaussian", problem)
    marginal_sampler.temper = capped_then_excess(weight_tail_index(problem, model, prior).alpha)
    header = [
        "activation",
        "moves",
        "particles",
        "log p(h = y)",
        "L_gen (posterior)",
        "evaluations",
        "levels",
    ]
    print("| " + " | ".join(header) + " |")
    print("|---|---:|---:|---|---|---:|---|")
    for particles in populations:
        result = marginal_sampler.marginal_sample(
            problem, model, eps=0.0, prior=prior, method="smc", runs=8, target_ess=1, mcmc_steps=steps,
            n_particles=particles, check_effort=False, path="capped", seed=3, keep_samples=False,
        )  # fmt: skip
        extra = result.extra
        cells = [activation, steps, particles, f"{extra['log_density']:.3f} +- {extra['log_density_se']:.3f}",
                 f"{extra['gen_loss_rb']:.4f} +- {extra['gen_loss_rb_se']:.4f}", f"{result.evaluations:.3g}",
                 ", ".join(map(str, extra["temperatures"][:3]))]  # fmt: skip
        print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()
