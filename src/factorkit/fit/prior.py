"""The G&C prior over a factorization's layer weights, shared by every sampler.

Its own module so that the samplers (rejection in :mod:`factorkit.fit.guess_check`, subset
simulation in :mod:`factorkit.fit.smc`, the pilot-driven :mod:`factorkit.fit.auto`) import it
without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from factorkit._choices import BACKENDS, LAYER_SCALINGS, PRIORS
from factorkit._validation import check_choice, check_float
from factorkit.fit import reparam
from factorkit.models.deep import DeepFactorization
from factorkit.problems.sensing import SensingProblem


@dataclass(frozen=True)
class Prior:
    """A prior over the layer weights of a :class:`DeepFactorization`.

    Parameters
    ----------
    base : {'gaussian', 'uniform'}
        Entries are i.i.d. ``N(0, s_j^2)`` or ``U(-s_j, s_j)`` in layer ``j``.
    normalize : bool
        Rescale the end-to-end matrix to Frobenius norm ``target_norm`` (the paper's
        normalized prior for the depth theorem).
    layer_scales : tuple of float, optional
        ``s_j`` per layer; overrides ``layer_scaling``.
    target_norm : float
        Norm after normalization (the studies set ``||W*||_F``).
    layer_scaling : {'fan_out', 'fan_in'}
        The scales ``s_j`` when ``layer_scales`` is not given. ``'fan_out'`` (default, the
        paper's: "variance 1/k in the layers with k outputs", arXiv:2506.03931, and its code's
        ``W / sqrt(width)`` then ``W / sqrt(n_cols)``): ``s_j = 1/sqrt(rows of W_j)``, i.e.
        ``1/sqrt(k)`` for ``W_1`` and the hidden layers and ``1/sqrt(m)`` for ``W_d``.
        ``'fan_in'``: ``s_j = 1/sqrt(columns of W_j)`` (``1/sqrt(m')`` for ``W_1``, then
        ``1/sqrt(k)``). The two give the same law of ``W`` for linear and positively homogeneous
        activations (ReLU, leaky ReLU) when ``m = m'``, and for any activation at ``k = m'``; they
        differ for tanh at ``k != m'`` (fan-in puts ``W_1``'s entries in tanh's saturated range).

    Notes
    -----
    The authors' G&C code evaluates ``s(W) W_out`` with ``W`` of shape ``m x k``, the
    *transpose* of the ``W_d s(W_1)`` their gradient descent trains. Both orientations have the
    same law for linear nets and the random problems' law is transposition-invariant, so averages
    over problems agree; on one fixed problem a non-linear net's acceptance rate can differ (leaky
    ReLU at eps 0.05: by up to 9%, benchmarks/paper_code_side_by_side.py). factorkit draws the
    model's own orientation; to reproduce the authors' draws on a given problem, run G&C on
    ``problem.transposed()`` with the model's ``m``/``m'`` swapped (study configs:
    ``gc.orientation = 'transposed'``).
    """

    base: str = "gaussian"
    normalize: bool = False
    layer_scales: tuple[float, ...] | None = None
    target_norm: float = 1.0
    layer_scaling: str = "fan_out"

    def __post_init__(self) -> None:
        check_choice("prior base", self.base, ("gaussian", "uniform"))
        check_float("target_norm", self.target_norm, positive=True)
        check_choice("layer_scaling", self.layer_scaling, LAYER_SCALINGS)
        if self.layer_scales is not None:
            for index, scale in enumerate(self.layer_scales):
                check_float(f"layer_scales[{index}]", scale, positive=True)

    @classmethod
    def from_name(cls, name: str, target_norm: float = 1.0, layer_scaling: str = "fan_out") -> Prior:
        """``'gaussian'``, ``'normalized_gaussian'``, ``'uniform'`` or ``'normalized_uniform'``."""
        check_choice("prior", name, PRIORS)
        normalize = name.startswith("normalized_")
        return cls(
            base=name.removeprefix("normalized_"),
            normalize=normalize,
            target_norm=target_norm,
            layer_scaling=layer_scaling,
        )

    @property
    def name(self) -> str:
        return ("normalized_" if self.normalize else "") + self.base

    def scales(self, model: DeepFactorization) -> list[float]:
        shapes = model.layer_shapes()
        if self.layer_scales is not None:
            if len(self.layer_scales) != len(shapes):
                raise ValueError(
                    f"layer_scales has {len(self.layer_scales)} entries, the model {len(shapes)} layers"
                )
            return list(self.layer_scales)
        if self.layer_scaling == "fan_in":
            return [1.0 / math.sqrt(cols) for _, cols in shapes]
        return [1.0 / math.sqrt(rows) for rows, _ in shapes]

    def sample_weights(
        self,
        model: DeepFactorization,
        count: int,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> list[torch.Tensor]:
        """``count`` draws of every layer, on the generator's device."""
        device = generator.device
        weights = []
        for (rows, cols), scale in zip(model.layer_shapes(), self.scales(model), strict=True):
            if self.base == "gaussian":
                w = torch.randn(count, rows, cols, generator=generator, device=device, dtype=dtype)
                weights.append(w.mul_(scale))
            else:
                w = torch.rand(count, rows, cols, generator=generator, device=device, dtype=dtype)
                weights.append(w.mul_(2 * scale).sub_(scale))
        return weights

    def from_normal(self, model: DeepFactorization, latent: list[torch.Tensor]) -> list[torch.Tensor]:
        """Layer weights from standard-normal latents ``u`` (one tensor per layer): ``s_j u`` for a
        Gaussian prior, ``s_j erf(u / sqrt(2))`` (``s_j (2 Phi(u) - 1)``, exactly ``U(-s_j, s_j)``)
        for a uniform one. Samplers that move ``u`` by a Gaussian-reversible kernel (SMC's pCN
        steps) sample this prior exactly, whatever its base."""
        return [self._from_normal(s, u) for s, u in zip(self.scales(model), latent, strict=True)]

    def layer_from_normal(self, model: DeepFactorization, index: int, u: torch.Tensor) -> torch.Tensor:
        """Layer ``index``'s weights from its latent ``u``: :meth:`from_normal` of that layer alone
        (the same operations, so the same numbers)."""
        return self._from_normal(self.scales(model)[index], u)

    def _from_normal(self, scale: float, u: torch.Tensor) -> torch.Tensor:
        if self.base == "gaussian":
            return scale * u
        return scale * torch.special.erf(u * (1 / math.sqrt(2)))

    def finish(self, W: torch.Tensor) -> torch.Tensor:
        """Apply the normalization (if any) to end-to-end draws ``(..., m, m')``."""
        if not self.normalize:
            return W
        norms = W.flatten(-2).norm(dim=-1)[..., None, None]
        # a zero matrix (possible with relu) has no direction to rescale: it stays zero
        return torch.where(norms > 0, W * (self.target_norm / norms.clamp_min(1e-300)), W)

    def backend_for(self, model: DeepFactorization, backend: str = "auto") -> str:
        """The draw used for ``backend``: ``'auto'`` picks ``'reparam'`` where it is exact and faster.

        The reparametrized draw (:mod:`factorkit.fit.reparam`) needs Gaussian layers, depth >= 2
        and width >= m'. Its cost does not grow with the width but has a fixed price per layer, so
        ``'auto'`` uses it for linear nets from width ``2 m'`` and for non-linear nets (which
        save only the output layer) at depth 2 from width ``4 m'``: the crossovers measured on
        the CPU (benchmarks/README.md); elsewhere it draws every layer (``'direct'``).
        """
        check_choice("backend", backend, BACKENDS)
        available = self.base == "gaussian" and reparam.applies(model)
        if backend == "reparam" and not available:
            raise ValueError(
                "backend='reparam' needs a Gaussian prior, depth >= 2 and width >= m2; got "
                f"prior {self.name!r}, depth={model.depth}, width={model.width}, m2={model.m2}"
            )
        if backend == "auto":
            if model.is_linear:
                faster = model.width >= 2 * model.m2
            else:
                faster = model.depth == 2 and model.width >= 4 * model.m2
            return "reparam" if available and faster else "direct"
        return backend

    def sample(
        self,
        model: DeepFactorization,
        count: int,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
        backend: str = "direct",
    ) -> torch.Tensor:
        """``count`` end-to-end draws ``(count, m, m')`` of ``W`` under this prior.

        ``backend='direct'`` draws every layer; ``'reparam'`` draws ``W`` from its exact law with
        far fewer random numbers (:mod:`factorkit.fit.reparam`); ``'auto'`` picks the latter where
        it applies. Both give the same distribution, not the same stream.
        """
        if self.backend_for(model, backend) == "reparam":
            W = reparam.sample_end_to_end(model, self.scales(model), count, generator, dtype)
        else:
            W = model.end_to_end(self.sample_weights(model, count, generator, dtype))
        return self.finish(W)


def resolve_prior(prior: str | Prior, problem: SensingProblem, layer_scaling: str = "fan_out") -> Prior:
    """A :class:`Prior` from a name (normalized priors take ``||W*||_F`` as target norm)."""
    if isinstance(prior, Prior):
        return prior
    if not isinstance(prior, str):
        raise TypeError(f"prior must be a name or a Prior, got {type(prior).__name__}")
    return Prior.from_name(prior, target_norm=float(problem.W_star.norm()), layer_scaling=layer_scaling)
