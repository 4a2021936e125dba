"""LeanEstimator: scikit-learn's parameter protocol without importing scikit-learn."""

import subprocess
import sys

import pytest
from sklearn.base import clone

from factorkit.methods import QWEM


def test_params_set_params_clone_and_repr_follow_scikit_learn():
    model = QWEM(dim=20, window=3)
    params = model.get_params()
    assert params["dim"] == 20 and params["window"] == 3 and set(params) >= {"min_count", "tol", "solver"}
    assert model.set_params(dim=30) is model and model.dim == 30
    twin = clone(model)
    assert twin is not model and twin.get_params() == model.get_params()
    assert repr(model) == "QWEM(dim=30, window=3)"
    with pytest.raises(ValueError, match="Invalid parameter 'dimension' for estimator QWEM"):
        model.set_params(dimension=3)


def test_fitting_qwem_imports_neither_torch_nor_scikit_learn():
    program = (
        "import sys\n"
        "from factorkit.methods import QWEM\n"
        "from factorkit.methods.embeddings import synthetic_corpus\n"
        "QWEM(dim=4, min_count=2).fit(synthetic_corpus(n_sentences=200))\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'scipy.stats', 'tqdm') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_every_estimator_imports_from_factorkit_methods():
    import factorkit.methods as methods

    for name in methods.__all__:
        assert getattr(methods, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        methods.Nope  # noqa: B018
