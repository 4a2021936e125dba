"""Optimizers that torch lacks or that we study."""

from factorkit.optim.adafactor import Adafactor, state_size
from factorkit.optim.group_rmsprop import GroupRMSprop

__all__ = ["Adafactor", "GroupRMSprop", "state_size"]
