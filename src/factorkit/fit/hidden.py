"""The hidden layers of a factorization as maps of standard-normal latents, for the marginal sampler.

:mod:`factorkit.fit.marginal` needs, per prior draw of the hidden layers, only ``G = F^T F``
(``m' x m'``), ``F = s(W_{d-1} ... s(W_1))``. Its tempered SMC moves the hidden layers by pCN steps,
which are exact for any deterministic map of standard-normal latents (reversible w.r.t. the
latents' law). :class:`HiddenLayers` is that map:

* depth 1: no hidden layer, ``G = I``;
* linear nets with Gaussian layers and ``k >= m'``: Bartlett's factor (:mod:`factorkit.fit.reparam`)
  per layer, ``m'(m'+1)/2`` latents whatever the width; the diagonal ``sqrt(chi^2_{k-i})`` is the
  chi-square quantile of ``Phi(u)`` (upper quantile of ``Phi(-u)`` for ``u > 0``, so neither tail
  loses digits), then ``G = R^T R`` with ``R = s_{d-1} B_{d-1} ... s_1 B_1``;
* otherwise (or with ``bartlett=False``: matrix latents, which the tempered SMC's singular-value
  move needs) every hidden weight is a latent: ``s u`` (Gaussian layers) or ``s erf(u / sqrt 2)``
  (uniform layers, exactly ``U(-s, s)``), pushed through the activation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import special

from factorkit._kernels import batched_product
from factorkit.fit.prior import Prior
from factorkit.models.deep import DeepFactorization

WORK_FLOATS = 2**24  # floats of hidden-layer work space per batch of draws


class HiddenLayers:
    """Standard-normal latents of the hidden layers of ``model`` under ``prior`` and their Gram."""

    def __init__(self, model: DeepFactorization, prior: Prior, bartlett: bool = True):
        self.model, self.prior = model, prior
        self.m2 = model.m2
        self.scales = prior.scales(model)[:-1]
        if model.depth == 1:
            self.kind, self.shapes = "identity", []
        elif bartlett and model.is_linear and prior.base == "gaussian" and model.width >= model.m2:
            p = model.m2
            self.kind, self.shapes = "bartlett", [(p * (p + 1) // 2,)] * (model.depth - 1)
        else:
            self.kind, self.shapes = "layers", model.layer_shapes()[:-1]

    def for_moves(self) -> HiddenLayers:
        """The latents tempered SMC moves: matrix latents (which the singular-value move needs)
        in place of Bartlett's where they are not many more (width ``<= 2 m'``), else these."""
        if self.kind == "bartlett" and self.model.width <= 2 * self.m2:
            return HiddenLayers(self.model, self.prior, bartlett=False)
        return self

    @property
    def matrices(self) -> int:
        """How many of the latents are matrices (the hidden layers' weights), 0 otherwise."""
        return len(self.shapes) if self.kind == "layers" else 0

    @property
    def size(self) -> int:
        """Latent numbers per draw."""
        return sum(math.prod(shape) for shape in self.shapes)

    def batch(self) -> int:
        """Draws per batch that keep the hidden-layer work within :data:`WORK_FLOATS`."""
        if self.kind == "layers":
            per_draw = self.size + self.model.width * self.m2
        else:
            per_draw = self.size + self.m2 * self.m2
        return max(1, min(2**14, WORK_FLOATS // max(per_draw, 1)))

    def draw(self, count: int, generator: torch.Generator) -> list[torch.Tensor]:
        return [torch.randn(count, *shape, generator=generator, dtype=torch.float64) for shape in self.shapes]

    def gram(self, latent: list[torch.Tensor], count: int | None = None) -> torch.Tensor:
        """``G = F^T F`` per draw (float64, ``count x m' x m'``)."""
        if self.kind == "identity":
            return torch.eye(self.m2, dtype=torch.float64).expand(count, self.m2, self.m2).clone()
        if self.kind == "bartlett":
            factor = None
            for scale, u in zip(self.scales, latent, strict=True):
                layer = scale * self.bartlett(u)
                factor = layer if factor is None else layer @ factor
            return factor.transpose(1, 2) @ factor
        weights = []
        for scale, u in zip(self.scales, latent, strict=True):
            if self.prior.base == "gaussian":
                weights.append(scale * u)
            else:
                weights.append(scale * torch.special.erf(u * (1 / math.sqrt(2))))
        return gram_of_weights(self.model, weights)

    def bartlett(self, u: torch.Tensor) -> torch.Tensor:
        """Bartlett's upper-triangular factor (``B^T B ~ Wishart_{m'}(k, I)``) from latents ``u``:
        the first ``m'`` are the diagonal's (by the chi-square quantile), the rest above it."""
        p, k = self.m2, self.model.width
        count = u.shape[0]
        z = u[:, :p].numpy()
        dof = (k - np.arange(p))[None, :] / 2.0
        with np.errstate(under="ignore"):
            lower = special.gammaincinv(dof, special.ndtr(np.minimum(z, 0.0)))
            upper = special.gammainccinv(dof, special.ndtr(-np.maximum(z, 0.0)))
        diagonal = torch.from_numpy(np.sqrt(2.0 * np.where(z <= 0, lower, upper)))
        factor = torch.zeros(count, p, p, dtype=torch.float64)
        rows, cols = torch.triu_indices(p, p, offset=1)
        factor[:, rows, cols] = u[:, p:]
        factor.diagonal(dim1=-2, dim2=-1).copy_(diagonal)
        return factor


def gram_of_weights(model: DeepFactorization, hidden: list[torch.Tensor]) -> torch.Tensor:
    """``G = F^T F`` (float64) of hidden layers ``W_1 .. W_{d-1}`` given per draw."""
    H = hidden[0]
    for weight in hidden[1:]:
        H = batched_product(weight, model.act(H))
    F = model.act(H).to(torch.float64)
    return F.transpose(1, 2) @ F
