"""How a candidate W is parameterized."""

from factorkit.models.deep import (
    ACTIVATIONS,
    DeepFactorization,
    MemberActivations,
    MixedDepths,
    activation_backward,
    activation_name,
    get_activation,
)
from factorkit.models.symmetric import SymmetricFactorization

__all__ = [
    "ACTIVATIONS",
    "DeepFactorization",
    "MemberActivations",
    "MixedDepths",
    "SymmetricFactorization",
    "activation_backward",
    "activation_name",
    "get_activation",
]
