import numpy as np
import pytest
import scipy.io
import scipy.sparse

from factorkit.problems.data import load_matrix


def test_formats_round_trip(tmp_path):
    X = (np.random.default_rng(0).random((7, 5)) < 0.3).astype(np.int8)
    np.save(tmp_path / "x.npy", X)
    scipy.sparse.save_npz(tmp_path / "x.npz", scipy.sparse.csr_matrix(X))
    np.savez(tmp_path / "dense.npz", X)
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", fmt="%d")
    scipy.io.mmwrite(tmp_path / "x.mtx", scipy.sparse.csr_matrix(X))
    for name in ("x.npy", "x.npz", "dense.npz", "x.csv", "x.mtx"):
        loaded = load_matrix(tmp_path / name)
        dense = loaded.toarray() if scipy.sparse.issparse(loaded) else loaded
        np.testing.assert_array_equal(dense, X)
    assert scipy.sparse.issparse(load_matrix(tmp_path / "x.npz"))


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_matrix(tmp_path / "missing.npy")
    (tmp_path / "x.txt").write_text("1,0")
    with pytest.raises(ValueError, match="must end in one of"):
        load_matrix(tmp_path / "x.txt")
    np.save(tmp_path / "v.npy", np.zeros(3))
    with pytest.raises(ValueError, match="2-D matrix"):
        load_matrix(tmp_path / "v.npy")
