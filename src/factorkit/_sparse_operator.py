"""The operators of factorkit's block Lanczos (:mod:`factorkit.linalg`): a thread pool with the
basis products split along their long dimension, the sparse product on SciPy row bands or by torch,
and ``x -> S x + c 1 (1^T x) - lam u (u^T x)``."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse

NNZ_PER_THREAD = 200_000  # smaller products are not worth a second thread


class Pool:
    """``threads`` workers (the caller's thread is one of them) and the dense products of the
    Lanczos basis split along its long dimension, one part each (NumPy's BLAS calls release the
    GIL; with BLAS capped at one thread the parts run side by side). A context manager."""

    def __init__(self, threads: int, n: int):
        self.threads = max(1, threads)
        self.executor = None
        if self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.executor = ThreadPoolExecutor(self.threads - 1)
        bounds = np.linspace(0, n, self.threads + 1).astype(int)
        self.parts = [slice(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]

    def map(self, function, items) -> list:
        """``[function(item) for item in items]``, the first on this thread, the rest on workers."""
        items = list(items)
        if self.executor is None or len(items) == 1:
            return [function(item) for item in items]
        pending = [self.executor.submit(function, item) for item in items[1:]]
        return [function(items[0]), *(future.result() for future in pending)]

    def coefficients(self, Q: np.ndarray, W: np.ndarray) -> np.ndarray:
        """``Q @ W`` for a wide ``Q`` (k x n) and a tall ``W`` (n x b), summed over the parts."""
        partial = self.map(lambda part: Q[:, part] @ W[part], self.parts)
        return sum(partial[1:], partial[0])

    def subtract(self, W: np.ndarray, Q: np.ndarray, C: np.ndarray) -> np.ndarray:
        """``W - Q^T C``, part by part."""
        out = np.empty_like(W)
        self.map(lambda part: np.subtract(W[part], Q[:, part].T @ C, out=out[part]), self.parts)
        return out

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        if self.executor is not None:
            self.executor.shutdown()


class ScipyBands:
    """``S @ X`` by SciPy on ``threads`` row bands of equal non-zero counts, one thread each.

    SciPy's sparse kernels release the GIL while they run: 1.8x on 2 cores for QWEM's 8k x 8k
    matrix (1.7M non-zeros, blocks of 8 vectors). Imports nothing beyond SciPy.
    """

    def __init__(self, S: scipy.sparse.csr_matrix, pool: Pool):
        S32 = S.astype(np.float32)
        threads = max(1, min(pool.threads, S.nnz // NNZ_PER_THREAD))
        cuts = np.searchsorted(S.indptr, np.arange(1, threads) * (S.nnz / threads))
        bounds = [0, *sorted({int(c) for c in cuts} - {0, S.shape[0]}), S.shape[0]]
        self.bands = [(S32[a:b], S[a:b], a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
        self.rows = S.shape[0]
        self.pool = pool

    def __call__(self, X: np.ndarray) -> np.ndarray:
        single = X.dtype == np.float32
        if len(self.bands) == 1:
            return (self.bands[0][0] if single else self.bands[0][1]) @ X
        Y = np.empty((self.rows, X.shape[1]), dtype=X.dtype)

        def band(part) -> None:
            S32, S64, a, b = part
            Y[a:b] = (S32 if single else S64) @ X

        self.pool.map(band, self.bands)
        return Y


class TorchCSR:
    """``S @ X`` by torch's sparse CSR kernel (about 3x SciPy's per vector on 2 cores), for
    problems large enough to repay torch's import (see :data:`factorkit.linalg.TORCH_FROM_WORK`)."""

    def __init__(self, S: scipy.sparse.csr_matrix, pool: Pool):
        import torch

        index = torch.int32 if max(S.shape[0], S.nnz) < 2**31 else torch.int64
        parts = (torch.from_numpy(S.indptr).to(index), torch.from_numpy(S.indices).to(index))
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            self.S64 = torch.sparse_csr_tensor(*parts, torch.from_numpy(S.data), size=S.shape)
            self.S32 = torch.sparse_csr_tensor(*parts, torch.from_numpy(S.data).float(), size=S.shape)
        self.torch = torch
        self.threads = pool.threads

    def __call__(self, X: np.ndarray) -> np.ndarray:
        torch = self.torch
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            S = self.S32 if X.dtype == np.float32 else self.S64
            return (S @ torch.from_numpy(X)).numpy()
        finally:
            torch.set_num_threads(previous)


class Operator:
    """``x -> S x + c 1 (1^T x) - lam u (u^T x)``; the dense rank-one terms in float64.

    The sparse product by SciPy on row bands (:class:`ScipyBands`), or by torch
    (:class:`TorchCSR`) once ``nnz * (d + oversample)`` passes :data:`factorkit.linalg.TORCH_FROM_WORK`.
    Use it as a context manager.
    """

    def __init__(self, S: scipy.sparse.csr_matrix, c: float, pool: Pool, engine: str = "scipy"):
        self.S64 = S
        self._sparse = (TorchCSR if engine == "torch" else ScipyBands)(S, pool)
        self.c = c
        self.deflated: tuple[float, np.ndarray] | None = None
        self.matvecs = 0
        self.pool = pool

    def _low_rank(self, X64: np.ndarray, deflate: bool) -> np.ndarray | None:
        out = None
        if self.c != 0.0:
            out = np.broadcast_to(self.c * X64.sum(0, keepdims=True), X64.shape)
        if deflate and self.deflated is not None:
            lam, u = self.deflated
            term = (-lam) * np.outer(u, u @ X64)
            out = term if out is None else out + term
        return out

    def __call__(self, X: np.ndarray, deflate: bool = True) -> np.ndarray:
        self.matvecs += X.shape[1]
        X = np.ascontiguousarray(X)
        Y = self._sparse(X)
        if X.dtype == np.float32:
            low = self._low_rank(X.astype(np.float64), deflate)
            if low is not None:
                Y += low.astype(np.float32)
            return Y
        low = self._low_rank(X, deflate)
        return Y if low is None else Y + low

    def deflate_dominant_negative(self, rng: np.random.Generator, iterations: int = 100) -> None:
        """Power iteration in float64; deflate the dominant eigenpair if negative and converged."""
        x = rng.standard_normal((self.S64.shape[0], 1))
        x /= np.linalg.norm(x)
        for _ in range(iterations):
            y = self(x, deflate=False)
            lam = float(x[:, 0] @ y[:, 0])
            residual = float(np.linalg.norm(y - lam * x))
            if residual <= 1e-12 * abs(lam):
                if lam < 0:
                    self.deflated = (lam, x[:, 0].copy())
                return
            norm = np.linalg.norm(y)
            if norm == 0:
                return
            x = y / norm
