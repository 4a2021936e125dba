"""Adafactor: factored second moments, no first moment, update clipping, relative steps.

Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost" (ICML 2018);
the variant analysed by Hong & Lin ("Theoretical Investigation of Adafactor for Non-Convex
Smooth Optimization", NeurIPS 2025). For a parameter of shape ``(..., m, m')`` with gradient
``G``, at step ``t``:

    1 - beta2_t = t^c                                   (c = beta2_decay, default -0.8)
    R <- lerp(R, mean_cols(G^2), 1 - beta2_t)           (m running row statistics)
    C <- lerp(C, mean_rows(G^2), 1 - beta2_t)           (m' running column statistics)
    V = R C / mean(R)                                   (rank-1 second-moment estimate)
    U = G / sqrt(V),   step = alpha_t / max(1, RMS(U) / d)

so the state is ``O(m + m')`` per matrix (1-D parameters keep a full ``V``). Row/column *means*
(torch) or *sums* (the theory paper) give the same ``V``, since the normalization by
``mean(R)`` / ``1^T R`` cancels the factor.

Switches, and how they map to the two definitions:

* ``eps_mode='torch'``: ``V`` clamped below at ``eps1^2`` before the square root (torch);
  ``'theory'``: ``eps1`` added to ``G^2`` inside the accumulators (Hong & Lin).
* ``relative_step=True``: ``alpha_t = max(eps2, RMS(param)) * min(lr, 1/sqrt(t))`` (torch and
  the original paper); ``False``: ``alpha_t = lr`` (or ``lr(t)`` if callable), no parameter-scale
  factor (Hong & Lin).
* ``clipping``: the ``max(1, RMS(U)/d)`` divisor on or off (the theory covers both).
* ``population_axis``: the leading dimension indexes independent models (the GD trainer's
  seeds): RMS values are taken per member, so a batched run equals separate runs. The factored
  statistics already treat leading dimensions as batch dimensions.

With ``eps_mode='torch'``, ``relative_step=True``, ``clipping=True`` and the same ``lr``,
``beta2_decay``, ``d``, ``eps1``, ``eps2``, ``weight_decay``, the updates equal
``torch.optim.Adafactor``'s (tests/test_adafactor.py checks 100 steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from factorkit._validation import check_choice, check_float


class Adafactor(torch.optim.Optimizer):
    """Adafactor with the switches above (see the module docstring)."""

    def __init__(
        self,
        params,
        lr: float | Callable[[int], float] = 1e-2,
        beta2_decay: float = -0.8,
        d: float = 1.0,
        eps1: float | None = None,
        eps2: float = 1e-3,
        weight_decay: float = 0.0,
        relative_step: bool = True,
        clipping: bool = True,
        eps_mode: str = "torch",
        population_axis: bool = False,
    ) -> None:
        if not callable(lr):
            check_float("lr", lr, positive=True)
        if check_float("beta2_decay", beta2_decay) > 0:
            raise ValueError(f"beta2_decay must be <= 0, got {beta2_decay}")
        check_float("d", d, positive=True)
        if eps1 is not None:
            check_float("eps1", eps1, nonnegative=True)
        check_float("eps2", eps2, nonnegative=True)
        check_float("weight_decay", weight_decay, nonnegative=True)
        check_choice("eps_mode", eps_mode, ("torch", "theory"))
        if callable(lr) and relative_step:
            raise ValueError("a callable lr schedule needs relative_step=False")
        defaults = {
            "lr": lr,
            "beta2_decay": beta2_decay,
            "d": d,
            "eps1": eps1,
            "eps2": eps2,
            "weight_decay": weight_decay,
            "relative_step": relative_step,
            "clipping": clipping,
            "eps_mode": eps_mode,
            "population_axis": population_axis,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                self._update(param, group)
        return loss

    def _update(self, param: torch.Tensor, group: dict) -> None:
        grad = param.grad
        state = self.state[param]
        if not state:
            state["step"] = 0
            if grad.dim() > 1:
                state["row"] = grad.new_zeros(*grad.shape[:-1], 1)
                state["col"] = grad.new_zeros(*grad.shape[:-2], 1, grad.shape[-1])
            else:
                state["variance"] = torch.zeros_like(grad)
        state["step"] += 1
        t = state["step"]
        eps1 = torch.finfo(param.dtype).eps if group["eps1"] is None else group["eps1"]
        theory = group["eps_mode"] == "theory"
        weight = t ** group["beta2_decay"]
        lr = group["lr"]
        batched = group["population_axis"]

        def rms(x: torch.Tensor):
            # per population member (leading dimension) when batched, else over the whole tensor
            if batched:
                return (x.flatten(1).norm(dim=1) / math.sqrt(x[0].numel())).reshape(
                    -1, *([1] * (x.dim() - 1))
                )
            return x.norm(2).item() / math.sqrt(x.numel())

        if group["relative_step"]:
            scale = rms(param)
            scale = scale.clamp(min=group["eps2"]) if batched else max(group["eps2"], scale)
            alpha = scale * min(lr, 1 / math.sqrt(t))
        else:
            alpha = lr(t) if callable(lr) else lr
        if group["weight_decay"]:
            param.mul_(1 - (lr(t) if callable(lr) else lr) * group["weight_decay"])
        squared = grad * grad + eps1 if theory else grad * grad
        if grad.dim() > 1:
            state["row"].lerp_(squared.mean(dim=-1, keepdim=True), weight)
            state["col"].lerp_(squared.mean(dim=-2, keepdim=True), weight)
            normalizer = state["row"].mean(dim=-2, keepdim=True)
            estimate = state["row"] @ state["col"] / (normalizer if theory else normalizer.clamp(min=eps1))
        else:
            state["variance"].lerp_(squared, weight)
            estimate = state["variance"].clone()
        update = grad * (estimate.rsqrt() if theory else estimate.clamp_(min=eps1 * eps1).rsqrt_())
        denominator = 1.0
        if group["clipping"]:
            ratio = rms(update) / group["d"]
            denominator = ratio.clamp(min=1.0) if batched else max(1.0, ratio)
        if batched:
            param.sub_(update * (alpha / denominator))
        else:
            param.add_(update, alpha=-alpha / denominator)


def state_size(optimizer: torch.optim.Optimizer) -> int:
    """Number of floating-point numbers an optimizer keeps in its state."""
    return sum(
        value.numel()
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() > 0
    )
