"""How weights are found: gradient descent, Guess & Check, convex references."""

from factorkit.fit.auto import auto_sample, sample_posterior
from factorkit.fit.gd import OPTIMIZERS, GDResult, train_gd
from factorkit.fit.guess_check import PRIORS, guess_and_check
from factorkit.fit.marginal_sampler import marginal_sample
from factorkit.fit.nuclear import NuclearNormResult, min_nuclear_norm
from factorkit.fit.prior import Prior
from factorkit.fit.result import GuessCheckResult
from factorkit.fit.smc import subset_simulation

__all__ = [
    "OPTIMIZERS",
    "PRIORS",
    "GDResult",
    "GuessCheckResult",
    "NuclearNormResult",
    "Prior",
    "auto_sample",
    "guess_and_check",
    "marginal_sample",
    "min_nuclear_norm",
    "sample_posterior",
    "subset_simulation",
    "train_gd",
]
