"""Dictionary learning's loops as functions of explicit arguments (scikit-learn's ``_dict_learning``
shape): the starting atoms, the exact atom sweep, full-batch alternating minimization and online
mini-batches (Mairal et al. 2010). The estimator is :class:`factorkit.methods.DictionaryLearning`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from factorkit._validation import check_choice
from factorkit.methods._coding import Penalty, encode, objective, scored_penalty

INITS = ("auto", "svd", "data", "l1")
FULL_BATCH_TOL, ONLINE_TOL = 1e-7, 1e-3  # tol=None
FULL_BATCH_MAX_ITER, ONLINE_MAX_ITER = 1000, 100  # max_iter=None


@dataclass(frozen=True)
class Coding:
    """How codes are computed while learning: the penalty, FISTA or OMP (with its atom count),
    and FISTA's inexact cap and tolerance."""

    penalty: Penalty
    algorithm: str
    count: int | None
    max_iter: int
    tol: float

    def codes(self, X, D, Z0=None):
        return encode(X, D, self.penalty, self.algorithm, self.count, Z0, self.max_iter, self.tol)[0]

    @property
    def scored(self) -> Penalty:
        """The penalty the learning objective counts (none for OMP)."""
        return scored_penalty(self.penalty, self.algorithm)


@dataclass
class LearningLog:
    """What a learning run records; the estimator copies it into its attributes at the end."""

    verbose: int = 0
    started: float = field(default_factory=time.perf_counter)
    history: list = field(default_factory=list)
    n_iter: int = 0
    n_steps: int = 0
    objective: float = math.nan

    def record(self, phase: str, iteration: int, value: float) -> None:
        elapsed = time.perf_counter() - self.started
        self.history.append({"phase": phase, "iteration": iteration, "objective": value, "time": elapsed})
        if self.verbose:
            print(f"[DictionaryLearning] {phase} {iteration}: objective {value:.6g}")


