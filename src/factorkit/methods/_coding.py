"""Sparse codes: the penalties, FISTA and OMP (the maths in :mod:`factorkit.methods.sparse_coding`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from factorkit import prox as proxes
from factorkit._memory import check_memory
from factorkit._threads import threads_for
from factorkit._validation import check_choice, check_float, check_int
from factorkit.methods._common import as_tensor

PENALTIES = ("l1", "l0", "lq", "l_half", "log", "mcp", "scad", "cel0")
ALGORITHMS = ("fista", "omp")
# each penalty's shape parameters and their defaults (``penalty_params`` overrides them)
PENALTY_PARAMS = {"lq": {"q": 0.5}, "log": {"eps": 0.1}, "mcp": {"gamma": 3.0}, "scad": {"a": 3.7}}
OMP_CHUNK = 8192  # samples per OMP block: bounds the (chunk, k, K) gathered Gram rows
CHECK_EVERY = 10  # FISTA reads its stopping rule every this many iterations
FISTA_BLOCK = 65_536  # samples coded at once (FISTA holds about six block x atoms tensors)


@dataclass(frozen=True)
class Penalty:
    """``alpha * h(z)`` for one of :data:`PENALTIES`, with its prox and value."""

    name: str
    alpha: float
    params: dict
    nonnegative: bool = False

    @classmethod
    def make(cls, name, alpha, params=None, nonnegative=False) -> Penalty:
        name = check_choice("penalty", name, PENALTIES)
        alpha = check_float("alpha", alpha, nonnegative=True)
        given = {} if params is None else params
        if not isinstance(given, dict):
            raise TypeError(f"penalty_params must be a dict or None, got {type(given).__name__}")
        allowed = PENALTY_PARAMS.get(name, {})
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            expected = ", ".join(allowed) if allowed else "none"
            raise ValueError(f"penalty_params for penalty={name!r} takes {expected}; got unknown {unknown}")
        merged = {**allowed, **given}
        for key, value in merged.items():
            merged[key] = check_float(
                f"penalty_params[{key!r}]", value, positive=key != "q", nonnegative=True
            )
        if name == "lq":
            proxes.check_q(merged["q"])
        return cls(name, alpha, merged, bool(nonnegative))

    def prox(self, v: torch.Tensor, step: float) -> torch.Tensor:
        nn, lam = self.nonnegative, self.alpha
        if self.name == "l1":
            return (v - step * lam).clamp_min(0.0) if nn else proxes.prox_l1(v, step * lam)
        if self.name == "l0":
            return proxes.prox_l0(v, lam, step, nonnegative=nn)
        if self.name == "lq":
            return proxes.prox_lq(v, lam, step, q=self.params["q"], nonnegative=nn)
        if self.name == "l_half":
            return proxes.prox_l_half(v, lam, step, nonnegative=nn)
        if self.name == "log":
            return proxes.prox_log(v, lam, step, eps=self.params["eps"], nonnegative=nn)
        if self.name == "mcp":
            return proxes.prox_mcp(v, lam, step, gamma=self.params["gamma"], nonnegative=nn)
        if self.name == "scad":
            return proxes.prox_scad(v, lam, step, a=self.params["a"], nonnegative=nn)
        return proxes.prox_cel0(v, lam, step, a=1.0, nonnegative=nn)

    def dead_zone(self) -> float:
        """The largest ``|x|`` the prox (at step 0.99) maps to 0, by bisection on the prox itself:
        the threshold of the l1 penalty that zeroes out the same small inputs."""
        hi = max(self.alpha, 1e-300)
        while float(self.prox(torch.tensor([hi], dtype=torch.float64), 0.99)[0]) == 0:
            hi *= 2
        lo = 0.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (
                (mid, hi)
                if float(self.prox(torch.tensor([mid], dtype=torch.float64), 0.99)[0]) == 0
                else (lo, mid)
            )
        return lo

    def value(self, Z: torch.Tensor) -> float:
        """``alpha * sum h(Z)`` over all entries (CEL0 for unit atoms)."""
        lam = self.alpha
        if self.name == "l1":
            return float(proxes.penalty_l1(Z, lam))
        if self.name in ("l0", "lq"):
            return float(proxes.penalty_lq(Z, lam, q=self.params.get("q", 0.0)))
        if self.name == "l_half":
            return float(proxes.penalty_l_half(Z, lam))
        if self.name == "log":
            return float(proxes.penalty_log(Z, lam, eps=self.params["eps"]))
        if self.name == "mcp":
            return float(proxes.penalty_mcp(Z, lam, gamma=self.params["gamma"]))
        if self.name == "scad":
            return float(proxes.penalty_scad(Z, lam, a=self.params["a"]))
        return float(proxes.penalty_cel0(Z, lam, a=1.0))


def fista_codes(
    X: torch.Tensor,
    D: torch.Tensor,
    penalty: Penalty,
    *,
    Z0: torch.Tensor | None = None,
    max_iter: int = 200,
    tol: float = 1e-4,
) -> tuple[torch.Tensor, int]:
    """Codes minimizing ``0.5 ||X - Z D||^2 + penalty(Z)`` by FISTA with per-sample restarts.

    Each sample stops once ``||z_{k+1} - z_k|| <= tol ||z_{k+1}||`` (read every
    :data:`CHECK_EVERY` iterations; finished samples leave the batch, so a sample's codes do not
    depend on the others) or after ``max_iter`` iterations. Returns the codes and the iterations
    run by the slowest sample.
    """
    if X.shape[0] > FISTA_BLOCK:  # samples are independent: bounded work memory, whatever n
        check_memory(
            f"codes of {X.shape[0]} samples in {D.shape[0]} atoms", X.shape[0] * D.shape[0] * X.element_size()
        )
        blocks = [
            fista_codes(X[i : i + FISTA_BLOCK], D, penalty, max_iter=max_iter, tol=tol,
                        Z0=None if Z0 is None else Z0[i : i + FISTA_BLOCK])
            for i in range(0, X.shape[0], FISTA_BLOCK)
        ]  # fmt: skip
        return torch.cat([codes for codes, _ in blocks]), max(iterations for _, iterations in blocks)
    if penalty.name != "cel0":
        return _fista(X, D, penalty, Z0, max_iter, tol, step_factor=1.0)
    # CEL0 with atom norms a_i is CEL0 with unit atoms in the variables a_i z_i; its prox needs step < 1
    norms = D.norm(dim=1).clamp_min(torch.finfo(D.dtype).tiny)
    Z0 = None if Z0 is None else Z0 * norms
    codes, iterations = _fista(X, D / norms[:, None], penalty, Z0, max_iter, tol, step_factor=0.99)
    return codes / norms, iterations


def _fista(X, D, penalty: Penalty, Z0, max_iter: int, tol: float, step_factor: float):
    gram = D @ D.T
    correlation = X @ D.T
    L = float(torch.linalg.eigvalsh(gram)[-1]) if gram.numel() else 0.0
    if L <= 0:  # an all-zero dictionary: every code is 0
        return torch.zeros_like(correlation), 0
    step = step_factor / L
    out = torch.zeros_like(correlation) if Z0 is None else Z0.clone()
    # the rows still iterating (a sample's codes never depend on the other samples of the batch)
    rows = torch.arange(out.shape[0], device=out.device)
    Z, C = out.clone(), correlation
    Y = Z.clone()
    t = torch.ones(Z.shape[0], 1, dtype=Z.dtype, device=Z.device)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        Z_new = penalty.prox(Y - step * (Y @ gram - C), step)
        delta = Z_new - Z
        # O'Donoghue & Candes' gradient restart, per sample: momentum that points uphill is dropped
        restart = ((Y - Z_new) * delta).sum(1, keepdim=True) > 0
        t_new = (1 + torch.sqrt(1 + 4 * t.square())) / 2
        momentum = torch.where(restart, 0.0, (t - 1) / t_new)
        t = torch.where(restart, 1.0, t_new)
        Y = Z_new + momentum * delta
        Z = Z_new
        if iterations % CHECK_EVERY == 0 or iterations == max_iter:
            done = delta.norm(dim=1) <= tol * Z.norm(dim=1)
            if iterations == max_iter or bool(done.all()):
                out[rows] = Z
                rows = rows[:0]
                break
            if bool(done.any()):
                out[rows[done]] = Z[done]
                keep = ~done
                rows, Z, Y, t, C = rows[keep], Z[keep], Y[keep], t[keep], C[keep]
    if rows.numel():
        out[rows] = Z
    return out, iterations


def omp_codes(X: torch.Tensor, D: torch.Tensor, n_nonzero_coefs: int) -> torch.Tensor:
    """Orthogonal matching pursuit: ``n_nonzero_coefs`` atoms per sample, chosen greedily by the
    largest ``|<residual, d_j>| `` (atoms taken as given, as scikit-learn's OMP), with the
    least-squares coefficients on the chosen atoms."""
    n_atoms = D.shape[0]
    if n_nonzero_coefs > n_atoms:
        raise ValueError(f"n_nonzero_coefs must be <= the number of atoms {n_atoms}, got {n_nonzero_coefs}")
    gram = D @ D.T
    check_memory(
        f"OMP codes of {X.shape[0]} samples in {n_atoms} atoms", X.shape[0] * n_atoms * X.element_size()
    )
    codes = torch.zeros(X.shape[0], n_atoms, dtype=X.dtype, device=X.device)
    for start in range(0, X.shape[0], OMP_CHUNK):
        correlation = X[start : start + OMP_CHUNK] @ D.T
        rows = correlation.shape[0]
        chosen = torch.empty(rows, 0, dtype=torch.long, device=X.device)
        coefficients = torch.empty(rows, 0, dtype=X.dtype, device=X.device)
        for _ in range(n_nonzero_coefs):
            # correlation of the residual: c - gamma G[chosen]
            residual_corr = correlation - torch.einsum("nk,nkj->nj", coefficients, gram[chosen])
            residual_corr = residual_corr.abs().scatter(1, chosen, -1.0)
            chosen = torch.cat([chosen, residual_corr.argmax(1, keepdim=True)], 1)
            sub_gram = gram[chosen[:, :, None], chosen[:, None, :]]
            rhs = correlation.gather(1, chosen)
            coefficients, info = torch.linalg.solve_ex(sub_gram, rhs)
            singular = info != 0
            if bool(singular.any()):  # an atom in the span of the chosen ones: least squares instead
                coefficients[singular] = (
                    torch.linalg.lstsq(
                        sub_gram[singular].cpu(), rhs[singular].cpu().unsqueeze(-1), driver="gelsd"
                    )
                    .solution.squeeze(-1)
                    .to(X.device)
                )
        codes[start : start + rows].scatter_(1, chosen, coefficients)
    return codes


def objective(X: torch.Tensor, Z: torch.Tensor, D: torch.Tensor, penalty: Penalty) -> float:
    """The mean over samples of ``0.5 ||x - z D||^2 + alpha h(z)`` (CEL0: of ``z_i ||d_i||``)."""
    scaled = Z * D.norm(dim=1) if penalty.name == "cel0" else Z
    return (0.5 * float((X - Z @ D).square().sum()) + penalty.value(scaled)) / X.shape[0]


def encode(X, D, penalty: Penalty, algorithm: str, n_nonzero_coefs, Z0=None, max_iter=200, tol=1e-4):
    """Codes by FISTA or OMP, on the threads the size of a FISTA iteration calls for."""
    with threads_for(coding_work(X.shape[0], *D.shape)):
        if algorithm == "omp":
            return omp_codes(X, D, n_nonzero_coefs), 1
        return fista_codes(X, D, penalty, Z0=Z0, max_iter=max_iter, tol=tol)


def scored_penalty(penalty: Penalty, algorithm: str) -> Penalty:
    """The penalty the learning objective counts: none for OMP, whose codes have a fixed number of
    atoms (the objective is then half the squared error), else the coding penalty."""
    return Penalty.make("l0", 0.0) if algorithm == "omp" else penalty


def check_coding(algorithm, n_nonzero_coefs, n_atoms: int, n_features: int) -> int | None:
    algorithm = check_choice("algorithm", algorithm, ALGORITHMS)
    if algorithm != "omp":
        if n_nonzero_coefs is not None:
            raise ValueError(
                "n_nonzero_coefs is for algorithm='omp'; with 'fista' the penalty sets the sparsity"
            )
        return None
    if n_nonzero_coefs is None:  # scikit-learn's default for OMP
        return max(1, min(n_atoms, n_features // 10))
    count = check_int("n_nonzero_coefs", n_nonzero_coefs, minimum=1)
    if count > n_atoms:
        raise ValueError(f"n_nonzero_coefs must be <= the number of atoms {n_atoms}, got {count}")
    return count


def coding_work(n_samples: int, n_atoms: int, n_features: int) -> float:
    """Flops of one FISTA iteration (for the thread count, factorkit._threads)."""
    return 2.0 * n_samples * n_atoms * (n_atoms + n_features)


def check_dictionary(dictionary) -> np.ndarray:
    """A fixed dictionary (n_atoms x n_features) of finite real numbers."""
    D = np.asarray(dictionary)
    if D.ndim != 2 or D.shape[0] < 1 or D.shape[1] < 1:
        raise ValueError(
            f"dictionary must be a 2-D array (n_atoms >= 1, n_features >= 1), got shape {D.shape}"
        )
    if not np.issubdtype(D.dtype, np.floating) and not np.issubdtype(D.dtype, np.integer):
        raise TypeError(f"dictionary must hold real numbers, got dtype {D.dtype}")
    if not np.isfinite(D).all():
        raise ValueError("dictionary contains NaN or inf")
    return D


def codes_of(X: np.ndarray, D: np.ndarray, penalty: Penalty, algorithm: str, count, init, max_iter: int,
             tol: float, device) -> np.ndarray:  # fmt: skip
    """The codes of the checked arrays ``X`` in ``D`` (``init``: FISTA's warm start), as an array."""
    X_t = as_tensor(X, device)
    D_t = as_tensor(D.astype(X.dtype, copy=False), device)
    Z0 = None
    if init is not None:
        Z0 = np.asarray(init, dtype=X.dtype)
        if Z0.shape != (X.shape[0], D.shape[0]):
            raise ValueError(f"init must have shape {(X.shape[0], D.shape[0])}, got {Z0.shape}")
        Z0 = as_tensor(Z0, device)
    with torch.inference_mode():
        codes, _ = encode(X_t, D_t, penalty, algorithm, count, Z0, max_iter, tol)
    return codes.cpu().numpy()
