"""scikit-learn conformance of every estimator (issue 18): ``parametrize_with_checks`` over all.

A check is expected to fail only where the method's domain demands it, each with its reason.
"""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

from factorkit.methods.boolean import BooleanMF
from factorkit.methods.bsc import BinarySparseCoding
from factorkit.methods.ebmf import EBMF, CovariateEBMF
from factorkit.methods.embeddings import QWEM
from factorkit.methods.nmf import NMF
from factorkit.methods.sparse_coding import DictionaryLearning, SparseCoder

BINARY_ONLY = (
    "BooleanMF factorizes binary matrices and refuses other values by design (never rounds them); "
    "this check fits it on real-valued data"
)
# the checks that feed BooleanMF real-valued data (its binary-data behaviour is tested below)
BOOLEAN_REAL_VALUED = [
    "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self", "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
    "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimator_sparse_tag",
    "check_estimator_sparse_array", "check_estimator_sparse_matrix", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_transformer_data_not_an_array", "check_transformer_general",
    "check_transformer_preserve_dtypes", "check_transformer_n_iter", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_dict_unchanged", "check_fit_idempotent",
    "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d", "check_fit2d_1sample",
    "check_fit2d_1feature",
]  # fmt: skip


FIXED_DICTIONARY = (
    "SparseCoder's dictionary fixes n_features (3 here) and these checks pass other widths; scikit-learn's "
    "own SparseCoder is run with a dictionary per check for this reason"
)
# SparseCoder: the checks that feed it data of another width than its dictionary's (and n_iter_: fit
# learns nothing, max_iter bounds the coding in transform)
CODER_OTHER_WIDTHS = [
    "check_estimators_overwrite_params", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
    "check_transformers_unfitted_stateless", "check_fit2d_1sample", "check_fit2d_1feature",
    "check_fit_idempotent", "check_fit_check_is_fitted", "check_n_features_in",

]  # fmt: skip


def expected_failures(estimator):
    if isinstance(estimator, BooleanMF):
        return dict.fromkeys(BOOLEAN_REAL_VALUED, BINARY_ONLY)
    if isinstance(estimator, SparseCoder):
        failures = dict.fromkeys(CODER_OTHER_WIDTHS, FIXED_DICTIONARY)
        failures["check_transformer_n_iter"] = (
            "fit learns nothing: no n_iter_ (max_iter bounds transform's coding)"
        )
        return failures
    return {}


def test_sparse_coder_behaves_as_an_estimator_at_its_dictionary_width():
    """What the width-changing checks would have checked, at the dictionary's width: clone, pickle,
    n_features_in_, dtypes, a sample's codes independent of the other samples, no state in transform."""
    import pickle

    rng = np.random.default_rng(0)
    coder = SparseCoder(rng.normal(size=(5, 3)), alpha=0.1)
    X = rng.normal(size=(30, 3))
    assert coder.fit(X) is coder and coder.n_features_in_ == 3
    state = dict(coder.__dict__)
    codes = coder.transform(X)
    assert set(coder.__dict__) == set(state)
    np.testing.assert_allclose(coder.transform(X[7:9]), codes[7:9], rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(coder.transform(X[::-1]), codes[::-1], rtol=1e-7, atol=1e-7)
    assert coder.transform(X.astype(np.float32)).dtype == np.float32
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(coder)).transform(X), codes)
    np.testing.assert_array_equal(clone(coder).fit(X).transform(X), codes)
    assert list(coder.get_feature_names_out()) == [f"sparsecoder{k}" for k in range(5)]


@parametrize_with_checks(
    [
        NMF(n_components=2),
        BooleanMF(n_components=2, max_iter=50),
        EBMF(n_components=2),
        CovariateEBMF(n_components=2),
        QWEM(dim=2),
        DictionaryLearning(n_components=3, max_iter=5),
        SparseCoder(np.random.default_rng(0).normal(size=(5, 3))),
        BinarySparseCoding(n_components=2, max_iter=5),
    ],
    expected_failed_checks=expected_failures,
)
def test_scikit_learn_conformance(estimator, check):
    check(estimator)


def test_boolean_mf_on_binary_data_behaves_as_an_estimator():
    """What the real-valued checks would have checked, on binary data: clone, pickle, n_features_in_,
    not-fitted errors, feature names, refitting idempotence, fewer rows than components in transform."""
    import pickle

    from sklearn.exceptions import NotFittedError

    X = np.random.default_rng(0).random((40, 12)) < 0.3
    model = BooleanMF(n_components=3, max_iter=100)
    with pytest.raises(NotFittedError):
        model.transform(X)
    U = model.fit_transform(X)
    assert model.n_features_in_ == 12 and U.shape == (40, 3)
    assert list(model.get_feature_names_out()) == ["booleanmf0", "booleanmf1", "booleanmf2"]
    again = clone(model).fit(X)
    np.testing.assert_array_equal(again.components_, model.components_)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.transform(X), model.transform(X))
    assert model.transform(X[:1]).shape == (1, 3)  # one row, three components
    with pytest.raises(ValueError, match="X has 5 features, but BooleanMF is expecting 12"):
        model.transform(X[:, :5])


