"""Matrix sensing: a ground truth ``W*``, measurements ``y_i = <A_i, W*>`` and exact losses.

The setting is that of Alexander, Slutzky, Ran-Milo & Cohen, "Do Neural Networks Need Gradient
Descent to Generalize? A Theoretical Study" (NeurIPS 2025, arXiv:2506.03931), Section 2:

* ``L_train(W) = (1/n) sum_i (<A_i, W> - y_i)^2``;
* ``L_gen(W) = (1/|B|) sum_{B_j in B} <B_j, W - W*>^2`` with ``B`` an orthonormal basis of the
  orthogonal complement of ``span{A_i}`` in ``R^{m x m'}``: the error on everything the
  measurements do not already pin down.

Both losses are computed for a whole batch of candidates with *one* matrix product: the
flattened candidates ``(..., m m')`` times the stacked operator ``[A; B]^T`` of shape
``(m m', n + |B|)``. Using the orthonormal basis rows is the projector formula
``L_gen = ||P_perp vec(W - W*)||^2 / |B|`` (``P_perp = B^T B``) without forming ``P_perp``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from factorkit._choices import LOSSES, MEASUREMENT_KINDS
from factorkit._validation import (
    check_choice,
    check_finite_tensor,
    check_float,
    check_int,
    make_generator,
    resolve_device,
    resolve_dtype,
)
from factorkit.problems.completion import entry_measurements, random_mask


def orthonormal_complement(measurements: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis of ``span{A_i}^perp`` in ``R^{m x m'}``, shape ``(m m' - rank, m, m')``.

    Computed from a full SVD of the flattened ``(n, m m')`` stack in float64; the rank uses the
    usual ``max(shape) * eps * s_max`` tolerance, so linearly dependent measurements are handled.
    """
    n, m, m2 = measurements.shape
    flat = measurements.reshape(n, m * m2).to(torch.float64)
    _, singular_values, vh = torch.linalg.svd(flat, full_matrices=True)
    largest = float(singular_values.max()) if singular_values.numel() else 0.0
    tol = max(flat.shape) * torch.finfo(torch.float64).eps * largest
    rank = int((singular_values > tol).sum())
    return vh[rank:].reshape(-1, m, m2).to(measurements.dtype)