def update_dictionary(
    D: torch.Tensor, A: torch.Tensor, B: torch.Tensor, X: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """One sweep of block-coordinate descent over the atoms on the sphere (see the module
    docstring); unused atoms are replaced by random rows of ``X``, normalized. Works on a copy."""
    D = D.clone()
    scale = float(torch.diagonal(A).mean()) if A.shape[0] else 0.0
    for k in range(D.shape[0]):
        a_kk = A[k, k]
        if float(a_kk) <= 1e-10 * max(scale, torch.finfo(D.dtype).tiny):
            u = X[int(torch.randint(X.shape[0], (1,), generator=generator))].clone()
        else:
            u = D[k] + (B[k] - A[k] @ D) / a_kk
        norm = u.norm()
        if float(norm) == 0.0:
            u = torch.randn(D.shape[1], generator=generator, dtype=D.dtype).to(D.device)
            norm = u.norm()
        D[k] = u / norm
    return D


def initial_atoms(X: torch.Tensor, n_atoms: int, init, penalty: Penalty, algorithm: str, generator,
                  full_batch: bool = True):  # fmt: skip
    """The starting atoms (unit rows) and the l1 penalty of the warm-up (None without one)."""
    if not isinstance(init, str):
        D = np.asarray(init)
        if D.shape != (n_atoms, X.shape[1]):
            raise ValueError(
                f"init must be 'auto', 'svd', 'data', 'l1' or an array of shape {(n_atoms, X.shape[1])}"
            )
        if not np.isfinite(D).all() or (np.linalg.norm(D, axis=1) == 0).any():
            raise ValueError("init must be finite with no all-zero atom")
        D = torch.as_tensor(D, dtype=X.dtype, device=X.device)
        return D / D.norm(dim=1, keepdim=True), None
    init = resolve_init(init, penalty, algorithm, full_batch)
    D = _data_atoms(X, n_atoms, generator)
    if init == "svd":
        D = _svd_atoms(X, D)
    if init in ("data", "svd"):
        return D, None
    zone = penalty.dead_zone() if algorithm == "fista" else penalty.alpha
    return D, Penalty.make("l1", zone, None, penalty.nonnegative)


def resolve_init(init, penalty: Penalty, algorithm: str, full_batch: bool) -> str:
    """What ``init`` starts from: ``'auto'`` is ``'l1'`` for every penalty but l1 with FISTA,
    there ``'svd'`` in full batch and ``'data'`` online; an array is ``'array'``."""
    if not isinstance(init, str):
        return "array"
    init = check_choice("init", init, INITS)
    if init != "auto":
        return init
    if penalty.name != "l1" or algorithm == "omp":
        return "l1"
    return "svd" if full_batch else "data"


def _data_atoms(X: torch.Tensor, n_atoms: int, generator) -> torch.Tensor:
    """Random samples of ``X``, normalized (Gaussian noise in place of an all-zero sample)."""
    rows = torch.randint(X.shape[0], (n_atoms,), generator=generator).to(X.device)
    D = X[rows].clone()
    norms = D.norm(dim=1, keepdim=True)
    noise = torch.randn(D.shape, generator=generator, dtype=D.dtype).to(D.device)
    D = torch.where(norms > 0, D, noise)  # an all-zero sample cannot be an atom
    return D / D.norm(dim=1, keepdim=True)


def _svd_atoms(X: torch.Tensor, data_atoms: torch.Tensor) -> torch.Tensor:
    """scikit-learn's full-batch start: the leading right singular vectors of ``X``, as many as
    there are atoms and non-zero singular values, each signed so that its largest entry is
    positive (LAPACK builds may flip a vector's sign; the objective does not see it, a rerun
    elsewhere then starts from the same atoms); the atoms beyond them keep ``data_atoms``'s rows."""
    _, S, Vh = torch.linalg.svd(X.to(torch.float64), full_matrices=False)
    rank = int((S > S[0] * max(X.shape) * torch.finfo(X.dtype).eps).sum()) if S.numel() and S[0] > 0 else 0
    take = min(rank, data_atoms.shape[0])
    V = Vh[:take]
    peak = V.gather(1, V.abs().argmax(dim=1, keepdim=True))
    V = V * torch.where(peak < 0, -1.0, 1.0)
    D = data_atoms.clone()
    D[:take] = V.to(D.dtype)
    return D


def learn_full_batch(X, D, coding: Coding, *, max_iter: int, tol: float, generator, log: LearningLog,
                     phase: str, Z=None):  # fmt: skip
    """Alternating minimization over the whole set, warm-started codes, until the objective
    decreases by less than ``tol`` relative. Returns ``(D, Z)``."""
    scored = coding.scored
    previous, stopped = math.inf, "max_iter"
    for iteration in range(1, max_iter + 1):
        Z = coding.codes(X, D, Z)
        D = update_dictionary(D, Z.T @ Z, Z.T @ X, X, generator)
        value = objective(X, Z, D, scored)
        log.record(phase, iteration, value)
        if previous - value <= tol * abs(value):
            stopped = "tol"
            break
        previous = value
    log.history[-1]["stopped"] = stopped
    log.n_iter += iteration
    log.n_steps += iteration
    log.objective = value
    return D, Z


def learn_online(X, D, coding: Coding, batch: int, *, max_iter: int, tol: float, max_no_improvement,
                 generator, log: LearningLog, phase: str):  # fmt: skip
    """Mini-batches in a random order, the statistics ``A``, ``B`` with Mairal et al.'s forgetting
    factor; stops when an epoch moved the atoms by at most ``tol`` (root mean square) or the
    smoothed batch objective did not improve for ``max_no_improvement`` batches. Returns ``D``."""
    scored = coding.scored
    n_samples, n_atoms = X.shape[0], D.shape[0]
    A = torch.zeros(n_atoms, n_atoms, dtype=X.dtype, device=X.device)
    B = torch.zeros(n_atoms, X.shape[1], dtype=X.dtype, device=X.device)
    step, smoothed, best, no_improvement, stopped = 0, None, math.inf, 0, "max_iter"
    cost = math.nan
    weight = min(batch / (n_samples + 1), 1.0)
    for epoch in range(1, max_iter + 1):
        order = torch.randperm(n_samples, generator=generator).to(X.device)
        at_start = D
        for start in range(0, n_samples - batch + 1, batch):  # whole batches only
            Xb = X[order[start : start + batch]]
            Zb = coding.codes(Xb, D)
            # Mairal et al. (2010), section 3.4: past statistics forgotten as theta grows
            theta = (step + 1) * batch if step < batch - 1 else batch**2 + step + 1 - batch
            beta = (theta + 1 - batch) / (theta + 1)
            A.mul_(beta).add_(Zb.T @ Zb, alpha=1 / batch)
            B.mul_(beta).add_(Zb.T @ Xb, alpha=1 / batch)
            cost = objective(Xb, Zb, D, scored)
            D = update_dictionary(D, A, B, Xb, generator)
            step += 1
            # the first epoch (or 100 steps) only warms the average
            if step <= min(100, n_samples / batch):
                continue
            smoothed = cost if smoothed is None else smoothed * (1 - weight) + cost * weight
            if smoothed < best:
                best, no_improvement = smoothed, 0
            else:
                no_improvement += 1
                if max_no_improvement is not None and no_improvement >= max_no_improvement:
                    stopped = "max_no_improvement"
                    break
        moved = float((D - at_start).norm()) / math.sqrt(n_atoms)
        log.record(phase, epoch, cost if smoothed is None else smoothed)
        log.history[-1]["moved"] = moved
        if stopped == "max_iter" and tol > 0 and moved <= tol:
            stopped = "tol"
        if stopped != "max_iter":
            break
    log.history[-1]["stopped"] = stopped
    log.n_iter += epoch
    log.n_steps += step
    log.objective = log.history[-1]["objective"]
    return D
