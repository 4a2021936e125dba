"""NMF's input as torch tensors and NumPy/SciPy arrays, its checks, and the beta-divergences.

Internal to :mod:`factorkit.methods.nmf` and its solvers (:mod:`factorkit.methods._nmf_solvers`).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import scipy.sparse
import torch

from factorkit._validation import check_choice, check_float

BETA_LOSSES = ("frobenius", "kullback-leibler", "itakura-saito")
BETA_OF = {"frobenius": 2.0, "kullback-leibler": 1.0, "itakura-saito": 0.0}
EPS = 1e-12


def beta_of(beta_loss) -> float:
    """The beta of a beta-divergence name or number (scikit-learn's convention)."""
    if isinstance(beta_loss, str):
        return BETA_OF[check_choice("beta_loss", beta_loss, BETA_LOSSES)]
    return check_float("beta_loss", beta_loss)


def beta_divergence(X: torch.Tensor, WH: torch.Tensor, beta: float, M=None) -> float:
    """``Dbeta_of(X || WH)`` summed over the (observed) entries (Fevotte & Idier, Neural Computation
    2011): beta = 2 half the squared error, 1 generalized KL, 0 Itakura-Saito."""
    WH = WH.clamp(min=EPS)
    if beta == 2:
        terms = 0.5 * (X - WH).square()
    elif beta == 1:
        terms = torch.xlogy(X, X / WH) - X + WH
    elif beta == 0:
        ratio = X / WH
        terms = ratio - torch.log(ratio.clamp(min=EPS)) - 1
    else:
        terms = (X.clamp(min=0) ** beta + (beta - 1) * WH**beta - beta * X * WH ** (beta - 1)) / (
            beta * (beta - 1)
        )
    if M is not None:
        terms = M * terms
    return float(terms.sum())


def check_values(name: str, values: np.ndarray, observed: np.ndarray | None, negative: bool = False) -> None:
    seen = values if observed is None else values[observed]
    if not np.isfinite(seen).all():
        where = "" if observed is None else " at observed entries"
        hint = "" if observed is not None else " (pass mask= to mark missing entries)"
        raise ValueError(f"{name} contains NaN or inf{where}{hint}")
    if not negative and seen.size and seen.min() < 0:
        raise ValueError(
            f"Negative values in data passed to NMF: {name} must be non-negative, found {seen.min()!r}"
        )


def float_dtype(name: str, dtype: np.dtype) -> np.dtype:
    # booleans are 0/1 counts (the input BooleanMF takes), converted exactly
    if not (dtype == np.bool_ or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers (boolean, integer or float), got dtype {dtype}")
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


class NMFData:
    """The input as torch tensors: dense ``X`` (masked entries zeroed) or sparse CSR, and a mask."""

    def __init__(self, X, mask, device: torch.device, name: str = "X", negative: bool = False) -> None:
        if scipy.sparse.issparse(X):
            if mask is not None:
                raise ValueError("mask is supported for dense X only; densify X or drop the mask")
            csr = scipy.sparse.csr_matrix(X)
            if csr.ndim != 2:
                raise ValueError(f"{name} must be 2-D")
            dtype = float_dtype(name, csr.dtype)
            csr = csr.astype(dtype)
            csr.sum_duplicates()
            check_values(name, csr.data, None, negative)
            self.csr = csr
            self.sparse = True
            self.shape = csr.shape
            self.device = device  # the torch forms of X below are built on first use (not on the CPU path)
            self.M = None
            self.norm_sq = float(np.square(csr.data).sum())
            self.mean = float(csr.data.sum() / (csr.shape[0] * csr.shape[1]))
            self.dtype = torch.from_numpy(csr.data[:0]).dtype
            return
        values = np.asarray(X)
        if values.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array, got shape {values.shape}")
        dtype = float_dtype(name, values.dtype)
        observed = None
        if mask is not None:
            observed = np.asarray(mask)
            if observed.shape != values.shape:
                raise ValueError(f"mask must have the shape of {name} {values.shape}, got {observed.shape}")
            if observed.dtype != np.bool_:
                if not np.isin(observed, (0, 1)).all():
                    raise ValueError("mask must be boolean (True = observed) or 0/1")
                observed = observed.astype(bool)
            if not observed.any(axis=1).all() or not observed.any(axis=0).all():
                raise ValueError("mask leaves a row or a column of X without any observed entry")
        check_values(name, values, observed, negative)
        dense = values.astype(dtype, copy=True)
        if observed is not None:
            dense[~observed] = 0.0
        self.sparse = False
        self.shape = dense.shape
        self.X = torch.from_numpy(dense).to(device)
        self.M = None if observed is None else torch.from_numpy(observed.astype(dtype)).to(device)
        self.norm_sq = float(np.square(dense, dtype=np.float64).sum())
        count = dense.size if observed is None else int(observed.sum())
        self.mean = float(dense.sum(dtype=np.float64) / count) if count else 0.0
        self.dtype = self.X.dtype

    # sparse X as torch tensors, built when a torch path first asks (dense X sets ``X`` itself)
    @functools.cached_property
    def X(self) -> torch.Tensor:
        with warnings.catch_warnings():  # torch flags sparse CSR as beta; the products used are stable
            warnings.simplefilter("ignore", UserWarning)
            csr = self.csr
            return torch.sparse_csr_tensor(
                torch.from_numpy(csr.indptr.astype(np.int64)),
                torch.from_numpy(csr.indices.astype(np.int64)),
                torch.from_numpy(csr.data),
                size=csr.shape,
            ).to(self.device)

    @functools.cached_property
    def Xt(self) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return self.X.to_sparse_coo().t().coalesce().to_sparse_csr()

    @functools.cached_property
    def _coo(self):
        coo = self.csr.tocoo()
        as_index = lambda a: torch.from_numpy(a.astype(np.int64)).to(self.device)  # noqa: E731
        return as_index(coo.row), as_index(coo.col), torch.from_numpy(coo.data).to(self.device)

    @property
    def rows(self) -> torch.Tensor:
        return self._coo[0]

    @property
    def cols(self) -> torch.Tensor:
        return self._coo[1]

    @property
    def values(self) -> torch.Tensor:
        return self._coo[2]

    def filled(self) -> torch.Tensor:
        """Dense ``X`` with unobserved entries at the observed mean (for initialisation only)."""
        if self.sparse:
            return self.X.to_dense()
        if self.M is None:
            return self.X
        return self.X + (1 - self.M) * self.mean

    def times(self, B: torch.Tensor) -> torch.Tensor:
        """``X @ B`` (sparse on the CPU: SciPy's kernel, several times torch's per call at NMF's
        sizes, where the call's fixed cost dominates)."""
        if self.sparse and B.device.type == "cpu":
            return torch.from_numpy(self.csr @ B.numpy())
        return self.X @ B

    def t_times(self, B: torch.Tensor) -> torch.Tensor:
        """``X^T @ B``."""
        if self.sparse and B.device.type == "cpu":
            return torch.from_numpy(self.csr.T @ B.numpy())
        return self.Xt @ B if self.sparse else self.X.T @ B


class Transposed:
    """``X^T`` as the MU update of ``H^T`` sees it (``X^T ~ H^T W^T``)."""

    def __init__(self, data: NMFData) -> None:
        self.sparse = data.sparse
        self.shape = (data.shape[1], data.shape[0])
        self._data = data
        if data.sparse:
            self.rows, self.cols, self.values = data.cols, data.rows, data.values
            self.M = None
        else:
            self.X = data.X.T
            self.M = None if data.M is None else data.M.T

    def times(self, B: torch.Tensor) -> torch.Tensor:
        return self._data.t_times(B)
