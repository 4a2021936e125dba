"""What the estimators share: seeds from ``random_state``, arrays to tensors.

One small module the methods import (a name here is public to them, private to users), so no
estimator reaches into another's module for a helper.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from factorkit._params import seed_of  # noqa: F401  (re-exported: the methods import it from here)


def as_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device`` (no copy on the CPU when already contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


class LearnedAtomsMixin:
    """What every estimator with learned atoms ``components_`` (one per row) shares: the
    reconstruction ``codes @ components_``, feature names per atom, float32 kept float32."""

    def inverse_transform(self, X) -> np.ndarray:
        """``codes @ components_`` (BSC: the noise-free mean of ``x`` given binary ``s``)."""
        check_is_fitted(self)
        return np.asarray(X) @ self.components_

    @property
    def _n_features_out(self) -> int:
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