def test_clone_keeps_every_parameter():
    model = CovariateEBMF(3, max_iter=7, var_type="by_row", prior_factors="point_laplace", ridge=2.0)
    params = clone(model).get_params()
    assert (
        params["max_iter"] == 7
        and params["var_type"] == "by_row"
        and params["prior_factors"] == "point_laplace"
    )
    assert clone(QWEM(dim=7, window=2)).get_params(deep=True)["window"] == 2


def test_grid_search_over_nmf_rank():
    from sklearn.datasets import load_digits

    X = load_digits().data[:300]

    def score(estimator, X, y=None):
        return (
            -estimator.reconstruction_err_
            if X is None
            else -np.linalg.norm(X - estimator.inverse_transform(estimator.transform(X)))
        )

    search = GridSearchCV(NMF(), {"n_components": [2, 8]}, scoring=score, cv=3).fit(X)
    assert search.best_params_ == {"n_components": 8}


def test_covariate_ebmf_without_covariates_is_ebmf():
    rng = np.random.default_rng(0)
    L = rng.normal(size=(80, 2)) * (rng.random((80, 2)) < 0.3)
    X = L @ rng.normal(size=(2, 30)) + 0.5 * rng.normal(size=(80, 30))
    plain = EBMF(4).fit(X)
    intercept_only = CovariateEBMF(4).fit(X)
    assert intercept_only.n_components_ == plain.n_components_
    np.testing.assert_allclose(
        intercept_only.fitted(), plain.fitted(), atol=0.05 * np.abs(plain.fitted()).max()
    )


