"""Exact reparametrized draws of the end-to-end matrix under Gaussian layer priors.

G&C only needs the end-to-end ``W``, and for Gaussian layers its law can be sampled with far
fewer random numbers than drawing every layer. The facts used:

1. *Right-multiplying by a Gaussian layer.* If ``P`` (``k_in x m'``) is fixed and ``G``
   (``k x k_in``) has i.i.d. ``N(0, s^2)`` entries, the rows of ``G P`` are i.i.d.
   ``N(0, s^2 P^T P)``, so ``G P =d s Z R`` for ``Z`` (``k x m'``) standard normal and any
   ``R`` with ``R^T R = P^T P`` (the law of a Gaussian matrix with i.i.d. rows depends on its
   row covariance only).
2. *Linear networks.* With ``S_j = P_j^T P_j`` and ``S_j = R_j^T R_j``,
   ``S_{j+1} =d s_{j+1}^2 R_j^T (Z^T Z) R_j`` with ``Z^T Z ~ Wishart_{m'}(k, I)``. Bartlett's
   decomposition (Bartlett 1933; Anderson, *An Introduction to Multivariate Statistical
   Analysis*, 3rd ed., Cor. 7.2.1) samples ``Z^T Z = B^T B`` with ``B`` upper triangular,
   ``B_ii = sqrt(chi^2_{k-i})`` (``i = 0..m'-1``) and ``B_ij ~ N(0, 1)`` above the diagonal.
   Hence ``R_{j+1} = s_{j+1} B R_j`` (still upper triangular) and, at the output layer,
   ``W = s_d Z R_{d-1}`` with ``Z`` (``m x m'``). A depth-``d`` draw costs
   ``(d - 1) m'(m'+1)/2 + m m'`` random numbers whatever the width ``k`` (needs ``k >= m'``).
3. *Non-linear networks.* The hidden layers must be drawn, but given the last hidden
   representation ``F = s(H)`` (``k x m'``), the output layer gives ``W =d s_d Z L^T`` with
   ``L L^T = F^T F`` (Cholesky), saving the ``m x k`` output weights and the ``m x k x m'``
   product. Draws whose ``F^T F`` is singular (possible with ReLU) fall back to the direct
   output layer, so the law stays exact.

A normalized prior rescales ``W`` afterwards (a deterministic map), so it stays exact too.
Equality in law is checked in ``tests/test_reparam.py`` by two-sample Kolmogorov-Smirnov tests
against the direct draw.
"""

from __future__ import annotations

import torch

from factorkit.models.deep import DeepFactorization


