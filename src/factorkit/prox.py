"""Proximal operators as plain functions, each beside the regularizer it belongs to.

``prox_{t h}(x) = argmin_z  h(z) + ||z - x||^2 / (2 t)``. Every operator works on tensors of any
shape (entrywise ones) or on the last dimensions noted, so a whole factor matrix, or a batch of
them, is one call. Each ``penalty_*`` returns the value ``h(x)`` summed over entries, so the
prox can be checked against its definition (tests/test_prox.py does, by grid search and scipy).

Conventions: quadratic terms are ``l2 * x^2`` (not ``l2 / 2 * x^2``); thresholds ``t`` are the
step size times the weight, and the functions take the weights and the step separately.
"""

from __future__ import annotations

import torch

from factorkit._validation import check_float

# ----- l1 -------------------------------------------------------------------------------------


def penalty_l1(x: torch.Tensor, l1: float = 1.0) -> torch.Tensor:
    return l1 * x.abs().sum()


def prox_l1(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Soft thresholding, the prox of ``threshold * ||x||_1``: ``sign(x) max(|x| - t, 0)``."""
    threshold = check_float("threshold", threshold, nonnegative=True)
    if x.is_floating_point():  # one fused kernel (the same values)
        return torch.nn.functional.softshrink(x, threshold)
    return torch.sign(x) * torch.clamp(x.abs() - threshold, min=0.0)


# ----- elastic net ----------------------------------------------------------------------------


def penalty_elastic_net(x: torch.Tensor, l1: float, l2: float) -> torch.Tensor:
    return l1 * x.abs().sum() + l2 * x.square().sum()


def prox_elastic_net(x: torch.Tensor, l1: float, l2: float, step: float) -> torch.Tensor:
    """Prox of ``step * (l1 |z| + l2 z^2)``: ``soft(x, step l1) / (1 + 2 step l2)``."""
    l1, l2 = check_float("l1", l1, nonnegative=True), check_float("l2", l2, nonnegative=True)
    step = check_float("step", step, positive=True)
    return prox_l1(x, step * l1) / (1 + 2 * step * l2)


# ----- constraints ----------------------------------------------------------------------------


def prox_nonnegative(x: torch.Tensor) -> torch.Tensor:
    """Projection onto ``z >= 0`` (the prox of its indicator)."""
    return torch.clamp(x, min=0.0)


def prox_box(x: torch.Tensor, lower: float = 0.0, upper: float = 1.0) -> torch.Tensor:
    """Projection onto ``[lower, upper]``."""
    if not lower <= upper:
        raise ValueError(f"lower must be <= upper, got lower={lower}, upper={upper}")
    return torch.clamp(x, min=lower, max=upper)


# ----- elastic-binary (Dalleiger & Vreeken, NeurIPS 2022) ------------------------------------

BOUNDS = {"none": (None, None), "nonnegative": (0.0, None), "box": (0.0, 1.0)}


def penalty_elastic_binary(x: torch.Tensor, l1: float, l2: float) -> torch.Tensor:
    """``sum min(l1 |x| + l2 x^2, l1 |x - 1| + l2 (x - 1)^2)``: zero exactly on {0, 1}."""
    to_zero = l1 * x.abs() + l2 * x.square()
    to_one = l1 * (x - 1).abs() + l2 * (x - 1).square()
    return torch.minimum(to_zero, to_one).sum()


def prox_elastic_binary(
    x: torch.Tensor, l1: float, l2: float, step: float, bounds: str = "none"
) -> torch.Tensor:
    """Exact prox of ``step * R`` with ``R`` the elastic-binary regularizer (optionally constrained).

    ``R = min(f0, f1)`` with ``f0(z) = l1|z| + l2 z^2`` and ``f1(z) = f0(z - 1)``, so the prox is
    the better of the two convex branches' proxes: ``soft(x, s l1) / (1 + 2 s l2)`` towards 0 and
    ``1 + soft(x - 1, s l1) / (1 + 2 s l2)`` towards 1 (each clamped to the feasible interval,
    exact in 1-D for a convex branch), compared by objective value. Without bounds, or with the
    box ``[0, 1]``, that comparison is the rule "towards 0 iff x <= 1/2" (the problem is
    symmetric about 1/2); with only ``z >= 0`` the comparison is kept.

    Parameters
    ----------
    bounds : {'none', 'nonnegative', 'box'}
        Feasible set: the reals, ``z >= 0``, or ``[0, 1]``.
    """
    l1, l2 = check_float("l1", l1, nonnegative=True), check_float("l2", l2, nonnegative=True)
    step = check_float("step", step, positive=True)
    if bounds not in BOUNDS:
        raise ValueError(f"bounds must be one of {', '.join(map(repr, BOUNDS))}; got {bounds!r}")
    lower, upper = BOUNDS[bounds]
    shrink = 1 + 2 * step * l2
    to_zero = prox_l1(x, step * l1) / shrink
    to_one = 1 + prox_l1(x - 1, step * l1) / shrink
    if lower is not None or upper is not None:
        to_zero = torch.clamp(to_zero, min=lower, max=upper)
        to_one = torch.clamp(to_one, min=lower, max=upper)
    if bounds != "nonnegative":  # symmetric about 1/2: the comparison reduces to this rule
        return torch.where(x <= 0.5, to_zero, to_one)

    def objective(z: torch.Tensor, centre: float) -> torch.Tensor:
        return 0.5 * (z - x).square() + step * (l1 * (z - centre).abs() + l2 * (z - centre).square())

    # each candidate is scored on its own branch; the min over branches is R's prox
    return torch.where(objective(to_zero, 0.0) <= objective(to_one, 1.0), to_zero, to_one)


# ----- group l2 -------------------------------------------------------------------------------


def penalty_group_l2(x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """``weight * sum_g ||x_g||_2`` with the groups along the last dimension (rows)."""
    return weight * x.norm(dim=-1).sum()


def prox_group_l2(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Block soft thresholding of each row: ``x_g max(0, 1 - t / ||x_g||)``."""
    threshold = check_float("threshold", threshold, nonnegative=True)
    norms = x.norm(dim=-1, keepdim=True)
    return x * torch.clamp(1 - threshold / norms.clamp_min(torch.finfo(x.dtype).tiny), min=0.0)


# ----- nuclear norm ---------------------------------------------------------------------------


def nuclear_norm(x: torch.Tensor) -> torch.Tensor:
    """``||X||_*``, the sum of singular values, over the last two dimensions."""
    return torch.linalg.svdvals(x).sum(-1)


def prox_nuclear(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Singular value thresholding, the prox of ``threshold * ||X||_*``.

    Cai, Candes & Shen, "A singular value thresholding algorithm for matrix completion"
    (SIAM J. Optim. 2010), Theorem 2.1: ``U diag(max(s - t, 0)) V^T`` for ``X = U diag(s) V^T``.
    Works on ``(..., m, m')`` batches.
    """
    threshold = check_float("threshold", threshold, nonnegative=True)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    return (u * torch.clamp(s - threshold, min=0.0).unsqueeze(-2)) @ vh


# ----- penalties closer to l0 (non-convex; sparse coding beyond l1) ---------------------------
# Each prox is the exact global minimizer of ``lam * h(z) + (z - x)^2 / (2 step)`` entry by entry
# (tests/test_prox.py: grid search over z for every x). ``nonnegative=True`` restricts z >= 0: each
# penalty is even and non-decreasing in |z|, so that prox is the unrestricted one of max(x, 0).


def _sign_and_size(x: torch.Tensor, nonnegative: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if nonnegative:
        x = x.clamp_min(0.0)
    return torch.sign(x), x.abs()


def penalty_l0(x: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """``lam * #{x_i != 0}``."""
    return lam * (x != 0).sum().to(x.dtype)


def prox_l0(x: torch.Tensor, lam: float, step: float = 1.0, nonnegative: bool = False) -> torch.Tensor:
    """Hard thresholding: ``x`` where ``|x| > sqrt(2 step lam)``, else 0 (0 at the tie)."""
    lam, step = check_float("lam", lam, nonnegative=True), check_float("step", step, positive=True)
    sign, size = _sign_and_size(x, nonnegative)
    return torch.where(size > (2 * step * lam) ** 0.5, sign * size, torch.zeros_like(x))


def penalty_l_half(x: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """``lam * sum |x_i|^(1/2)``."""
    return lam * x.abs().sqrt().sum()


def prox_l_half(x: torch.Tensor, lam: float, step: float = 1.0, nonnegative: bool = False) -> torch.Tensor:
    """Half thresholding, the closed-form prox of ``lam * |z|^(1/2)`` (Xu, Chang, Xu & Zhang, "L1/2
    regularization: a thresholding representation theory and a fast solver", IEEE TNNLS 2012),
    with their ``t = 2 step lam``: zero below ``(54^(1/3) / 4) t^(2/3)``, above it the largest root of
    the stationarity cubic, ``(2/3) x (1 + cos(2 pi / 3 - (2/3) arccos((t / 8) (|x| / 3)^(-3/2))))``."""
    lam, step = check_float("lam", lam, nonnegative=True), check_float("step", step, positive=True)
    sign, size = _sign_and_size(x, nonnegative)
    # Xu et al. solve (z - x)^2 + t |z|^(1/2): here (z - x)^2 / (2 step) + lam |z|^(1/2), so t = 2 step lam
    t = 2 * step * lam
    threshold = 54 ** (1 / 3) / 4 * t ** (2 / 3)
    safe = size.clamp_min(max(threshold, torch.finfo(x.dtype).tiny))
    phi = torch.arccos((t / 8 * (safe / 3) ** -1.5).clamp(-1.0, 1.0))
    value = 2 / 3 * safe * (1 + torch.cos(2 * torch.pi / 3 - 2 / 3 * phi))
    return torch.where(size > threshold, sign * value, torch.zeros_like(x))


def penalty_lq(x: torch.Tensor, lam: float = 1.0, q: float = 0.5) -> torch.Tensor:
    """``lam * sum |x_i|^q`` for ``0 <= q < 1`` (``q = 0``: the count of non-zeros, ``0^0 = 0``)."""
    q = check_q(q)
    if q == 0:
        return penalty_l0(x, lam)
    return lam * x.abs().pow(q).sum()


def check_q(q: float) -> float:
    """``q`` as a float if it is an exponent the l_q penalty takes (``0 <= q < 1``), else a ``ValueError``."""
    q = check_float("q", q, nonnegative=True)
    if q >= 1:
        raise ValueError(f"q must be in [0, 1) for the l_q penalty (q = 1 is l1: use prox_l1), got {q}")
    return q


LQ_NEWTON_STEPS = 40


def prox_lq(
    x: torch.Tensor, lam: float, step: float = 1.0, q: float = 0.5, nonnegative: bool = False
) -> torch.Tensor:
    """The prox of ``lam * |z|^q``, ``0 <= q < 1``, for any ``q`` (``q = 0`` and ``1/2`` are
    :func:`prox_l0` and :func:`prox_l_half`). With ``s = step lam``, the minimizer is 0 below
    ``tau = (2 - q) / (2 - 2q) * (2 s (1 - q))^(1 / (2 - q))`` (Marjanovic & Solo, "On l_q
    optimization and matrix completion", IEEE TSP 2012, Theorem 1) and above it the larger root of
    ``z + s q z^(q - 1) = |x|``: that function is convex on ``z > 0``, so Newton's method from
    ``z = |x|`` (right of the root) decreases monotonically onto it. Ties at ``tau`` go to 0."""
    lam, step = check_float("lam", lam, nonnegative=True), check_float("step", step, positive=True)
    q = check_q(q)
    if q == 0:
        return prox_l0(x, lam, step, nonnegative)
    sign, size = _sign_and_size(x, nonnegative)
    s = step * lam
    if s == 0:
        return sign * size
    tau = (2 - q) / (2 - 2 * q) * (2 * s * (1 - q)) ** (1 / (2 - q))
    # the root lies in [beta, |x|], beta = (s q (1 - q))^(1 / (2 - q)) the minimum of z + s q z^(q-1)
    beta = (s * q * (1 - q)) ** (1 / (2 - q))
    z = size.clamp_min(beta)
    for _ in range(LQ_NEWTON_STEPS):
        value = z + s * q * z.pow(q - 1) - size
        slope = 1 - s * q * (1 - q) * z.pow(q - 2)
        z = torch.maximum(z - value / slope.clamp_min(torch.finfo(x.dtype).tiny), torch.full_like(z, beta))
    return torch.where(size > tau, sign * z, torch.zeros_like(x))


def penalty_mcp(x: torch.Tensor, lam: float = 1.0, gamma: float = 3.0) -> torch.Tensor:
    """Minimax concave penalty (Zhang 2010): ``lam |x| - x^2 / (2 gamma)`` up to ``|x| = gamma lam``,
    then the constant ``gamma lam^2 / 2``."""
    size = x.abs()
    return torch.where(
        size <= gamma * lam, lam * size - size.square() / (2 * gamma), gamma * lam**2 / 2
    ).sum()


def prox_mcp(
    x: torch.Tensor, lam: float, step: float = 1.0, gamma: float = 3.0, nonnegative: bool = False
) -> torch.Tensor:
    """Firm thresholding, the prox of the MCP (needs ``gamma > step``): 0 up to ``step lam``, then
    ``(|x| - step lam) / (1 - step / gamma)`` up to ``gamma lam``, then ``x`` itself."""
    lam, step = check_float("lam", lam, nonnegative=True), check_float("step", step, positive=True)
    if check_float("gamma", gamma, positive=True) <= step:
        raise ValueError(
            f"gamma must be > step for the MCP prox to be single-valued, got gamma={gamma}, step={step}"
        )
    sign, size = _sign_and_size(x, nonnegative)
    middle = (size - step * lam).clamp_min(0.0) / (1 - step / gamma)
    return sign * torch.where(size <= gamma * lam, middle, size)


def penalty_scad(x: torch.Tensor, lam: float = 1.0, a: float = 3.7) -> torch.Tensor:
    """SCAD (Fan & Li 2001): ``lam |x|`` up to ``lam``, a quadratic blend up to ``a lam``, then the
    constant ``lam^2 (a + 1) / 2``."""
    size = x.abs()
    blend = (2 * a * lam * size - size.square() - lam**2) / (2 * (a - 1))
    return torch.where(
        size <= lam, lam * size, torch.where(size <= a * lam, blend, lam**2 * (a + 1) / 2)
    ).sum()


def prox_scad(
    x: torch.Tensor, lam: float, step: float = 1.0, a: float = 3.7, nonnegative: bool = False
) -> torch.Tensor:
    """The SCAD prox (needs ``a > 1 + step``): soft thresholding by ``step lam`` up to
    ``(1 + step) lam``, then ``((a - 1) |x| - a step lam) / (a - 1 - step)`` up to ``a lam``, then ``x``."""
    lam, step = check_float("lam", lam, nonnegative=True), check_float("step", step, positive=True)
    if check_float("a", a, positive=True) <= 1 + step:
        raise ValueError(
            f"a must be > 1 + step for the SCAD prox to be single-valued, got a={a}, step={step}"
        )
    sign, size = _sign_and_size(x, nonnegative)
    soft = (size - step * lam).clamp_min(0.0)
    blend = ((a - 1) * size - a * step * lam) / (a - 1 - step)
    return sign * torch.where(size <= (1 + step) * lam, soft, torch.where(size <= a * lam, blend, size))


def penalty_log(x: torch.Tensor, lam: float = 1.0, eps: float = 0.1) -> torch.Tensor:
    """``lam * sum log(1 + |x_i| / eps)``."""
    return lam * torch.log1p(x.abs() / eps).sum()


def prox_log(
    x: torch.Tensor, lam: float, step: float = 1.0, eps: float = 0.1, nonnegative: bool = False
) -> torch.Tensor:
    """The prox of the log penalty: the best of 0 and the roots of ``z^2 + (eps - |x|) z + step lam
    - |x| eps = 0`` (the stationarity condition on ``z > 0``), by the objective itself."""
    lam, step = check_float("lam", lam, nonnegative=True), check_float("step", step, positive=True)
    eps = check_float("eps", eps, positive=True)
    sign, size = _sign_and_size(x, nonnegative)
    b = eps - size
    discriminant = b.square() - 4 * (step * lam - size * eps)
    root = ((-b + discriminant.clamp_min(0.0).sqrt()) / 2).clamp_min(0.0)
    root = torch.where(discriminant >= 0, root, torch.zeros_like(root))

    def objective(z):
        return (z - size).square() / (2 * step) + lam * torch.log1p(z / eps)

    return sign * torch.where(
        objective(root) < objective(torch.zeros_like(size)), root, torch.zeros_like(size)
    )


def penalty_cel0(x: torch.Tensor, lam: float = 1.0, a: float = 1.0) -> torch.Tensor:
    """CEL0, the continuous exact l0 relaxation for a column of norm ``a`` (Soubies, Blanc-Feraud &
    Aubert, SIAM J. Imaging Sci. 2015): ``lam - (a^2 / 2) (|x| - sqrt(2 lam) / a)^2`` for
    ``|x| <= sqrt(2 lam) / a``, else ``lam``."""
    size = x.abs()
    knee = (2 * lam) ** 0.5 / a
    return torch.where(
        size <= knee, lam - a**2 / 2 * (size - knee).square(), torch.full_like(size, lam)
    ).sum()


def prox_cel0(
    x: torch.Tensor, lam: float, step: float = 1.0, a: float = 1.0, nonnegative: bool = False
) -> torch.Tensor:
    """The CEL0 prox (needs ``a^2 step < 1``): ``sign(x) min(|x|, max(0, (|x| - sqrt(2 lam) a step)
    / (1 - a^2 step)))``."""
    lam, step = check_float("lam", lam, nonnegative=True), check_float("step", step, positive=True)
    if check_float("a", a, positive=True) ** 2 * step >= 1:
        raise ValueError(f"a^2 * step must be < 1 for the CEL0 prox, got a={a}, step={step}")
    sign, size = _sign_and_size(x, nonnegative)
    shrunk = ((size - (2 * lam) ** 0.5 * a * step) / (1 - a**2 * step)).clamp_min(0.0)
    return sign * torch.minimum(size, shrunk)
