"""Ready estimators with the scikit-learn API.

Every estimator is importable from here; each module is imported on first use (PEP 562), so
``from factorkit.methods import QWEM`` does not import torch or the other methods.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the lazy loader below returns, spelled out for type checkers and the docs
    from factorkit.methods.boolean import BooleanMF
    from factorkit.methods.bsc import BinarySparseCoding
    from factorkit.methods.ebmf import EBMF, CovariateEBMF
    from factorkit.methods.embeddings import QWEM
    from factorkit.methods.nmf import NMF
    from factorkit.methods.sparse_coding import DictionaryLearning, SparseCoder

_MODULE_OF = {
    "NMF": "nmf",
    "BooleanMF": "boolean",
    "DictionaryLearning": "sparse_coding",
    "SparseCoder": "sparse_coding",
    "BinarySparseCoding": "bsc",
    "EBMF": "ebmf",
    "CovariateEBMF": "ebmf",
    "QWEM": "embeddings",
}

__all__ = [
    "NMF",
    "BooleanMF",
    "DictionaryLearning",
    "SparseCoder",
    "BinarySparseCoding",
    "EBMF",
    "CovariateEBMF",
    "QWEM",
]
assert set(__all__) == set(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