def standard_gamma(alpha: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Exact ``Gamma(alpha, 1)`` draws for ``alpha >= 1/2``, vectorized.

    Marsaglia & Tsang, "A simple method for generating gamma variables", ACM TOMS 26(3), 2000:
    for ``a >= 1``, ``d = a - 1/3``, ``c = 1 / sqrt(9 d)``, propose ``v = (1 + c x)^3`` with
    ``x ~ N(0, 1)`` and accept ``d v`` iff ``log u < x^2 / 2 + d - d v + d log v``
    (``u ~ U(0, 1)``); about 2% of proposals are rejected and redrawn. For ``a < 1`` a
    ``Gamma(a + 1)`` draw times ``u^(1/a)`` is ``Gamma(a)`` (their Section 6).
    """
    if bool((alpha < 0.5).any()):
        raise ValueError("standard_gamma needs alpha >= 1/2")
    device, dtype = alpha.device, alpha.dtype
    flat = alpha.reshape(-1)
    boosted = flat < 1
    d = torch.where(boosted, flat + 1, flat) - 1.0 / 3.0
    c = (9 * d).rsqrt()

    def propose(dt: torch.Tensor, ct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(dt.numel(), generator=generator, device=device, dtype=dtype)
        u = torch.rand(dt.numel(), generator=generator, device=device, dtype=dtype)
        v = (1 + ct * x) ** 3
        positive = v > 0
        log_v = torch.where(positive, v, torch.ones_like(v)).log()
        accept = positive & (u.log() < 0.5 * x * x + dt - dt * v + dt * log_v)
        return dt * v, accept

    # first pass over everything without gathers; then only the ~2% rejected are redrawn
    out, accept = propose(d, c)
    todo = (~accept).nonzero().squeeze(1)
    while todo.numel():
        value, accept = propose(d[todo], c[todo])
        out[todo[accept]] = value[accept]
        todo = todo[~accept]
    if bool(boosted.any()):
        index = boosted.nonzero().squeeze(1)
        u = torch.rand(index.numel(), generator=generator, device=device, dtype=dtype)
        out[index] *= u.pow(1 / flat[index])
    return out.reshape(alpha.shape)


def _bartlett_entries(
    count: int, p: int, dof: int, generator: torch.Generator, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random entries of Bartlett's ``B``: above the diagonal ``(count, p(p-1)/2)`` in
    ``triu_indices`` order, and the diagonal ``(count, p)``."""
    if dof < p:
        raise ValueError(f"Bartlett's decomposition needs dof >= p, got dof={dof}, p={p}")
    device = generator.device
    upper = torch.randn(count, p * (p - 1) // 2, generator=generator, device=device, dtype=dtype)
    # chi^2_nu = 2 Gamma(nu / 2)
    shape = (torch.arange(dof, dof - p, -1, device=device, dtype=dtype) / 2).expand(count, p)
    return upper, (2 * standard_gamma(shape, generator)).sqrt_()


def bartlett_factor(
    count: int, p: int, dof: int, generator: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    """Upper-triangular ``B`` (``count x p x p``) with ``B^T B ~ Wishart_p(dof, I)``; ``dof >= p``."""
    upper, diagonal = _bartlett_entries(count, p, dof, generator, dtype)
    rows, cols = torch.triu_indices(p, p, offset=1, device=generator.device)
    factor = torch.zeros(count, p, p, device=generator.device, dtype=dtype)
    factor[:, rows, cols] = upper
    factor.diagonal(dim1=-2, dim2=-1).copy_(diagonal)
    return factor


def _bartlett_planes(
    count: int, p: int, dof: int, scale: float, generator: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    """``scale * B`` as planes over the draws, ``(p, p, count)`` (same random numbers as
    :func:`bartlett_factor`): each entry's ``count`` values are contiguous, so the tiny
    ``p x p`` products below become a few long vector operations instead of ``count`` batched
    matrix products."""
    upper, diagonal = _bartlett_entries(count, p, dof, generator, dtype)
    planes = torch.zeros(p, p, count, device=generator.device, dtype=dtype)
    entry = 0
    for row in range(p):
        planes[row, row] = diagonal[:, row]
        for col in range(row + 1, p):
            planes[row, col] = upper[:, entry]
            entry += 1
    return planes.mul_(scale)


def _times_upper(left: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """``left @ upper`` per draw, for planes ``left`` (``r, p, count``) and upper-triangular
    ``upper`` (``p, p, count``): ``out[:, j] = sum_{l <= j} left[:, l] upper[l, j]``."""
    out = left[:, :1] * upper[None, 0]
    for l in range(1, upper.shape[0]):
        out[:, l:].addcmul_(left[:, l, None], upper[None, l, l:])
    return out


def applies(model: DeepFactorization) -> bool:
    """Whether the reparametrized draw is available: depth >= 2 and width >= m'."""
    return model.depth >= 2 and model.width >= model.m2


def sample_end_to_end(
    model: DeepFactorization,
    scales: list[float],
    count: int,
    generator: torch.Generator,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``count`` exact draws of ``W`` (``count x m x m'``) for i.i.d. ``N(0, scales[j]^2)`` layers."""
    if not applies(model):
        raise ValueError(
            f"the reparametrized draw needs depth >= 2 and width >= m2; got depth={model.depth}, "
            f"width={model.width}, m2={model.m2}"
        )
    device = generator.device
    m, m2, k = model.m, model.m2, model.width
    if model.is_linear:
        # R_j = s_j B_j R_{j-1} (upper triangular), then W = s_d Z R_{d-1}, computed on planes
        # over the draws (the same random numbers as batched matrix products would use)
        factor = _bartlett_planes(count, m2, k, scales[0], generator, dtype)
        for scale in scales[1:-1]:
            factor = _times_upper(_bartlett_planes(count, m2, k, scale, generator, dtype), factor)
        z = torch.randn(count, m, m2, generator=generator, device=device, dtype=dtype)
        W = _times_upper(z.permute(1, 2, 0).contiguous(), factor).mul_(scales[-1])
        return W.permute(2, 0, 1).contiguous()

    hidden = scales[0] * torch.randn(count, k, m2, generator=generator, device=device, dtype=dtype)
    for scale in scales[1:-1]:
        layer = scale * torch.randn(count, k, k, generator=generator, device=device, dtype=dtype)
        hidden = layer @ model.act(hidden)
    features = model.act(hidden)
    gram = features.transpose(1, 2) @ features
    cholesky, info = torch.linalg.cholesky_ex(gram)
    z = torch.randn(count, m, m2, generator=generator, device=device, dtype=dtype)
    W = scales[-1] * (z @ cholesky.transpose(1, 2))
    failed = (info != 0).nonzero().squeeze(1)
    if failed.numel():
        output = torch.randn(failed.numel(), m, k, generator=generator, device=device, dtype=dtype)
        W[failed] = scales[-1] * (output @ features[failed])
    return W
