"""What the estimators share: seeds from ``random_state``, arrays to tensors.

One small module the methods import (a name here is public to them, private to users), so no
estimator reaches into another's module for a helper.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import check_random_state

from factorkit._validation import check_int


def seed_of(random_state) -> int:
    """An int seed from scikit-learn's ``random_state`` (an int as it is; None or a RandomState draws one)."""
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        return check_int("random_state", int(random_state), minimum=0)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def as_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device`` (no copy on the CPU when already contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)
