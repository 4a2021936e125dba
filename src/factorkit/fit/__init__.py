"""How weights are found: gradient descent, Guess & Check, convex references."""

from factorkit.fit.gd import OPTIMIZERS, GDResult, train_gd
from factorkit.fit.guess_check import PRIORS, GuessCheckResult, Prior, guess_and_check
from factorkit.fit.nuclear import NuclearNormResult, min_nuclear_norm

__all__ = [
    "OPTIMIZERS",
    "PRIORS",
    "GDResult",
    "GuessCheckResult",
    "NuclearNormResult",
    "Prior",
    "guess_and_check",
    "min_nuclear_norm",
    "train_gd",
]
