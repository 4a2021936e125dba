"""What a G&C sampler returns: :class:`GuessCheckResult`, shared by every sampler."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats


def prior_moments(gen_sum: float, gen_sq_sum: float, evaluations: int) -> tuple[float, float]:
    """Mean of ``L_gen`` over every evaluated draw and its standard error, from the sums."""
    mean = gen_sum / evaluations
    variance = max(gen_sq_sum / evaluations - mean**2, 0.0)
    return mean, math.sqrt(variance / evaluations)


ESTIMATED = ("smc", "marginal")
"""Samplers whose ``V(eps)`` is an estimate in ``extra`` rather than an acceptance count."""


@dataclass
class GuessCheckResult:
    """Outcome of a G&C run.

    ``gen_loss_*`` summarize ``L_gen`` over accepted draws (NaN when none were accepted);
    ``prior_gen_loss_*`` over *every* evaluated draw: the random-guess reference.

    The per-draw tensors (``accepted_gen_loss``, ``accepted_train_loss``, ``accepted_W``) hold the
    first ``max_kept`` acceptances of the stream (rejection sampler), an i.i.d. sample of the
    posterior of bounded size; means and intervals use ``accepted_sums`` (``L_gen`` sum, ``L_gen^2``
    sum and ``L_train`` sum over *every* acceptance, float64) whenever acceptances were dropped, and
    the median is that of the kept sample.
    """

    eps: float
    accepted: int
    evaluations: int
    accepted_gen_loss: torch.Tensor
    accepted_train_loss: torch.Tensor
    accepted_W: torch.Tensor | None
    prior_gen_loss_mean: float
    prior_gen_loss_se: float
    wall_time: float
    reached_target: bool
    sampler: str = "rejection"
    extra: dict = field(default_factory=dict)
    prior_gen_loss_sums: tuple[float, float] | None = None
    """``(sum, sum of squares)`` of ``L_gen`` over every evaluated draw (rejection sampler)."""
    accepted_sums: tuple[float, float, float] | None = None
    """``(L_gen sum, L_gen^2 sum, L_train sum)`` over every accepted draw (rejection sampler)."""

    @property
    def kept(self) -> int:
        """How many accepted draws the per-draw tensors hold."""
        return int(self.accepted_gen_loss.numel())

    @property
    def _truncated(self) -> bool:
        return self.accepted_sums is not None and self.kept < self.accepted

    @property
    def acceptance_rate(self) -> float:
        """Fraction of evaluated draws accepted (for SMC: its estimate of ``V(eps)``)."""
        if self.sampler in ESTIMATED:
            return math.exp(self.extra["log_volume"]) if self.reached_target else float("nan")
        return self.accepted / self.evaluations if self.evaluations else float("nan")

    @property
    def log_volume(self) -> tuple[float, float]:
        """``(log V(eps), standard error)``; rejection: ``log(accepted / evaluations)``."""
        if self.sampler in ESTIMATED:
            return self.extra["log_volume"], self.extra["log_volume_se"]
        if self.accepted == 0:
            return float("-inf"), float("nan")
        rate = self.accepted / self.evaluations
        return math.log(rate), math.sqrt((1 - rate) / self.accepted)

    def to_payload(self) -> dict:
        """A rejection run (or one shard of it) as JSON-ready partial sums: the counts, the sums of
        ``L_gen`` and ``L_gen^2`` over every draw and over the acceptances, the accepted draws'
        losses (float32/float64 values survive JSON exactly); :meth:`from_payload` rebuilds it
        (without the sampled matrices), so shards stored apart merge exactly
        (:func:`~factorkit.fit.guess_check.combine_results`)."""
        return {
            "eps": self.eps,
            "accepted": self.accepted,
            "evaluations": self.evaluations,
            "prior_gen_loss_sums": list(self.prior_gen_loss_sums),
            "accepted_sums": list(self.accepted_sums),
            "accepted_gen_loss": self.accepted_gen_loss.tolist(),
            "accepted_train_loss": self.accepted_train_loss.tolist(),
            "dtype": str(self.accepted_gen_loss.dtype).removeprefix("torch."),
            "wall_time": self.wall_time,
            "reached_target": self.reached_target,
            "extra": self.extra,
        }

    @classmethod
    def from_payload(cls, payload: dict) -> GuessCheckResult:
        """The result :meth:`to_payload` wrote (payloads stored by an older version carry no
        acceptance sums, having kept every acceptance, nor ``reached_target``: a shard has no
        sample target, so it always reached it)."""
        dtype = getattr(torch, payload["dtype"])
        sums = tuple(payload["prior_gen_loss_sums"])
        prior_mean, prior_se = prior_moments(*sums, payload["evaluations"]) if payload["evaluations"] else (
            float("nan"), float("nan"))  # fmt: skip
        return cls(
            eps=payload["eps"],
            accepted=payload["accepted"],
            evaluations=payload["evaluations"],
            accepted_gen_loss=torch.tensor(payload["accepted_gen_loss"], dtype=dtype),
            accepted_train_loss=torch.tensor(payload["accepted_train_loss"], dtype=dtype),
            accepted_W=None,
            prior_gen_loss_mean=prior_mean,
            prior_gen_loss_se=prior_se,
            wall_time=payload["wall_time"],
            reached_target=payload.get("reached_target", True),
            extra=payload["extra"],
            prior_gen_loss_sums=sums,
            accepted_sums=tuple(payload["accepted_sums"]) if "accepted_sums" in payload else None,
        )

    def acceptance_interval(self, level: float = 0.95) -> tuple[float, float]:
        """Clopper-Pearson (exact binomial) interval for the acceptance probability.

        SMC: the volume ``V(eps)`` it estimates, ``exp(log V -/+ z se)`` from the runs' spread (its
        particles are not binomial draws).
        """
        if self.sampler in ESTIMATED:
            if not self.reached_target:
                return (float("nan"), float("nan"))
            log_volume, se = self.log_volume
            z = float(stats.norm.ppf(0.5 + level / 2))
            se = se if math.isfinite(se) else 0.0
            return (math.exp(log_volume - z * se), math.exp(log_volume + z * se))
        k, n, alpha = self.accepted, self.evaluations, 1 - level
        if n == 0:
            return (0.0, 1.0)
        low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
        high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
        return (low, high)

    @property
    def gen_loss_mean(self) -> float:
        """Posterior mean of ``L_gen``; the marginal sampler's is Rao-Blackwellized (the exact
        conditional mean given the hidden layers and the measurements, averaged)."""
        if "gen_loss_rb" in self.extra:
            return self.extra["gen_loss_rb"]
        if self._truncated:
            return self.accepted_sums[0] / self.accepted
        return _mean(self.accepted_gen_loss)

    def gen_loss_interval(self, level: float = 0.95) -> tuple[float, float]:
        """Student-t interval for the posterior mean of ``L_gen`` (NaN with < 2 acceptances).

        SMC particles are correlated: their interval uses the effective sample size. The marginal
        sampler's is that of its Rao-Blackwellized mean (its standard error over ``ESS`` draws).
        """
        if "gen_loss_rb_se" in self.extra:
            quantile = float(stats.t.ppf(0.5 + level / 2, max(self.extra["ess"], 2.0) - 1))
            half = quantile * self.extra["gen_loss_rb_se"]
            return (self.gen_loss_mean - half, self.gen_loss_mean + half)
        size = self.extra.get("ess", self.accepted) if self.sampler == "smc" else self.accepted
        if self.accepted < 2 or not size >= 2:
            return (float("nan"), float("nan"))
        if self._truncated:
            gen_sum, gen_sq_sum, _ = self.accepted_sums
            std = math.sqrt(max(gen_sq_sum - gen_sum**2 / self.accepted, 0.0) / (self.accepted - 1))
        else:
            std = float(np.std(_float64(self.accepted_gen_loss), ddof=1))
        half = float(stats.t.ppf(0.5 + level / 2, size - 1)) * std / math.sqrt(size)
        return (self.gen_loss_mean - half, self.gen_loss_mean + half)

    def summary(self) -> dict:
        """JSON-ready figures of the run."""
        rate_low, rate_high = self.acceptance_interval()
        gen_low, gen_high = self.gen_loss_interval()
        log_volume, log_volume_se = self.log_volume
        extra = {k: v for k, v in self.extra.items() if k != "level_log"}
        return {
            "sampler": self.sampler,
            "eps": self.eps,
            "accepted": self.accepted,
            "evaluations": self.evaluations,
            "acceptance_rate": self.acceptance_rate,
            "acceptance_ci": [rate_low, rate_high],
            "gen_loss": self.gen_loss_mean,
            "gen_loss_ci": [gen_low, gen_high],
            "gen_loss_median": (
                float(self.accepted_gen_loss.double().median()) if self.accepted else float("nan")
            ),
            "train_loss": (
                self.accepted_sums[2] / self.accepted if self._truncated else _mean(self.accepted_train_loss)
            ),
            "kept": self.kept,
            "prior_gen_loss": self.prior_gen_loss_mean,
            "prior_gen_loss_se": self.prior_gen_loss_se,
            "log_volume": log_volume,
            "log_volume_se": log_volume_se,
            "reached_target": self.reached_target,
            "wall_time": self.wall_time,
            **extra,
        }


def _float64(values: torch.Tensor) -> np.ndarray:
    return values.detach().to("cpu", torch.float64).numpy()


def _mean(values: torch.Tensor) -> float:
    """Mean in float64 by NumPy's pairwise sum: the same figure whatever torch's thread count."""
    return float(np.mean(_float64(values))) if values.numel() else float("nan")
