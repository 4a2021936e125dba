"""Optimizers that torch lacks or that we study."""

from factorkit.optim.group_rmsprop import GroupRMSprop

__all__ = ["GroupRMSprop"]
