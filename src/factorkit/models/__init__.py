"""How a candidate W is parameterized."""

from factorkit.models.deep import ACTIVATIONS, DeepFactorization, activation_name, get_activation

__all__ = ["ACTIVATIONS", "DeepFactorization", "activation_name", "get_activation"]
