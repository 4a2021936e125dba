"""RMSprop on the *norm* of the whole gradient: one adaptive step size per model.

Used by the gradient-descent runs of Alexander et al. (arXiv:2506.03931, App. D), after
Razin, Maman & Cohen (arXiv:2201.11729, App. D.2): the learning rate is divided by the square
root of a bias-corrected exponential average of the squared gradient norm, summed over all
parameters, so the direction is plain gradient descent and only the step length adapts.

With ``population_axis=True`` the leading dimension of every parameter indexes independent
models (seeds); each gets its own average, so ``P`` models train exactly as ``P`` separate runs.
"""

from __future__ import annotations

import torch

from factorkit._validation import check_float


class GroupRMSprop(torch.optim.Optimizer):
    """Gradient descent with step ``lr / (sqrt(v_t / (1 - alpha^t)) + eps)``.

    ``v_t = alpha v_{t-1} + (1 - alpha) ||g_t||^2`` with ``||g_t||^2`` summed over every
    parameter of the model (per population member when ``population_axis``).

    Parameters
    ----------
    params : iterable of tensors
        Parameters; with ``population_axis`` each must share the leading dimension ``P``.
    lr : float
        Base step size.
    alpha : float
        Smoothing constant of the squared-norm average, in ``[0, 1)``.
    eps : float
        Added to the root mean square for stability.
    population_axis : bool
        Treat dimension 0 as independent models.
    momentum : float or sequence of float
        Heavy-ball momentum on the normalized step, in ``[0, 1)``: ``b_t = momentum b_{t-1} + g_t``
        and the parameters move by ``step_t b_t``. (The paper's code accepts a momentum but
        applies ``g_t``, so its momentum runs equal the runs without; ``momentum=0`` is that.)
        With ``population_axis``, one value per member may be given (members with and without
        momentum in one batch: ``0 * b + g`` is exactly ``g``).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-6,
        population_axis: bool = False,
        momentum: float = 0.0,
    ) -> None:
        check_float("lr", lr, positive=True)
        momentum = _check_momentum(momentum, population_axis)
        check_float("alpha", alpha, nonnegative=True, upper=1.0)
        if alpha == 1.0:
            raise ValueError("alpha must be < 1, got 1.0")
        check_float("eps", eps, nonnegative=True)
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "population_axis": population_axis,
            "momentum": momentum,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._apply_update()
        return loss

    @torch.no_grad()
    def _apply_update(self) -> None:
        """The step itself, from the gradients in place: what :meth:`step` runs inside
        ``torch.optim``'s per-call wrapper (its hooks and profiler label), and what
        :func:`factorkit.fit.train_gd` calls directly where no hook is registered."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            batched = group["population_axis"]
            grads = [p.grad for p in params]
            if batched:
                squared = _member_squared_norms(grads)
            else:
                squared = sum(g.square().sum() for g in grads)
            state = self.state[params[0]]
            if "square_avg" not in state:
                state["step"] = 0
                state["square_avg"] = torch.zeros_like(squared)
            state["step"] += 1
            square_avg = state["square_avg"]
            square_avg.mul_(group["alpha"]).add_(squared, alpha=1 - group["alpha"])
            bias = 1 - group["alpha"] ** state["step"]
            step_size = group["lr"] / ((square_avg / bias).sqrt() + group["eps"])
            directions = grads
            momentum = group["momentum"]
            if isinstance(momentum, torch.Tensor) or momentum:
                buffers = []
                for p in params:
                    if "momentum_buffer" not in self.state[p]:
                        self.state[p]["momentum_buffer"] = torch.zeros_like(p)
                        if isinstance(momentum, torch.Tensor):  # one factor per member, shaped once
                            shape = (-1, *([1] * (p.dim() - 1)))
                            self.state[p]["momentum"] = momentum.to(p.device, p.dtype).reshape(shape)
                    buffers.append(self.state[p]["momentum_buffer"])
                if isinstance(momentum, torch.Tensor):
                    torch._foreach_mul_(buffers, [self.state[p]["momentum"] for p in params])
                else:
                    torch._foreach_mul_(buffers, momentum)
                torch._foreach_add_(buffers, grads)
                directions = buffers
            if batched:
                shaped = {}
                scales = [
                    shaped.setdefault(p.dim(), step_size.reshape(-1, *([1] * (p.dim() - 1)))) for p in params
                ]
                # p -= scale * direction for every parameter in one call (the fastest form measured)
                torch._foreach_addcmul_(params, directions, scales, value=-1)
            else:
                torch._foreach_addcmul_(params, directions, [step_size] * len(params), value=-1)


def _check_momentum(momentum, population_axis: bool):
    """A float in ``[0, 1)``, or (``population_axis`` only) a 1-D float64 tensor of them."""
    if isinstance(momentum, list | tuple | torch.Tensor):
        if not population_axis:
            raise ValueError("momentum must be a float unless population_axis=True (one value per member)")
        values = torch.as_tensor(momentum, dtype=torch.float64)
        if values.dim() != 1 or values.numel() == 0:
            raise ValueError(
                f"momentum must be a float or a 1-D sequence of floats, got shape {tuple(values.shape)}"
            )
        if not bool(torch.isfinite(values).all()) or bool((values < 0).any()) or bool((values >= 1).any()):
            raise ValueError(f"momentum values must be in [0, 1), got {values.tolist()}")
        return values
    momentum = check_float("momentum", momentum, nonnegative=True)
    if momentum >= 1.0:
        raise ValueError(f"momentum must be < 1, got {momentum}")
    return momentum


BMM_ELEMENTS = 128
"""Per-member gradient entries per parameter from which :func:`_member_squared_norms` takes one
batched dot product per parameter instead of one concatenation, square and sum: the paper run's
wide width-figure GD batches (``80 x 5`` and ``160 x 5`` layers) step 1.07-1.14x faster with the
activations' split backward pass (``benchmarks/bench_gd_kernels.py``); many small layers (the
mixed-depth batches, ``5 x 5``) keep the concatenation, fewer dispatches."""


def _member_squared_norms(grads: list[torch.Tensor]) -> torch.Tensor:
    """Each member's squared gradient norm summed over ``grads`` (first axis: the member). Wide
    layers: a batched dot product of each flattened gradient with itself (no copy, no squared
    temporary); many small layers: one concatenation, square and sum (fewer dispatches)."""
    count = grads[0].shape[0]
    if sum(g[0].numel() for g in grads) < BMM_ELEMENTS * len(grads):
        return torch.cat([g.reshape(count, -1) for g in grads], 1).square().sum(1)
    total = None
    for g in grads:
        flat = g.reshape(count, 1, -1)
        part = torch.bmm(flat, flat.transpose(1, 2)).reshape(count)
        total = part if total is None else total + part
    return total