def _evaluate(
    flat: torch.Tensor, operator: torch.Tensor, targets: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and generalization losses from one product of ``flat`` with ``operator``.

    ``flat`` is ``(..., q)``; ``operator`` is ``(q, K)`` shared by all candidates, or
    ``(P, q, K)`` with ``flat`` of shape ``(P, q)`` (one problem per population member).
    """
    return _residual_losses(flat, operator, targets, n)[1:]


def _residual_losses(
    flat: torch.Tensor, operator: torch.Tensor, targets: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The residuals of every measurement and complement coordinate, and :func:`_evaluate`'s losses."""
    if operator.dim() == 2:
        residual = flat @ operator - targets
    else:
        residual = torch.bmm(flat.unsqueeze(1), operator).squeeze(1) - targets
    sq = residual.square()
    train = sq[..., :n].mean(-1)
    # mean over an empty complement (n = m m') is NaN: nothing is left to generalize to.
    gen = sq[..., n:].mean(-1) if sq.shape[-1] > n else torch.full_like(train, float("nan"))
    return residual, train, gen


def _evaluate_gradient(
    flat: torch.Tensor, operator: torch.Tensor, targets: torch.Tensor, n: int, loss: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_evaluate` and the gradient in ``flat`` of the members' summed training objective:
    ``L_train`` (``loss='l2'``: ``(2/n) r A^T``) or the mean absolute residual (``'l1'``: its
    sub-gradient ``(1/n) sign(r) A^T``, zero where ``r = 0``, as autograd's), ``r`` the training
    residuals, by one more product with the training part of ``operator``."""
    residual, train, gen = _residual_losses(flat, operator, targets, n)
    coefficient = residual[..., :n] * (2.0 / n) if loss == "l2" else residual[..., :n].sign() / n
    if operator.dim() == 2:
        grad = coefficient @ operator[:, :n].mT
    else:
        grad = torch.bmm(coefficient.unsqueeze(1), operator[:, :, :n].mT).squeeze(1)
    return train, gen, grad


@dataclass(frozen=True, eq=False)
class SensingProblem:
    """A matrix sensing problem with its exact generalization loss.

    Build one with :func:`make_sensing_problem` (random, seeded) or
    :meth:`SensingProblem.from_measurements` (your own ``A_i`` and ``W*``).

    Attributes
    ----------
    W_star : (m, m') tensor, the ground truth.
    A : (n, m, m') tensor, the measurement matrices.
    y : (n,) tensor, ``y_i = <A_i, W*>``.
    complement : (m m' - rank(A), m, m') orthonormal basis of ``span{A_i}^perp``.
    kind : ``'gaussian'``, ``'completion'`` or ``'custom'``.
    """

    W_star: torch.Tensor
    A: torch.Tensor
    y: torch.Tensor
    complement: torch.Tensor
    kind: str = "custom"
    operator: torch.Tensor = field(init=False, repr=False)
    targets: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        q = self.W_star.numel()
        stacked = torch.cat([self.A.reshape(-1, q), self.complement.reshape(-1, q)])
        object.__setattr__(self, "operator", stacked.T.contiguous())
        # the training targets are the observed y (possibly corrupted, see `corrupt`); the
        # complement targets always come from W*
        targets = torch.cat([self.y, self.complement.reshape(-1, q) @ self.W_star.reshape(q)])
        object.__setattr__(self, "targets", targets)

    @classmethod
    def from_measurements(cls, A: torch.Tensor, W_star: torch.Tensor, kind: str = "custom") -> SensingProblem:
        """A problem from given measurement matrices ``A`` (n, m, m') and ground truth ``W_star``."""
        check_finite_tensor("A", A)
        check_finite_tensor("W_star", W_star)
        if A.dim() != 3:
            raise ValueError(f"A must have shape (n, m, m'), got {tuple(A.shape)}")
        if W_star.shape != A.shape[1:]:
            raise ValueError(
                f"W_star must have shape {tuple(A.shape[1:])} to match A, got {tuple(W_star.shape)}"
            )
        if A.dtype != W_star.dtype or A.device != W_star.device:
            raise TypeError(
                f"A and W_star must share dtype and device, got {A.dtype}/{A.device} and "
                f"{W_star.dtype}/{W_star.device}"
            )
        y = (A * W_star).sum(dim=(1, 2))
        return cls(W_star, A, y, orthonormal_complement(A), kind)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.W_star.shape)  # type: ignore[return-value]

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def device(self) -> torch.device:
        return self.W_star.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_star.dtype

    def _flat(self, W: torch.Tensor) -> torch.Tensor:
        if W.shape[-2:] != self.W_star.shape:
            raise ValueError(f"W must have trailing shape {tuple(self.W_star.shape)}, got {tuple(W.shape)}")
        return W.reshape(*W.shape[:-2], self.W_star.numel())

    def losses(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_train, L_gen)`` for a batch ``W`` of shape ``(..., m, m')``, in one product."""
        return _evaluate(self._flat(W), self.operator, self.targets, self.n)

    def losses_and_gradient(self, W: torch.Tensor, loss: str = "l2") -> tuple[torch.Tensor, ...]:
        """``(L_train, L_gen, G)`` for a batch ``W`` of shape ``(..., m, m')``: ``G`` is the gradient
        in ``W`` of the summed objective (``'l2'``: ``L_train``; ``'l1'``: the mean absolute
        residual, its sub-gradient), in closed form: what autograd gives, without its graph."""
        check_choice("loss", loss, LOSSES)
        train, gen, grad = _evaluate_gradient(self._flat(W), self.operator, self.targets, self.n, loss)
        return train, gen, grad.view_as(W)

    def train_loss(self, W: torch.Tensor) -> torch.Tensor:
        """``L_train(W) = mean_i (<A_i, W> - y_i)^2`` over the batch dimensions of ``W``."""
        return self.train_residuals(W).square().mean(-1)

    def gen_loss(self, W: torch.Tensor) -> torch.Tensor:
        """Exact ``L_gen(W)``: mean squared error on an orthonormal basis of ``span{A_i}^perp``."""
        return self.losses(W)[1]

    def train_residuals(self, W: torch.Tensor) -> torch.Tensor:
        """``<A_i, W> - y_i`` for every measurement, shape ``(..., n)``."""
        return self._flat(W) @ self.operator[:, : self.n] - self.targets[: self.n]

    def rel_error(self, W: torch.Tensor) -> torch.Tensor:
        """``||W - W*||_F / ||W*||_F``."""
        diff = W - self.W_star
        return diff.flatten(-2).norm(dim=-1) / self.W_star.norm()

    def transposed(self) -> SensingProblem:
        """The same problem for ``W^T``: ``A_i^T``, ``W*^T``, the same ``y`` and complement basis transposed.

        ``<A_i^T, W^T> = <A_i, W>``, so both losses of ``W^T`` here equal those of ``W`` in ``self``.
        """
        return SensingProblem(
            self.W_star.mT.contiguous(),
            self.A.mT.contiguous(),
            self.y,
            self.complement.mT.contiguous(),
            self.kind,
        )

    def to(self, device: str | torch.device | None = None, dtype=None) -> SensingProblem:
        """A copy on another device and/or dtype (the complement basis is carried, not redone)."""
        device = self.device if device is None else resolve_device(device)
        dtype = self.dtype if dtype is None else resolve_dtype(dtype)

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype)

        return SensingProblem(move(self.W_star), move(self.A), move(self.y), move(self.complement), self.kind)


def corrupt(
    problem: SensingProblem,
    outliers: float = 0.0,
    outlier_scale: float = 10.0,
    noise_std: float = 0.0,
    seed: int = 0,
) -> SensingProblem:
    """A copy of ``problem`` whose observed ``y`` carries noise; ``W*`` and the losses' truth stay.

    A fraction ``outliers`` of the measurements, chosen at random, have ``y_i`` replaced by
    ``N(0, (outlier_scale * rms(y))^2)`` draws (dense gross corruption, as in Ma & Fattahi,
    arXiv:2202.08788); every measurement then gets ``N(0, noise_std^2)`` added. ``L_train`` is
    measured against the corrupted ``y``; ``L_gen`` and ``rel_error`` against ``W*``.
    """
    outliers = check_float("outliers", outliers, nonnegative=True)
    if outliers >= 1:
        raise ValueError(f"outliers must be in [0, 1), got {outliers}")
    outlier_scale = check_float("outlier_scale", outlier_scale, positive=True)
    noise_std = check_float("noise_std", noise_std, nonnegative=True)
    generator = make_generator(seed)
    y = problem.y.detach().cpu().to(torch.float64).clone()
    count = round(outliers * problem.n)
    chosen = torch.randperm(problem.n, generator=generator)[:count]
    scale = outlier_scale * float(y.square().mean().sqrt())
    y[chosen] = scale * torch.randn(count, generator=generator, dtype=torch.float64)
    y = y + noise_std * torch.randn(problem.n, generator=generator, dtype=torch.float64)
    return SensingProblem(
        problem.W_star, problem.A, y.to(problem.device, problem.dtype), problem.complement, problem.kind
    )


def random_low_rank(m: int, m2: int, rank: int, norm: float, generator: torch.Generator) -> torch.Tensor:
    """``U V^T`` with i.i.d. standard normal ``U`` (m x r), ``V`` (m' x r), scaled to ``||.||_F = norm``."""
    U = torch.randn(m, rank, generator=generator, dtype=torch.float64)
    V = torch.randn(m2, rank, generator=generator, dtype=torch.float64)
    W = U @ V.T
    return W * (norm / W.norm())


def make_sensing_problem(
    m: int = 5,
    m2: int | None = None,
    rank: int = 1,
    n: int = 15,
    measurements: str = "gaussian",
    seed: int = 0,
    norm: float = 1.0,
    device: str | torch.device | None = "cpu",
    dtype: str | torch.dtype = "float32",
    psd: bool = False,
) -> SensingProblem:
    """A random sensing/completion problem, as in the paper's experiments.

    ``psd=True`` makes ``W* = U U^T`` symmetric positive semidefinite (needs ``m == m2``), the
    setting of symmetric factorizations ``W = U U^T``.

    The ground truth is a random rank-``rank`` matrix of Frobenius norm ``norm``. ``'gaussian'``
    measurements have i.i.d. N(0, 1) entries, each ``A_i`` then scaled to unit Frobenius norm;
    ``'completion'`` observes ``n`` distinct entries chosen uniformly (``A_i = e_j e_k^T``).

    All randomness is drawn on the CPU in float64 from ``seed`` and then cast, so the same seed
    gives the same problem on every device and dtype.

    Examples
    --------
    >>> problem = make_sensing_problem(m=5, rank=1, n=15, seed=0)
    >>> bool(problem.train_loss(problem.W_star) < 1e-12)
    True
    """
    m = check_int("m", m)
    m2 = m if m2 is None else check_int("m2", m2)
    rank = check_int("rank", rank)
    if rank > min(m, m2):
        raise ValueError(f"rank must be <= min(m, m2) = {min(m, m2)}, got {rank}")
    n = check_int("n", n)
    if n > m * m2:
        raise ValueError(f"n must be <= m * m2 = {m * m2} (the dimension of W), got {n}")
    check_choice("measurements", measurements, MEASUREMENT_KINDS)
    norm = check_float("norm", norm, positive=True)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype)
    generator = make_generator(seed)

    if psd:
        if m != m2:
            raise ValueError(f"psd=True needs a square W (m == m2), got m={m}, m2={m2}")
        U = torch.randn(m, rank, generator=generator, dtype=torch.float64)
        W_star = U @ U.T
        W_star = W_star * (norm / W_star.norm())
    else:
        W_star = random_low_rank(m, m2, rank, norm, generator)
    if measurements == "gaussian":
        A = torch.randn(n, m, m2, generator=generator, dtype=torch.float64)
        A = A / A.flatten(1).norm(dim=1)[:, None, None]
    else:
        A = entry_measurements(random_mask(m, m2, n, generator))
    problem = SensingProblem.from_measurements(A, W_star, kind=measurements)
    return problem.to(device, dtype)


def restricted_isometry(
    problem: SensingProblem, restarts: int = 16, iterations: int = 50, seed: int = 0
) -> tuple[float, float]:
    """Empirical rank-1 restricted-isometry bounds of the measurement operator.

    With ``A(X) = (<A_i, X>)_i`` scaled so that ``E ||A(X)||^2 = ||X||_F^2`` for unit-norm
    Gaussian ``A_i`` (the factor ``m m' / n``), returns the smallest and largest values of
    ``(m m' / n) ||A(u v^T)||^2`` over unit ``u, v`` found by alternating maximization (and
    minimization) from ``restarts`` random starts: for fixed ``v`` the ratio is the quadratic form
    ``u^T (sum_i A_i v v^T A_i^T) u``, optimized by its extreme eigenvector, then the same for ``v``.
    The found values bound the true extremes from inside, so ``delta = max(high - 1, 1 - low)`` is
    a lower bound on the rank-1 RIP constant (the depth theorem's assumption on the operator).
    """
    restarts = check_int("restarts", restarts)
    iterations = check_int("iterations", iterations)
    m, m2 = problem.shape
    A = problem.A.double().cpu()
    scale = m * m2 / problem.n
    generator = make_generator(seed)
    low, high = math.inf, -math.inf
    for sign in (1.0, -1.0):
        for _ in range(restarts):
            v = torch.randn(m2, generator=generator, dtype=torch.float64)
            v /= v.norm()
            for _ in range(iterations):
                Av = A @ v  # (n, m)
                u = torch.linalg.eigh(sign * scale * Av.T @ Av).eigenvectors[:, -1]
                uA = torch.einsum("i,nij->nj", u, A)  # (n, m2)
                values, vectors = torch.linalg.eigh(sign * scale * uA.T @ uA)
                v = vectors[:, -1]
            value = float(sign * values[-1])
            low, high = min(low, value), max(high, value)
    return low, high


@dataclass(frozen=True, eq=False)
class ProblemBatch:
    """``P`` sensing problems of equal sizes evaluated member-wise: ``W[p]`` against problem ``p``.

    Lets gradient descent over several seeds (each with its own ``W*`` and ``A``) run as one
    batched computation.
    """

    problems: tuple[SensingProblem, ...]
    operator: torch.Tensor = field(init=False, repr=False)
    targets: torch.Tensor = field(init=False, repr=False)
    W_star: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.problems:
            raise ValueError("problems must hold at least one SensingProblem")
        first = self.problems[0]
        for index, problem in enumerate(self.problems):
            if problem.operator.shape != first.operator.shape or problem.n != first.n:
                raise ValueError(
                    f"problems[{index}] has sizes (n={problem.n}, operator "
                    f"{tuple(problem.operator.shape)}) unlike problems[0] (n={first.n}, "
                    f"operator {tuple(first.operator.shape)})"
                )
        object.__setattr__(self, "operator", torch.stack([p.operator for p in self.problems]))
        object.__setattr__(self, "targets", torch.stack([p.targets for p in self.problems]))
        object.__setattr__(self, "W_star", torch.stack([p.W_star for p in self.problems]))

    @classmethod
    def of(cls, problems: Sequence[SensingProblem]) -> ProblemBatch:
        return cls(tuple(problems))

    def __len__(self) -> int:
        return len(self.problems)

    @property
    def n(self) -> int:
        return self.problems[0].n

    @property
    def shape(self) -> tuple[int, int]:
        return self.problems[0].shape

    @property
    def device(self) -> torch.device:
        return self.problems[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.problems[0].dtype

    def losses(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Member-wise ``(L_train, L_gen)`` for ``W`` of shape ``(P, m, m')``."""
        if W.shape != self.W_star.shape:
            raise ValueError(f"W must have shape {tuple(self.W_star.shape)}, got {tuple(W.shape)}")
        return _evaluate(W.flatten(1), self.operator, self.targets, self.n)

    def losses_and_gradient(self, W: torch.Tensor, loss: str = "l2") -> tuple[torch.Tensor, ...]:
        """Member-wise :meth:`SensingProblem.losses_and_gradient`."""
        if W.shape != self.W_star.shape:
            raise ValueError(f"W must have shape {tuple(self.W_star.shape)}, got {tuple(W.shape)}")
        check_choice("loss", loss, LOSSES)
        train, gen, grad = _evaluate_gradient(W.flatten(1), self.operator, self.targets, self.n, loss)
        return train, gen, grad.view_as(W)

    def train_loss(self, W: torch.Tensor) -> torch.Tensor:
        return self.losses(W)[0]

    def gen_loss(self, W: torch.Tensor) -> torch.Tensor:
        return self.losses(W)[1]

    def train_residuals(self, W: torch.Tensor) -> torch.Tensor:
        """Member-wise ``<A_i, W[p]> - y_i``, shape ``(P, n)``."""
        flat = W.flatten(1).unsqueeze(1)
        return torch.bmm(flat, self.operator[:, :, : self.n]).squeeze(1) - self.targets[:, : self.n]

    def rel_error(self, W: torch.Tensor) -> torch.Tensor:
        return (W - self.W_star).flatten(1).norm(dim=1) / self.W_star.flatten(1).norm(dim=1)