def nmf_script(NMFClass, X):
    """A user's script, written for scikit-learn's NMF, run unchanged with either class."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler

    results = {}
    model = NMFClass(n_components=6, init="nndsvda", random_state=0, max_iter=400)
    W = model.fit_transform(X)
    results["error"] = model.reconstruction_err_
    results["shapes"] = (W.shape, model.components_.shape, model.n_components_, model.n_features_in_)
    results["names"] = list(model.get_feature_names_out())[:2]
    results["reconstruction"] = float(np.linalg.norm(X - model.inverse_transform(W)))
    # custom start and automatic rank from it
    rng = np.random.RandomState(0)
    W0, H0 = rng.rand(X.shape[0], 3), rng.rand(3, X.shape[1])
    custom = NMFClass(n_components="auto", init="custom", max_iter=400).fit(X, W=W0, H=H0)
    results["auto_rank"] = custom.n_components_
    # random_state as a RandomState, a pipeline, pandas output
    NMFClass(n_components=2, init="random", random_state=np.random.RandomState(1)).fit(X)
    pipe = make_pipeline(MaxAbsScaler(), NMFClass(n_components=4, random_state=0, max_iter=400))
    results["pipeline"] = pipe.fit_transform(X).shape
    try:
        import pandas  # noqa: F401

        output = NMFClass(n_components=2, random_state=0, max_iter=400).set_output(transform="pandas")
        results["columns"] = list(output.fit_transform(X).columns)
    except ImportError:  # set_output's "default" container, where pandas is not installed
        output = NMFClass(n_components=2, random_state=0, max_iter=400).set_output(transform="default")
        results["columns"] = list(range(output.fit_transform(X).shape[1]))
    results["itakura_saito"] = (
        NMFClass(n_components=3, solver="mu", beta_loss="itakura-saito", max_iter=300, random_state=0)
        .fit(X + 0.1)
        .reconstruction_err_
    )
    return results


def test_nmf_is_a_drop_in_for_scikit_learns():
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.decomposition import NMF as SkNMF

    X = load_digits().data[:400]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = nmf_script(SkNMF, X)
        ours = nmf_script(NMF, X)
    assert ours["shapes"] == theirs["shapes"] and ours["auto_rank"] == theirs["auto_rank"] == 3
    assert ours["pipeline"] == theirs["pipeline"] and len(ours["columns"]) == len(theirs["columns"]) == 2
    assert ours["names"] == ["nmf0", "nmf1"] == theirs["names"]
    assert ours["error"] <= theirs["error"] * 1.01
    assert ours["reconstruction"] == pytest.approx(ours["error"], rel=1e-6)
    assert ours["itakura_saito"] == pytest.approx(theirs["itakura_saito"], rel=0.05)


def test_every_estimator_declares_its_parameters_and_checks_them_before_the_data():
    """One table per estimator names exactly its constructor parameters (factorkit._params); a bad
    value is refused by name before the data is read (X here is not even an array)."""
    import factorkit.methods as methods
    from factorkit._params import validate_params

    for name in methods.__all__:
        cls = getattr(methods, name)
        assert set(cls._parameters) == set(cls._get_param_names()), name
        params = {"max_iter": 0} if "max_iter" in cls._get_param_names() else {"dim": 0}
        estimator = cls(np.eye(2)) if name == "SparseCoder" else cls(2) if name == "BooleanMF" else cls()
        estimator.set_params(**params)
        with pytest.raises(ValueError, match=f"{next(iter(params))} must be >= 1, got 0"):
            validate_params(estimator)
        if name not in ("SparseCoder", "QWEM"):  # these check against their dictionary / corpus first
            with pytest.raises(ValueError, match=f"{next(iter(params))} must be >= 1"):
                estimator.fit("not an array")


@pytest.mark.parametrize(
    "make",
    [
        lambda rs: NMF(3, init="random", max_iter=20, random_state=rs),
        lambda rs: BooleanMF(3, max_iter=20, random_state=rs),
        lambda rs: EBMF(2, random_state=rs),
        lambda rs: DictionaryLearning(3, max_iter=5, random_state=rs),
        lambda rs: BinarySparseCoding(3, max_iter=5, random_state=rs),
    ],
    ids=["NMF", "BooleanMF", "EBMF", "DictionaryLearning", "BinarySparseCoding"],
)
def test_random_state_takes_none_int_randomstate_and_generator_everywhere(make):
    """One convention (scikit-learn's): an int reproduces, a RandomState or Generator seeds from
    its stream (equal streams give equal fits), None draws from NumPy's global state."""
    X = (np.random.default_rng(0).random((30, 12)) < 0.4).astype(float)

    def fit(rs):
        model = make(rs).fit(X)
        return model.factors_ if isinstance(model, EBMF) else model.components_

    # equal seeds give equal fits to rounding: the same operations, but MKL may pick a kernel by a
    # buffer's alignment, so threaded reruns can differ in the last bits (seen: 3e-16 in BSC)
    same = {"rtol": 1e3 * np.finfo(np.float64).eps, "atol": 1e3 * np.finfo(np.float64).eps}
    np.testing.assert_allclose(fit(3), fit(3), **same)
    np.testing.assert_allclose(fit(np.random.RandomState(5)), fit(np.random.RandomState(5)), **same)
    np.testing.assert_allclose(fit(np.random.default_rng(5)), fit(np.random.default_rng(5)), **same)
    np.random.seed(11)  # noqa: NPY002  (None means the global state: that is what is tested)
    first = fit(None)
    np.random.seed(11)  # noqa: NPY002  (None means the global state: that is what is tested)
    np.testing.assert_allclose(first, fit(None), **same)
    with pytest.raises(
        TypeError, match="random_state must be None, an int, a numpy RandomState or Generator"
    ):
        make("0").fit(X)


def test_qwem_takes_random_state_and_keeps_seed_as_a_deprecated_alias():
    from factorkit.methods.corpus import synthetic_corpus

    corpus = list(synthetic_corpus(n_sentences=200, seed=0))
    new = QWEM(dim=4, min_count=1, solver="lanczos", random_state=7).fit(corpus)
    with pytest.warns(FutureWarning, match=r"renamed QWEM\(random_state=...\)"):
        old = QWEM(dim=4, min_count=1, solver="lanczos", seed=7).fit(corpus)
    np.testing.assert_array_equal(new.embeddings_, old.embeddings_)  # the same seed, the same run
    assert "seed" in QWEM().get_params() and QWEM().get_params()["random_state"] == 0
    with pytest.raises(ValueError, match="seed"):
        QWEM(seed="7").fit(corpus)


@pytest.mark.parametrize(
    "estimator, name",
    [
        (NMF(3, step=0.3), "step"),
        (NMF(3, decode="hard"), "decode"),
        (NMF(3, solver="alternating", alpha_W=0.1), "alpha_W"),
        (NMF(3, solver="mu", inner_sweeps=2), "inner_sweeps"),
        (SparseCoder(np.eye(4), algorithm="omp", penalty="l0"), "penalty"),
        (SparseCoder(np.eye(4), algorithm="omp", max_iter=50), "max_iter"),
        (SparseCoder(np.eye(4), penalty="l1", penalty_params={"q": 0.3}), "penalty_params"),
        (DictionaryLearning(3, algorithm="omp", code_tol=1e-2), "code_tol"),
        (DictionaryLearning(3, algorithm="omp", positive_code=True), "positive_code"),
        (DictionaryLearning(3, batch_size=None, max_no_improvement=3), "max_no_improvement"),
        (BinarySparseCoding(3, anneal_iterations=0, anneal_temperature=3.0), "anneal_temperature"),
        (BooleanMF(3, l2_reg=0.0, regularization_rate=1.1), "regularization_rate"),
        (CovariateEBMF(2, ridge=5.0), "ridge"),
    ],
)
def test_a_parameter_the_settings_would_ignore_is_refused_by_name(estimator, name):
    """No estimator takes a parameter it ignores: set away from its default where the other
    settings leave it unused, it is refused by name (its default is always accepted)."""
    X = (np.random.default_rng(0).random((12, 4)) < 0.5).astype(float)
    with pytest.raises(ValueError, match=f"^{name} applies"):
        estimator.fit(X)
    import inspect

    default_value = inspect.signature(type(estimator).__init__).parameters[name].default
    clone(estimator).set_params(**{name: default_value}).fit(X)  # at its default, the same settings fit
