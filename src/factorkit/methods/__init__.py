"""Ready estimators with the scikit-learn API."""

from factorkit.methods.boolean import BooleanMF
from factorkit.methods.nmf import NMF

__all__ = ["NMF", "BooleanMF"]
