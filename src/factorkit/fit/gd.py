"""Gradient descent from small initialisation, many seeds as one batched run.

Each population member ``p`` starts from small random weights (i.i.d. ``N(0, init_scale^2)``,
or PyTorch's ``nn.Linear`` default times ``init_scale``) drawn from its own generator seeded with
``seeds[p]`` and follows its own trajectory: the optimizers allowed
are those whose update of member ``p`` depends on member ``p`` alone (elementwise torch
optimizers, and :class:`~factorkit.optim.GroupRMSprop` with a per-member norm), so a batched run
equals ``P`` separate runs. A member stops (its weights freeze) at the first step where
``L_train < eps_train``; the others go on until they do or ``max_steps`` is reached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.optim import optimizer as torch_optimizer

from factorkit._choices import LOSSES
from factorkit._progress import progress as progress_reporter
from factorkit._validation import check_choice, check_float, check_int, make_generator
from factorkit.models.deep import INITS, DeepFactorization
from factorkit.optim.adafactor import Adafactor
from factorkit.optim.group_rmsprop import GroupRMSprop
from factorkit.problems.sensing import ProblemBatch, SensingProblem

# elementwise torch optimizers: member p's update reads member p's gradient only
TORCH_OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "adamax": torch.optim.Adamax,
    "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam,
}
# 'adafactor': torch's definition (relative step, eps clamp); 'adafactor_theory': Hong & Lin's
# analysed variant (absolute step lr, eps inside the accumulators), both with update clipping
ADAFACTOR_VARIANTS = {
    "adafactor": {},
    "adafactor_theory": {"relative_step": False, "eps_mode": "theory"},
}
OPTIMIZERS = ("gd", "group_rmsprop", *ADAFACTOR_VARIANTS, *TORCH_OPTIMIZERS)  # as factorkit._choices


@dataclass
class GDResult:
    """Outcome of :func:`train_gd` for ``P`` members (all tensors have leading dimension ``P``)."""

    weights: list[torch.Tensor]
    W: torch.Tensor
    train_loss: torch.Tensor
    gen_loss: torch.Tensor
    rel_error: torch.Tensor
    steps: torch.Tensor
    converged: torch.Tensor
    history_steps: list[int] = field(default_factory=list)
    history_train: torch.Tensor | None = None
    history_gen: torch.Tensor | None = None
    history_monitor: torch.Tensor | None = None


def _make_optimizer(name: str, params: list[torch.Tensor], lr: float, options: dict):
    try:
        if name == "gd":
            return torch.optim.SGD(params, lr=lr, **options)
        if name == "group_rmsprop":
            return GroupRMSprop(params, lr=lr, population_axis=True, **options)
        if name in ADAFACTOR_VARIANTS:
            return Adafactor(params, lr=lr, population_axis=True, **{**ADAFACTOR_VARIANTS[name], **options})
        return TORCH_OPTIMIZERS[name](params, lr=lr, **options)
    except TypeError as err:
        raise ValueError(f"optimizer_options {options!r} not accepted by {name!r}: {err}") from err


def _seed_list(seeds: int | Sequence[int], population: int | None) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        count = 1 if population is None else check_int("population", population)
        return [seeds + offset for offset in range(count)]
    if isinstance(seeds, bool) or not isinstance(seeds, Sequence | torch.Tensor):
        raise TypeError(f"seeds must be an int or a sequence of ints, got {type(seeds).__name__} {seeds!r}")
    seeds = [check_int("seeds[i]", s, minimum=0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    if population is not None and population != len(seeds):
        raise ValueError(f"population={population} but {len(seeds)} seeds were given")
    return seeds


def initial_weights(
    model, seeds: Sequence[int], init_scale: float, init: str = "gaussian"
) -> list[torch.Tensor]:
    """The start :func:`train_gd` draws: member ``p`` from its own generator seeded ``seeds[p]``.

    In float64, except ``init='torch_linear'``, drawn in float32 as ``nn.Linear`` draws it so it
    equals the paper's code's start.
    """
    draw_dtype = torch.float32 if init == "torch_linear" else torch.float64
    per_member = [
        model.init_weights(1, init_scale, make_generator(seed), dtype=draw_dtype, init=init) for seed in seeds
    ]
    return [torch.cat([member[layer] for member in per_member]) for layer in range(len(per_member[0]))]


def train_gd(
    problem: SensingProblem | ProblemBatch,
    model: DeepFactorization,
    *,
    seeds: int | Sequence[int] = 0,
    population: int | None = None,
    init_scale: float = 1e-3,
    init: str = "gaussian",
    lr: float = 1e-2,
    max_steps: int | Sequence[int] = 10_000,
    eps_train: float | None = None,
    optimizer: str = "gd",
    optimizer_options: dict | None = None,
    log_every: int = 100,
    progress: bool | None = None,
    loss: str = "l2",
    lr_decay: float = 1.0,
    initial: Sequence[torch.Tensor] | None = None,
    monitor: Callable[[list[torch.Tensor]], torch.Tensor] | None = None,
) -> GDResult:
    """Train ``P`` members of ``model`` on ``problem`` by (batched) gradient descent.

    Parameters
    ----------
    problem : SensingProblem or ProblemBatch
        One problem shared by all members, or one problem per member (or any object with their
        ``losses``/``train_residuals``/``rel_error``/``shape``/``device``/``dtype``, such as
        :class:`~factorkit.problems.DenseTarget`).
    model : DeepFactorization
        Sizes must match the problem's ``(m, m')`` (or any model with its ``check_fits``,
        ``init_weights``, ``end_to_end``, such as :class:`~factorkit.models.SymmetricFactorization`).
    seeds : int or sequence of int
        Member ``p`` is initialised from ``seeds[p]``; an int ``s`` means ``s, s+1, ...``.
    population : int, optional
        Number of members when ``seeds`` is an int (default: ``len(problem)`` for a batch, else 1).
    init_scale : float
        Scale of the initial weights: the standard deviation of the Gaussian start, the factor on
        PyTorch's default ``nn.Linear`` weights for ``init='torch_linear'``.
    init : {'gaussian', 'torch_linear'}
        ``'gaussian'``: i.i.d. ``N(0, init_scale^2)``. ``'torch_linear'``: ``init_scale`` times
        ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, drawn in float32 as ``nn.Linear`` does after
        ``torch.manual_seed(seeds[p])`` (the start of the paper's code; see
        :meth:`~factorkit.models.DeepFactorization.init_weights`).
    lr : float
        Step size.
    max_steps : int or sequence of int
        Most gradient steps per member, or one count per member (runs of different schedules in
        one batch: a member past its own count is held where it stopped, as one that reached
        ``eps_train``, while the rest train on).
    eps_train : float, optional
        A member stops once ``L_train < eps_train``; ``None`` runs all ``max_steps``.
    optimizer : str
        ``'gd'`` (plain), ``'group_rmsprop'`` (the paper's normalized steps), ``'adafactor'``
        (torch's definition: relative step, eps clamp), ``'adafactor_theory'`` (Hong & Lin's
        variant: absolute step ``lr``, eps inside the accumulators; see
        :mod:`factorkit.optim.adafactor`) or an elementwise torch optimizer: ``'sgd'``,
        ``'adam'``, ``'adamw'``, ``'rmsprop'``, ``'adagrad'``, ``'adamax'``, ``'nadam'``, ``'radam'``.
    optimizer_options : dict, optional
        Extra keyword arguments for the optimizer (e.g. ``{'momentum': 0.9}``).
    log_every : int
        Record both losses every ``log_every`` steps (and at the end).
    progress : bool, optional
        Show a progress bar; ``None`` shows one only on a terminal.
    loss : {'l2', 'l1'}
        Objective: ``L_train`` (mean squared residual) or the robust ``(1/n) sum |<A_i, W> - y_i|``
        (its sub-gradient; with ``lr_decay < 1`` this is the sub-gradient method of Ma & Fattahi,
        arXiv:2202.08788, on any deep factorization). Stopping and reporting use ``L_train``.
    lr_decay : float
        Geometric step schedule ``lr_t = lr * lr_decay^t``, in ``(0, 1]``.
    initial : sequence of torch.Tensor, optional
        Starting weights (population leading dimension) instead of the seeded random draw;
        ``seeds`` then only sets the population size.
    monitor : callable, optional
        ``monitor(weights) -> tensor`` (leading dimension ``P``), recorded with the losses every
        ``log_every`` steps into ``history_monitor`` (e.g. singular values of the weights).

    Returns
    -------
    GDResult
        Final weights, end-to-end matrices, losses, step counts and loss curves.

    Notes
    -----
    Gradients are written out where the model and the problem give them (a
    :class:`~factorkit.models.DeepFactorization` of named activations: its ``backward``; a
    sensing problem: ``losses_and_gradient``, the loss's gradient in ``W`` in closed form), else
    by autograd; both give the same values to rounding, the first without autograd's bookkeeping
    (``benchmarks/bench_gd_by_hand.py``: 1.17x on the paper's GD).
    """
    model.check_fits(problem.shape)
    if initial is not None and population is None and isinstance(seeds, int) and len(initial):
        population = int(initial[0].shape[0])
    if isinstance(problem, ProblemBatch) and population is None and isinstance(seeds, int):
        population = len(problem)
    seed_list = _seed_list(seeds, population)
    if isinstance(problem, ProblemBatch) and len(problem) != len(seed_list):
        raise ValueError(f"a ProblemBatch of {len(problem)} needs as many seeds, got {len(seed_list)}")
    init_scale = check_float("init_scale", init_scale, positive=True)
    lr = check_float("lr", lr, positive=True)
    caps = _step_caps(max_steps, len(seed_list))
    max_steps = int(caps.max())
    log_every = check_int("log_every", log_every)
    if eps_train is not None:
        eps_train = check_float("eps_train", eps_train, positive=True)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("init", init, INITS)
    check_choice("loss", loss, LOSSES)
    lr_decay = check_float("lr_decay", lr_decay, positive=True, upper=1.0)

    params = _starting_params(model, problem, seed_list, init_scale, init, initial)
    opt = _make_optimizer(optimizer, params, lr, dict(optimizer_options or {}))
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=lr_decay) if lr_decay < 1 else None
    stops = _Stops(params, caps.to(params[0].device), eps_train)
    # layers some members hold fixed (MixedDepths' identity layers): their gradients zeroed
    masks = getattr(model, "gradient_masks", lambda *_: [])(params[0].device, params[0].dtype)
    masked = [(p, mask) for p, mask in zip(params, masks, strict=False) if mask is not None]
    history = _History(monitor)
    bar = progress_reporter(max_steps, "gd", "steps", enabled=progress)
    # backpropagation written out where the model has its own backward pass (and, where the problem
    # gives it, the loss's gradient in W in closed form): no autograd graph of the layers
    by_hand = bool(getattr(model, "has_backward", lambda: False)())
    step_optimizer = _bare_step(opt, schedule)
    for step in range(max_steps + 1):
        if by_hand:
            train, gen, grads = _hand_gradients(model, problem, params, loss)
        else:
            W = model.end_to_end(params)
            train, gen = problem.losses(W)
        if step % log_every == 0 or step == max_steps:
            history.record(step, train, gen, params)
        if stops.all_done(step, train, params):
            break
        if by_hand:
            for p, g in zip(params, grads, strict=True):
                p.grad = g
        else:
            opt.zero_grad(set_to_none=True)
            _objective(problem, W, train, loss).backward()
        for p, mask in masked:
            p.grad.mul_(mask)
        step_optimizer()
        if schedule is not None:
            schedule.step()
        stops.hold(params)
        bar.update(1)
    bar.close()
    steps, done = stops.steps, stops.done
    weights = [p.detach() for p in params]
    with torch.no_grad():
        W = model.end_to_end(weights)
        train, gen = problem.losses(W)
    return GDResult(
        weights=weights,
        W=W,
        train_loss=train,
        gen_loss=gen,
        rel_error=problem.rel_error(W),
        steps=steps,
        converged=stops.reached if eps_train is not None else torch.zeros_like(done),
        history_steps=history.steps,
        history_train=torch.stack(history.train),
        history_gen=torch.stack(history.gen),
        history_monitor=torch.stack(history.monitor) if history.monitor else None,
    )


BARE_STEP = True
"""Whether :func:`train_gd` calls factorkit's own optimizers' update without ``torch.optim``'s
per-call wrapper where nothing needs it (:func:`_bare_step`; off: the benchmarks' baseline)."""


def _bare_step(opt, schedule) -> Callable[[], object]:
    """``opt.step``, or the update it wraps: ``torch.optim`` runs every ``step()`` inside a wrapper
    that opens a profiler range and calls the registered step hooks (about 40 us a call here, 5-6%
    of the paper's GD steps: ``benchmarks/bench_gd_step.py``). Taken only for an optimizer with its
    own ``_apply_update`` (:class:`~factorkit.optim.GroupRMSprop`), no learning-rate schedule (which
    checks that ``step()`` ran) and no step hook registered, on it or globally: the same update,
    nothing observable lost."""
    apply = getattr(opt, "_apply_update", None)
    hooks = [
        getattr(torch_optimizer, "_global_optimizer_pre_hooks", None),
        getattr(torch_optimizer, "_global_optimizer_post_hooks", None),
        getattr(opt, "_optimizer_step_pre_hooks", None),
        getattr(opt, "_optimizer_step_post_hooks", None),
    ]
    if BARE_STEP and apply is not None and schedule is None and all(h is not None and not h for h in hooks):
        return apply
    return opt.step


def _objective(problem, W: torch.Tensor, train: torch.Tensor, loss: str) -> torch.Tensor:
    """The members' summed training objective: ``L_train``, or (``'l1'``) the mean absolute residual."""
    return problem.train_residuals(W).abs().mean(-1).sum() if loss == "l1" else train.sum()


def _hand_gradients(
    model, problem, params, loss: str
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """``L_train``, ``L_gen`` and every layer's gradient of the objective by the model's own backward
    pass (:meth:`~factorkit.models.DeepFactorization.backward`), from the gradient in ``W`` the
    problem gives in closed form (``losses_and_gradient``) or autograd gives through the loss alone."""
    with torch.no_grad():
        W, saved = model.forward(params)
    closed = getattr(problem, "losses_and_gradient", None)
    if closed is not None:
        with torch.no_grad():
            train, gen, grad = closed(W, loss)
    else:
        W = W.detach().requires_grad_()
        train, gen = problem.losses(W)
        (grad,) = torch.autograd.grad(_objective(problem, W, train, loss), W)
        train, gen = train.detach(), gen.detach()
    return train, gen, model.backward(params, saved, grad)


def _starting_params(model, problem, seed_list, init_scale: float, init: str, initial) -> list[torch.Tensor]:
    """The trainable weights: ``initial`` when given (checked), else the seeded draw."""
    device, dtype = problem.device, problem.dtype
    if initial is None:
        return [
            w.to(device, dtype).requires_grad_() for w in initial_weights(model, seed_list, init_scale, init)
        ]
    if len(initial) and initial[0].shape[0] != len(seed_list):
        raise ValueError(f"initial weights hold {initial[0].shape[0]} members, expected {len(seed_list)}")
    model.check_weights(list(initial))
    return [torch.as_tensor(w).detach().to(device, dtype).clone().requires_grad_() for w in initial]


class _History:
    """The losses (and the monitor's values) every ``log_every`` steps."""

    def __init__(self, monitor):
        self.monitor_fn = monitor
        self.steps: list[int] = []
        self.train: list[torch.Tensor] = []
        self.gen: list[torch.Tensor] = []
        self.monitor: list[torch.Tensor] = []

    def record(self, step: int, train, gen, params) -> None:
        self.steps.append(step)
        self.train.append(train.detach().clone())
        self.gen.append(gen.detach().clone())
        if self.monitor_fn is not None:
            with torch.no_grad():
                self.monitor.append(self.monitor_fn([p.detach() for p in params]).clone())


class _Stops:
    """Members stop once ``L_train < eps_train`` or at their own step count (``caps``): the step is
    recorded and their weights are held where they were while the rest of the batch trains on."""

    def __init__(self, params, caps: torch.Tensor, eps_train: float | None):
        population, device = params[0].shape[0], params[0].device
        self.eps_train = eps_train
        self.caps = caps
        self.uniform = bool((caps == caps[0]).all())
        self.done = torch.zeros(population, dtype=torch.bool, device=device)
        self.reached = torch.zeros(population, dtype=torch.bool, device=device)
        self.steps = caps.clone()
        self.frozen = [p.detach().clone() for p in params]

    def all_done(self, step: int, train, params) -> bool:
        """Mark the members stopping now; True once every member has stopped."""
        if self.eps_train is None and self.uniform:
            return step >= int(self.caps[0])
        newly = (self.caps <= step) & ~self.done
        if self.eps_train is not None:
            below = (train.detach() < self.eps_train) & ~self.done
            self.reached |= below
            newly |= below
        if newly.any():
            self.steps[newly] = step
            self.done |= newly
            for keep, p in zip(self.frozen, params, strict=True):
                keep[newly] = p.detach()[newly]
        return bool(self.done.all())

    def hold(self, params) -> None:
        """Put the stopped members back where they stopped (after an optimizer step)."""
        if (self.eps_train is not None or not self.uniform) and bool(self.done.any()):
            with torch.no_grad():
                for keep, p in zip(self.frozen, params, strict=True):
                    p[self.done] = keep[self.done]


def _step_caps(max_steps, population: int) -> torch.Tensor:
    """``max_steps`` as one count per member (checked)."""
    if isinstance(max_steps, Sequence | torch.Tensor) and not isinstance(max_steps, str):
        caps = [check_int("max_steps[i]", value, minimum=0) for value in max_steps]
        if len(caps) != population:
            raise ValueError(f"max_steps holds {len(caps)} counts for a population of {population}")
        return torch.tensor(caps, dtype=torch.long)
    return torch.full((population,), check_int("max_steps", max_steps, minimum=0), dtype=torch.long)
