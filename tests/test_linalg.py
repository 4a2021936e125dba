import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from factorkit.linalg import top_eigenpairs


def _sparse_symmetric(n, density, seed):
    rng = np.random.default_rng(seed)
    A = scipy.sparse.random(n, n, density=density, random_state=rng, data_rvs=rng.random)
    return (A + A.T).tocsr()


def _dense_reference(S, c, d):
    values, vectors = np.linalg.eigh(S.toarray() + c)
    return values[::-1][:d], vectors[:, ::-1][:, :d]


def _assert_matches(result, S, c, d, rtol):
    values, vectors = _dense_reference(S, c, d)
    scale = abs(values[0])
    np.testing.assert_allclose(result.values, values, atol=rtol * scale)
    # the weighted Gram matrix V diag(lambda) V^T is unique even where eigenvalues repeat
    gram = (result.vectors * result.values) @ result.vectors.T
    reference = (vectors * values) @ vectors.T
    assert np.abs(gram - reference).max() < 50 * rtol * scale
    np.testing.assert_allclose(result.vectors.T @ result.vectors, np.eye(d), atol=1e-10)


@pytest.mark.parametrize("c", [-2.0, 0.0, 0.5])
def test_block_lanczos_matches_dense_eigh(c):
    # c = -2: a dominant negative eigenvalue ~ -2n (deflated); c = 0.5: the top pair is ~ 0.5n
    S = _sparse_symmetric(600, 0.03, seed=1)
    result = top_eigenpairs(S, 20, c, solver="lanczos", tol=1e-6)
    assert result.solver == "lanczos"
    assert result.residual <= 1e-6
    _assert_matches(result, S, c, 20, 1e-6)


@pytest.mark.parametrize("engine_from", [0.0, float("inf")], ids=["torch", "scipy"])
@pytest.mark.parametrize("threads", [1, 2])
def test_both_sparse_engines_on_any_thread_count_match_dense_eigh(monkeypatch, engine_from, threads):
    """The sparse product by torch (large problems) or by SciPy on row bands (one per thread)."""
    import factorkit._sparse_operator as operator
    import factorkit.linalg as linalg

    monkeypatch.setattr(linalg, "TORCH_FROM_WORK", engine_from)
    monkeypatch.setattr(operator, "NNZ_PER_THREAD", 100)  # bands even for this small matrix
    monkeypatch.setattr(linalg, "cpu_threads", lambda: threads)
    S = _sparse_symmetric(600, 0.03, seed=9)
    result = top_eigenpairs(S, 20, -2.0, solver="lanczos", tol=1e-6)
    assert result.solver == "lanczos" and result.residual <= 1e-6
    _assert_matches(result, S, -2.0, 20, 1e-6)


def test_lanczos_result_agrees_with_arpack():
    S = _sparse_symmetric(900, 0.02, seed=4)
    ours = top_eigenpairs(S, 30, -2.0, solver="lanczos")
    theirs = top_eigenpairs(S, 30, -2.0, solver="arpack", tol=1e-10)
    np.testing.assert_allclose(ours.values, theirs.values, atol=1e-6 * theirs.values[0])


def test_unreachable_tolerance_falls_back_to_arpack():
    S = _sparse_symmetric(500, 0.03, seed=2)
    result = top_eigenpairs(S, 10, -2.0, solver="lanczos", tol=1e-12)
    assert result.solver == "lanczos->arpack"
    assert result.residual <= 1e-10
    _assert_matches(result, S, -2.0, 10, 1e-10)


def test_low_rank_matrix_exhausts_the_krylov_space():
    # rank 6: the block Krylov space is invariant after one step; lost columns are refilled
    rng = np.random.default_rng(3)
    B = rng.standard_normal((400, 6))
    S = scipy.sparse.csr_matrix(B @ B.T)
    result = top_eigenpairs(S, 8, 0.0, solver="lanczos")
    _assert_matches(result, S, 0.0, 8, 1e-6)
    assert np.abs(result.values[6:]).max() < 1e-5 * result.values[0]


def test_repeated_eigenvalues():
    # eigenvalue 3 with multiplicity 5 (the top), then 2 (multiplicity 5), then the rest
    rng = np.random.default_rng(5)
    Q = np.linalg.qr(rng.standard_normal((300, 300)))[0]
    spectrum = np.concatenate([[3.0] * 5, [2.0] * 5, rng.uniform(-1, 1, 290)])
    S = scipy.sparse.csr_matrix((Q * spectrum) @ Q.T)
    result = top_eigenpairs(S, 10, 0.0, solver="lanczos", oversample=10)
    np.testing.assert_allclose(result.values, [3.0] * 5 + [2.0] * 5, atol=1e-5)
    _assert_matches(result, S, 0.0, 10, 1e-6)


@settings(max_examples=8, deadline=None)
@given(
    n=st.integers(200, 500),
    d=st.integers(1, 12),
    c=st.floats(-3, 1),
    block=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_lanczos_matches_dense_on_random_problems(n, d, c, block, seed):
    S = _sparse_symmetric(n, 0.05, seed)
    result = top_eigenpairs(S, d, c, solver="lanczos", block=block, seed=seed)
    assert result.residual <= 1e-6
    values, _ = _dense_reference(S, c, d)
    np.testing.assert_allclose(result.values, values, atol=1e-6 * abs(values[0]))


def test_same_seed_same_result():
    S = _sparse_symmetric(400, 0.03, seed=6)
    a = top_eigenpairs(S, 10, -1.0, solver="lanczos", seed=3)
    b = top_eigenpairs(S, 10, -1.0, solver="lanczos", seed=3)
    np.testing.assert_array_equal(a.vectors, b.vectors)


def test_auto_uses_dense_for_small_matrices():
    S = _sparse_symmetric(100, 0.1, seed=7)
    result = top_eigenpairs(S, 5, -1.0)
    assert result.solver == "dense"
    _assert_matches(result, S, -1.0, 5, 1e-12)


def test_bad_input():
    S = _sparse_symmetric(300, 0.05, seed=8)
    with pytest.raises(ValueError, match="square"):
        top_eigenpairs(S[:, :200], 3)
    bad = S.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        top_eigenpairs(bad, 3)
    with pytest.raises(ValueError, match="symmetric"):
        top_eigenpairs(scipy.sparse.triu(S).tocsr(), 3)
    with pytest.raises(ValueError, match="d must be smaller"):
        top_eigenpairs(S, 300)
    with pytest.raises(ValueError, match="solver must be one of"):
        top_eigenpairs(S, 3, solver="lobpcg")
    with pytest.raises(ValueError, match="basis of"):
        top_eigenpairs(S, 100, solver="lanczos")
    with pytest.raises(TypeError, match="sparse matrix or a numpy array"):
        top_eigenpairs([[1.0]], 1)
    with pytest.raises(ValueError, match="tol"):
        top_eigenpairs(S, 3, tol=0.0)
