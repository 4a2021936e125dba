"""Loading user matrices: .npy, .npz (scipy.sparse or a single NumPy array), .csv, .mtx."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse

FORMATS = (".npy", ".npz", ".csv", ".mtx")


def load_matrix(path: str | Path):
    """A 2-D matrix from ``path``; sparse formats stay sparse (``scipy.sparse.csr_matrix``)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"data file {str(path)!r} is a directory; expected a matrix file")
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"data file must end in one of {', '.join(FORMATS)}; got {path.name!r}")
    try:
        matrix = _read(path, suffix)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"data file {str(path)!r} could not be read as {suffix}: {err}") from err
    if matrix.ndim != 2:
        raise ValueError(f"{path.name} must hold a 2-D matrix, got shape {matrix.shape}")
    return matrix


def _read(path: Path, suffix: str):
    if suffix == ".npy":
        matrix = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        try:
            matrix = scipy.sparse.load_npz(path).tocsr()
        except (ValueError, KeyError):
            with np.load(path, allow_pickle=False) as archive:
                if len(archive.files) != 1:
                    raise ValueError(
                        f"{path.name} holds {len(archive.files)} arrays; expected a scipy.sparse matrix "
                        "or exactly one array"
                    ) from None
                matrix = archive[archive.files[0]]
    elif suffix == ".csv":
        matrix = np.loadtxt(path, delimiter=",", ndmin=2)
    else:
        matrix = scipy.io.mmread(path)
        matrix = matrix.tocsr() if scipy.sparse.issparse(matrix) else np.asarray(matrix)
    return matrix
