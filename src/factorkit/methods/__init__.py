"""Ready estimators with the scikit-learn API."""

from factorkit.methods.boolean import BooleanMF

__all__ = ["BooleanMF"]
