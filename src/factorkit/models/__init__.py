"""How a candidate W is parameterized."""

from factorkit.models.deep import ACTIVATIONS, DeepFactorization, activation_name, get_activation
from factorkit.models.symmetric import SymmetricFactorization

__all__ = ["ACTIVATIONS", "DeepFactorization", "SymmetricFactorization", "activation_name", "get_activation"]
