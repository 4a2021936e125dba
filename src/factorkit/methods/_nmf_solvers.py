"""NMF's solvers as functions of explicit arguments (scikit-learn's ``_fit_coordinate_descent``
shape): :func:`fit_nmf` runs HALS or MU for ``fit`` (``update_H=True``) and ``transform``
(``update_H=False``); the estimator validates, initialises, calls, stores. See
:mod:`factorkit.methods.nmf` for the maths of each update.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import NamedTuple

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from factorkit.methods._nmf_data import EPS, NMFData, Transposed, beta_divergence

CHECK_EVERY = 5
NUMPY_HALS = True  # unmasked HALS on the CPU by HalsCPU (tests switch it off to compare with the torch path)
STALL_WINDOW = 10  # the stall rule compares the objective with its value this many iterations before


class Penalties(NamedTuple):
    """Elastic-net weights of ``W`` and ``H`` (scikit-learn's, already scaled by the shape)."""

    l1W: float = 0.0
    l2W: float = 0.0
    l1H: float = 0.0
    l2H: float = 0.0


NO_PENALTIES = Penalties()


def hals_sweeps(
    F,
    XF,
    G,
    l1: float,
    l2: float,
    max_sweeps: int,
    stop_ratio: float = 0.1,
    numpy_loop: bool | None = None,
    measure: bool = True,
) -> float:
    """Up to ``max_sweeps`` exact coordinate sweeps over the rows of ``F`` (k x n, in place).

    Returns the KKT violation met by the first sweep, ``sum |projected gradient|`` of each row just
    before its update (scikit-learn's ``cd`` measure, accumulated the same Gauss-Seidel way): row
    ``j``'s gradient is ``(G_jj + l2)(F_j - b_j)`` with ``b_j`` its unclamped update, so it costs a
    few vector operations on what the update computes anyway.

    Stops early once a sweep moves ``F`` by at most ``stop_ratio`` times the first sweep's move
    (Gillis & Glineur's inner stopping rule). ``numpy_loop`` (default: on CPU) runs the row
    updates on NumPy views of the tensors, else as torch operations (any device).

    ``F`` holds one component per row (``W^T`` or ``H``), ``XF`` the matching data product
    (``H X^T`` or ``W^T X``) and ``G`` the Gram matrix of the other factor. Row ``j``'s exact
    minimizer is ``max(0, (XF_j - l1 - sum_{i != j} G_ji F_i) / (G_jj + l2))``; with ``XF`` and
    ``G``'s rows divided by ``G_jj + l2`` once, and ``G``'s diagonal zeroed, each row update is one
    matrix-vector product and one clamp (the loop is bound by per-operation overhead at small k).
    """
    arrays = isinstance(F, np.ndarray)  # NumPy arrays in, NumPy loop
    if numpy_loop is None:
        numpy_loop = arrays or F.device.type == "cpu"
    if numpy_loop:
        # the same update on NumPy views of the same memory: a NumPy call costs about half a
        # torch call, and these k small calls per sweep (and the set-up) are the whole cost at small k
        Fn, XFn, Gn = (F, XF, G) if arrays else (F.numpy(), XF.numpy(), G.numpy())
        scale = Gn.diagonal() + l2
        # a zero component of the other factor and no l2: that row is left as it is (as scikit-learn)
        kept = np.flatnonzero(scale > 0).tolist()
        scale = np.where(scale > 0, scale, 1.0)
        target_n = ((XFn - l1) if l1 else XFn) / scale[:, None]
        coupling_n = Gn / scale[:, None]
        np.fill_diagonal(coupling_n, 0)
        scratch = np.empty(F.shape[1], dtype=Fn.dtype)
        step = np.empty(F.shape[1], dtype=Fn.dtype)
        rows = [(Fn[j], target_n[j], coupling_n[j], float(scale[j])) for j in kept]

        def sweep_once(measure: bool) -> float:
            violation = 0.0
            for row, b, g, s in rows:
                np.dot(g, Fn, out=scratch)
                np.subtract(b, scratch, out=scratch)
                if measure:  # projected gradient: (F_j - b_j), clipped at 0 where F_j = 0
                    np.subtract(row, scratch, out=step)
                    np.minimum(step, 0, out=step, where=row <= 0)
                    violation += s * float(np.abs(step).sum())
                np.maximum(scratch, 0, out=row)
            return violation
    else:
        scale = G.diagonal() + l2
        kept = (scale > 0).nonzero().squeeze(1).tolist()
        scale = torch.where(scale > 0, scale, 1.0)
        target = ((XF - l1) if l1 else XF) / scale[:, None]
        coupling = G / scale[:, None]
        coupling.fill_diagonal_(0)
        rows = [(F[j], target[j], coupling[j], scale[j]) for j in kept]
        FT = F.T

        def sweep_once(measure: bool) -> float:
            violation = F.new_zeros(())
            for row, b, g, s in rows:
                update = torch.addmv(b, FT, g, alpha=-1)
                if measure:
                    step = row - update
                    violation += s * torch.where(row > 0, step, step.clamp(max=0)).abs().sum()
                torch.clamp(update, min=0, out=row)
            return float(violation)

    first = None
    violation = 0.0
    for sweep in range(max_sweeps):
        # the move of a sweep only matters if another sweep may follow
        before = None if sweep == max_sweeps - 1 else F.copy() if arrays else F.clone()
        measured = sweep_once(measure=measure and sweep == 0)
        violation = measured if sweep == 0 else violation
        if before is None:
            return violation
        moved = float(np.linalg.norm(F - before)) if arrays else float((F - before).norm())
        if first is None:
            first = moved
        elif moved <= stop_ratio * first:
            return violation
    return violation


def kkt_violation(F: torch.Tensor, grad: torch.Tensor) -> float:
    """The KKT violation of ``F >= 0`` at gradient ``grad``: ``sum |projected gradient|``.

    The projected gradient is ``grad`` where ``F > 0`` and ``min(grad, 0)`` where ``F = 0``; it is
    zero exactly at a stationary point of the non-negative problem (scikit-learn's ``cd`` solver
    accumulates the same quantity over its coordinate updates).
    """
    projected = torch.where(F > 0, grad, grad.clamp(max=0))
    return float(projected.abs().sum())


def inner_sweeps(n: int, m: int, k: int, entries: int | None = None) -> int:
    """Gillis & Glineur's ``1 + rho / 2`` sweeps of ``W`` (n x k) per data product ``X H^T``.

    ``rho`` is the cost of the product over that of one sweep. Their count is in flops; here
    both are modelled in seconds, because a sweep is ``k`` rounds of small vector operations
    whose launch cost dominates while the product runs at matrix-multiply speed: product
    ``2 entries k / 2e10`` (``entries``: the stored entries of ``X``, ``n m`` when dense); sweep
    ``k (2e-5 + 2 n k / 5e9 + 4e-9 n)``. The constants are a fixed model (so runs stay
    deterministic), fitted on a 2-core CPU: 3 sweeps for 2000 x 1000 and k = 20 (measured best:
    3 to 5). Where the product costs less than two sweeps (digits, a sparse TF-IDF matrix) this is
    one sweep, plain HALS: with the stall rule of :class:`NMF` it reaches scikit-learn's
    200-iteration error sooner than two sweeps, which the KKT rule stopped at a worse point
    (issue 27's table in ``docs/guide/nmf.md``). Time to a given error is not monotone in the sweep
    count (on digits, 3 sweeps end at a worse local minimum than 2 or 4).
    """
    entries = n * m if entries is None else entries
    product = 2 * entries * k / 2e10
    sweep = k * (2e-5 + 2 * n * k / 5e9 + 4e-9 * n)
    return 1 + int(0.5 * product / sweep)


class HalsCPU:
    """One HALS iteration on NumPy arrays (``X`` dense or SciPy CSR): the same updates as the
    torch path (``tests/test_nmf.py`` runs both side by side), without a torch call per operation,
    which at scikit-learn's problem sizes costs more than the arithmetic. ``H H^T`` is kept from
    one iteration to the next, and the error ``||X - W H||`` comes from products the sweeps
    computed anyway: ``||X||^2 - 2 <W^T X, H> + <W^T W, H H^T>``."""

    def __init__(self, data: NMFData, penalties, sweeps_W: int, sweeps_H: int, update_H: bool):
        self.X = data.csr if data.sparse else data.X.numpy()
        self.sparse = data.sparse
        self.norm_sq = data.norm_sq
        self.l1W, self.l2W, self.l1H, self.l2H = penalties
        self.sweeps_W, self.sweeps_H = sweeps_W, sweeps_H
        self.update_H = update_H
        self.HHt = None

    def step(self, W: np.ndarray, H: np.ndarray, check: bool):
        X = self.X
        HHt = H @ H.T if self.HHt is None else self.HHt
        Wt = np.ascontiguousarray(W.T)
        # products in the orientation the sweeps read (k x n, k x m), without transposed copies
        HXt = (X @ H.T).T if self.sparse else H @ X.T
        violation = hals_sweeps(
            Wt, np.ascontiguousarray(HXt), HHt, self.l1W, self.l2W, self.sweeps_W, measure=check
        )
        W = Wt.T
        WtX = np.ascontiguousarray((X.T @ W).T if self.sparse else Wt @ X)
        if not self.update_H:
            cross, fit = float(np.vdot(WtX, H)), float(np.vdot(Wt @ W, HHt))
            return W, H, violation, math.sqrt(max(self.norm_sq - 2 * cross + fit, 0.0))
        WtW = Wt @ W
        violation += hals_sweeps(H, WtX, WtW, self.l1H, self.l2H, self.sweeps_H, measure=check)
        self.HHt = HHt = H @ H.T
        error = math.sqrt(max(self.norm_sq - 2 * float(np.vdot(WtX, H)) + float(np.vdot(WtW, HHt)), 0.0))
        return W, H, violation, error


def hals_masked(W, H, M, R, l1, l2) -> None:
    """One exact sweep over the columns of ``W`` for the loss on observed entries (in place).

    ``R = M * (X - W H)`` is kept current.
    """
    for j in range(W.shape[1]):
        h = H[j]
        a = M @ (h * h)
        old = W[:, j].clone()
        b = R @ h + old * a
        W[:, j] = torch.where(a + l2 > 0, ((b - l1) / (a + l2)).clamp_(min=0), old)
        R -= M * torch.outer(W[:, j] - old, h)


def mu_update(data, W, H, l1: float, l2: float, beta: float):
    """One multiplicative update of ``W`` for ``X ~ W H`` (``data`` may be a transposed view).

    General beta (Fevotte & Idier 2011, as scikit-learn): ``W <- W (num / den)^gamma`` with
    ``num = (X WH^(beta-2)) H^T``, ``den = WH^(beta-1) H^T``, ``gamma = 1/(2-beta)`` below 1,
    ``1/(beta-1)`` above 2, else 1 (the exponent that makes the update monotone).
    """
    if beta not in (1, 2):
        WH = (W @ H).clamp(min=EPS)
        M = data.M if data.M is not None else 1.0
        numerator = (M * data.X * WH ** (beta - 2)) @ H.T
        denominator = (M * WH ** (beta - 1)) @ H.T + l1 + l2 * W
        violation = kkt_violation(W, denominator - numerator)
        gamma = 1 / (2 - beta) if beta < 1 else 1 / (beta - 1) if beta > 2 else 1.0
        return W * (numerator / denominator.clamp(min=EPS)) ** gamma, violation
    if beta == 2:
        if data.M is None:
            numerator = data.times(H.T)
            denominator = W @ (H @ H.T)
        else:
            numerator = (data.M * data.X) @ H.T
            denominator = (data.M * (W @ H)) @ H.T
    else:
        if data.sparse:
            estimate = (W[data.rows] * H[:, data.cols].T).sum(1).clamp(min=EPS)
            ratio = torch.sparse_coo_tensor(
                torch.stack([data.rows, data.cols]), data.values / estimate, data.shape
            )
            numerator = torch.sparse.mm(ratio, H.T)
            denominator = H.sum(1)[None, :].expand_as(W)
        else:
            WH = (W @ H).clamp(min=EPS)
            M = data.M if data.M is not None else 1.0
            numerator = (M * data.X / WH) @ H.T
            denominator = (M * torch.ones_like(WH)) @ H.T
    denominator = denominator + l1 + l2 * W
    # the gradient of the objective in W is denominator - numerator (MU's own split of it)
    violation = kkt_violation(W, denominator - numerator)
    return W * numerator / denominator.clamp(min=EPS), violation


def nmf_error(data: NMFData, W, H, beta: float, WtX=None, gram=None) -> float:
    """``reconstruction_err_`` of ``W H`` (``gram``: ``(W^T W, H H^T)`` when already at hand)."""
    if beta == 1:
        return math.sqrt(2 * max(kl_divergence(data, W, H), 0.0))
    if beta != 2:
        return math.sqrt(2 * max(beta_divergence(data.X, W @ H, beta, data.M), 0.0))
    if data.M is not None:
        return float((data.M * (data.X - W @ H)).norm())
    if WtX is None:
        WtX = data.t_times(W).T
    cross = float((WtX * H).sum())
    WtW, HHt = gram if gram is not None else (W.T @ W, H @ H.T)
    fit = float((WtW * HHt).sum())
    return math.sqrt(max(data.norm_sq - 2 * cross + fit, 0.0))


def kl_divergence(data: NMFData, W, H) -> float:
    """The generalized Kullback-Leibler divergence ``D(X || W H)`` over the (observed) entries."""
    if data.sparse:
        estimate = (W[data.rows] * H[:, data.cols].T).sum(1)
        x = data.values
        total = float(W.sum(0) @ H.sum(1))
        return float(torch.xlogy(x, x / estimate.clamp(min=EPS)).sum() - x.sum()) + total
    WH = W @ H
    M = data.M if data.M is not None else torch.ones_like(WH)
    X = data.X
    return float((M * (torch.xlogy(X, X / WH.clamp(min=EPS)) - X + WH)).sum())


class _TorchStep:
    """One iteration of masked HALS, of HALS on another device, or of MU (torch tensors)."""

    def __init__(self, data: NMFData, W, H, solver: str, beta: float, penalties: Penalties, sweeps):
        self.data, self.solver, self.beta, self.penalties, self.sweeps = data, solver, beta, penalties, sweeps
        self.R = data.M * (data.X - W @ H) if (data.M is not None and solver == "hals") else None

    def step(self, W, H, check: bool, update_H: bool):
        data, (l1W, l2W, l1H, l2H) = self.data, self.penalties
        WtX = gram = None
        if self.solver == "mu":
            W, violation = mu_update(data, W, H, l1W, l2W, self.beta)
            if update_H:
                Ht, violation_H = mu_update(
                    Transposed(data), H.T.contiguous(), W.T.contiguous(), l1H, l2H, self.beta
                )
                H = Ht.T.contiguous()
                violation += violation_H
        elif self.R is not None:
            R = self.R
            violation = kkt_violation(W, l1W + l2W * W - R @ H.T)
            hals_masked(W, H, data.M, R, l1W, l2W)
            if update_H:
                violation += kkt_violation(H, l1H + l2H * H - W.T @ R)
                Ht, Rt = H.T.contiguous(), R.T.contiguous()
                hals_masked(Ht, W.T, data.M.T.contiguous(), Rt, l1H, l2H)
                H, self.R = Ht.T.contiguous(), Rt.T.contiguous()
        else:
            Wt = W.T.contiguous()
            XHt = data.times(H.T).T.contiguous()
            violation = hals_sweeps(Wt, XHt, H @ H.T, l1W, l2W, self.sweeps[0], measure=check)
            W = Wt.T
            if update_H:
                WtX = data.t_times(W).T.contiguous()
                WtW = Wt @ W
                violation += hals_sweeps(H, WtX, WtW, l1H, l2H, self.sweeps[1], measure=check)
                gram = (WtW, H @ H.T)
        error = nmf_error(data, W, H, self.beta, WtX if update_H else None, gram)
        return W, H, violation, error


def _objective(error: float, W, H, penalties: Penalties) -> float:
    """What the updates minimize: half the squared error (or the divergence) plus the penalties."""
    l1W, l2W, l1H, l2H = penalties
    return 0.5 * error**2 + sum(
        l1 * float(F.sum()) + 0.5 * l2 * float((F * F).sum())
        for F, l1, l2 in ((W, l1W, l2W), (H, l1H, l2H))
        if l1 or l2
    )


def fit_nmf(
    data: NMFData,
    W,
    H,
    *,
    solver: str = "hals",
    beta: float = 2.0,
    penalties: Penalties = NO_PENALTIES,
    max_iter: int = 400,
    tol: float = 1e-4,
    inner_sweeps_per_product: int | None = None,
    update_H: bool = True,
    callback=None,
    verbose: int = 0,
):
    """HALS or MU on ``data`` from ``(W, H)`` (torch tensors; ``H`` fixed when ``update_H`` is False).

    Stops by the KKT rule or the stall rule (:class:`factorkit.methods.NMF`'s ``tol``), read on the
    first and every :data:`CHECK_EVERY`-th iteration, or at ``max_iter`` with a
    ``ConvergenceWarning``. ``callback(iteration, H)`` after every iteration. Returns
    ``(W, H, error, iterations, history)``.
    """
    n, m = data.shape
    k = W.shape[1]
    if data.M is not None:
        sweeps = (1, 1)
    elif inner_sweeps_per_product is not None:
        sweeps = (inner_sweeps_per_product, inner_sweeps_per_product)
    else:
        entries = data.csr.nnz if data.sparse else None
        sweeps = (inner_sweeps(n, m, k, entries), inner_sweeps(m, n, k, entries))
    cpu_hals = NUMPY_HALS and solver == "hals" and data.M is None and W.device.type == "cpu"
    if cpu_hals:  # the default path: NumPy arrays and SciPy products, no torch call per iteration
        stepper = HalsCPU(data, penalties, *sweeps, update_H)
        W, H = W.numpy(), H.numpy()
    else:
        stepper = _TorchStep(data, W, H, solver, beta, penalties, sweeps)
    start = time.perf_counter()
    history: list[dict] = []
    objectives: dict[int, float] = {}  # at the checked iterations, for the stall rule
    for iteration in range(1, max_iter + 1):
        # the KKT violation is measured on the first iteration and every CHECK_EVERY-th after
        # (it costs a fifth of a cheap HALS iteration); the rules are read where it is measured
        check = iteration == 1 or iteration % CHECK_EVERY == 0 or iteration == max_iter
        W, H, violation, error = (
            stepper.step(W, H, check) if cpu_hals else stepper.step(W, H, check, update_H)
        )
        if iteration == 1:
            initial = violation
        history.append(
            {"error": error, "violation": violation if check else None, "time": time.perf_counter() - start}
        )
        if verbose:
            measured = f"{violation:.3g}" if check else "-"
            print(f"NMF iteration {iteration}: error {error:.6g}, KKT violation {measured}")
        if callback is not None:
            callback(iteration, np.array(H) if cpu_hals else H.cpu().numpy().copy())
        if not check:
            continue
        if violation <= tol * initial:
            history[-1]["stopped"] = "tol"
            break
        objectives[iteration] = _objective(error, W, H, penalties)
        earlier = objectives.get(iteration - STALL_WINDOW)
        if earlier is not None and earlier - objectives[iteration] <= tol * objectives[iteration]:
            history[-1]["stopped"] = "stalled"
            break
    else:
        if history:
            history[-1]["stopped"] = "max_iter"
        warnings.warn(
            f"NMF reached max_iter={max_iter} before the KKT violation fell to tol={tol} "
            "times its first value; raise max_iter, or tol",
            ConvergenceWarning,
            stacklevel=4,
        )
    if cpu_hals:
        W, H = torch.from_numpy(np.ascontiguousarray(W)), torch.from_numpy(H)
    return W, H, error, len(history), history
