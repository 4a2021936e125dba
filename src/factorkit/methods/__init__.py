"""Ready estimators with the scikit-learn API."""

from factorkit.methods.boolean import BooleanMF
from factorkit.methods.bsc import BinarySparseCoding
from factorkit.methods.nmf import NMF
from factorkit.methods.sparse_coding import DictionaryLearning, SparseCoder

__all__ = ["NMF", "BooleanMF", "DictionaryLearning", "SparseCoder", "BinarySparseCoding"]
