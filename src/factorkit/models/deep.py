"""Deep (possibly non-linear) matrix factorizations ``W = W_d s(W_{d-1} s(... s(W_1)))``.

Shapes follow the paper (arXiv:2506.03931, Section 2): ``W_1`` is ``k x m'``, the hidden
``W_j`` are ``k x k`` and ``W_d`` is ``m x k``; depth 1 means ``W = W_1`` of shape ``m x m'``.
The activation ``s`` is applied after every layer but the last. Every weight carries a leading
*population* axis ``P``, so ``P`` weight settings (seeds, prior draws) are one batched product.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from factorkit._choices import ACTIVATIONS
from factorkit._kernels import batched_product, tanh
from factorkit._validation import check_choice, check_float, check_int

Activation = Callable[[torch.Tensor], torch.Tensor]


def get_activation(activation: str | Activation, negative_slope: float = 0.2) -> Activation:
    """The function for an activation name, or ``activation`` itself if it is callable.

    ``leaky_relu`` uses ``negative_slope`` (0.2, as in the paper's experiments).
    """
    if callable(activation):
        return activation
    if activation == "linear":
        return lambda x: x
    if activation == "relu":
        return torch.relu
    if activation == "leaky_relu":
        slope = check_float("negative_slope", negative_slope)
        return lambda x: F.leaky_relu(x, slope)
    if activation == "tanh":
        return tanh  # torch.tanh's values, through NumPy where no gradient is needed (factorkit._kernels)
    raise ValueError(
        f"activation must be one of {', '.join(map(repr, ACTIVATIONS))} or a callable; got {activation!r}"
    )


def activation_backward(activation: str | Activation, negative_slope: float = 0.2):
    """``backward(grad, x, y) -> grad * s'(x)`` for an activation name (``y = s(x)``), by the
    kernels autograd itself runs for it (``tanh_backward``, ``leaky_relu_backward``,
    ``threshold_backward``), so a hand-written backward pass computes autograd's values; ``None``
    for ``'linear'`` (the gradient passes unchanged). Raises ``TypeError`` for a callable:
    its derivative is unknown (train it through autograd)."""
    if activation == "linear":
        return None
    if activation == "tanh":
        return lambda grad, x, y: torch.ops.aten.tanh_backward(grad, y)
    if activation == "relu":
        return lambda grad, x, y: torch.ops.aten.threshold_backward(grad, y, 0)
    if activation == "leaky_relu":
        slope = check_float("negative_slope", negative_slope)
        return lambda grad, x, y: torch.ops.aten.leaky_relu_backward(grad, x, slope, False)
    if isinstance(activation, MemberActivations):
        return activation.backward
    if callable(activation):
        raise TypeError(
            f"no hand-written derivative for the callable activation {activation_name(activation)!r}"
        )
    get_activation(activation, negative_slope)  # an unknown name fails here, by name
    raise AssertionError(activation)  # pragma: no cover - every name is handled above


def has_backward(activation: str | Activation) -> bool:
    """Whether :func:`activation_backward` knows this activation's derivative."""
    return isinstance(activation, MemberActivations | str)


# MemberActivations splits the population into runs of one activation (up to this many runs),
# from this many elements on: below, a split and a concatenation cost more than the masks
# (forward and backward of 2 or 3 activations, float64, one thread: 0.6-0.9x at 1200 elements,
# 1.2x at 2400, 2-3x from 10k)
SLICED_RUNS = 16
SLICED_ELEMENTS = 2048
SLICED_BACKWARD_ELEMENTS = 16384
"""From this many elements :meth:`MemberActivations.backward` splits too (each run's derivative on
its own members, one concatenation) instead of every derivative on the whole population and a
selection each: the wide width-figure GD batches (``benchmarks/bench_member_activations.py``,
``bench_gd_kernels.py``: 1.02-1.39x a step on the figures' own batches); below it (the
mixed-depth batches, ``192 x 5 x 5``) the masks stay as fast or faster."""
SELECT_BY_LERP = True
"""Whether :meth:`MemberActivations.backward` selects each member's derivative by ``torch.lerp``
with weights 0 and 1 rather than ``torch.where`` with a boolean mask (off: the benchmarks'
baseline). Both are exact selections of finite values: ATen's lerp computes ``start + w (end -
start)`` for ``w < 1/2`` and ``end - (1 - w) (end - start)`` otherwise, so a weight of 0 or 1
returns ``start`` or ``end`` itself (a member whose gradient is already infinite gets NaN, not
the infinity: its run has diverged either way). ``where`` with a broadcast mask is the slower
kernel on the CPU (16 against 5 us on a ``216 x 20 x 5`` float32 population here;
``benchmarks/bench_gd_step.py``)."""


class MemberActivations:
    """One activation per population member: ``names[p]`` applies to member ``p`` (the leading
    axis), so nets of several activations train as one batch (the GD runs of a study).

    Each member's values are exactly those of its own activation (a selection, not a blend), and
    so are their gradients. Where members of one activation sit next to each other (a batch
    ordered by activation: at most :data:`SLICED_RUNS` runs of equal names) and the population
    is not tiny (:data:`SLICED_ELEMENTS`), it is split into those runs, each run goes through its
    own function and the results are concatenated; otherwise every function sees the whole
    population and a mask selects (whose backward passes are two more full selections per
    activation): the paper run's width-figure GD steps 1.2-1.7x faster
    (``benchmarks/bench_member_activations.py``).
    """

    __name__ = "per_member"

    def __init__(self, names: Sequence[str], negative_slope: float = 0.2) -> None:
        names = list(names)
        if not names:
            raise ValueError("names must not be empty")
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"names must hold activation names, got {type(name).__name__} {name!r}")
            get_activation(name, negative_slope)  # an unknown name fails here, by name
        self.names = tuple(names)
        self.negative_slope = negative_slope
        self._groups: dict[torch.device, list[tuple[Activation, torch.Tensor]]] = {}
        self._masks: dict[tuple, torch.Tensor] = {}  # boolean masks and their float weights
        # each distinct non-linear name with its derivative, built once (a GD step asks every time)
        self._backwards = [
            (name, backward)
            for name in dict.fromkeys(self.names)
            if (backward := activation_backward(name, negative_slope)) is not None
        ]
        runs = [(name, len(list(group))) for name, group in itertools.groupby(self.names)]
        self._runs = (
            [(None if n == "linear" else get_activation(n, negative_slope), c) for n, c in runs]
            if len(runs) <= SLICED_RUNS
            else None
        )
        self._run_backwards = [(activation_backward(n, negative_slope), c) for n, c in runs]

    def _for(self, device: torch.device) -> list[tuple[Activation, torch.Tensor]]:
        """Each non-linear activation with the mask of its members (two or more names: one name
        is a single run, applied whole in ``__call__``)."""
        if device not in self._groups:
            groups = []
            for name in dict.fromkeys(self.names):
                if name == "linear":
                    continue
                groups.append((get_activation(name, self.negative_slope), self._mask(name, device)))
            self._groups[device] = groups
        return self._groups[device]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(self.names):
            raise ValueError(f"x must hold {len(self.names)} members (one per activation), got {x.shape[0]}")
        if self._runs is not None and len(self._runs) == 1:
            function = self._runs[0][0]
            return x if function is None else function(x)
        if self._runs is not None and x.numel() >= SLICED_ELEMENTS:
            # split's backward is one concatenation of the parts' gradients, cat's one split
            parts = x.split([count for _, count in self._runs])
            functions = [function for function, _ in self._runs]
            return torch.cat(
                [part if f is None else f(part) for f, part in zip(functions, parts, strict=True)]
            )
        out = x
        for function, mask in self._for(x.device):
            out = torch.where(mask, function(x), out)
        return out

    def backward(self, grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``grad`` times each member's own activation's derivative at ``x`` (``y = self(x)``;
        :func:`activation_backward`). Split by runs like the forward pass from
        :data:`SLICED_BACKWARD_ELEMENTS`; below, masks select: splitting the gradient, the input
        and the output costs more there (the paper's 192-member mixed-depth GD batch: a step by
        hand 0.86x autograd's with splits in a throwaway timing, 1.27x with masks in
        ``benchmarks/bench_gd_by_hand.py``)."""
        if self._runs is not None and len(self._runs) == 1:  # one name: no selection
            return self._backwards[0][1](grad, x, y) if self._backwards else grad
        if self._runs is not None and grad.numel() >= SLICED_BACKWARD_ELEMENTS:
            sizes = [count for _, count in self._run_backwards]
            parts = zip(self._run_backwards, grad.split(sizes), x.split(sizes), y.split(sizes), strict=True)
            return torch.cat([g if f is None else f(g, a, b) for (f, _), g, a, b in parts])
        out = grad
        for name, backward in self._backwards:
            if SELECT_BY_LERP:
                out = torch.lerp(out, backward(grad, x, y), self._weight(name, grad))
            else:
                out = torch.where(self._mask(name, x.device), backward(grad, x, y), out)
        return out

    def _weight(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """:meth:`_mask` as ``like``'s floats: 1 for the members of ``name``, 0 for the others."""
        key = (name, like.device, like.dtype)
        if key not in self._masks:
            self._masks[key] = self._mask(name, like.device).to(like.dtype)
        return self._masks[key]

    def _mask(self, name: str, device: torch.device) -> torch.Tensor:
        """The ``(P, 1, 1)`` mask of the members of activation ``name``."""
        key = (name, device)
        if key not in self._masks:
            self._masks[key] = torch.tensor([n == name for n in self.names], device=device).reshape(-1, 1, 1)
        return self._masks[key]

    def __getstate__(self) -> dict:
        return {"names": self.names, "negative_slope": self.negative_slope}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["names"], state["negative_slope"])


def activation_name(activation: str | Activation) -> str:
    """A printable name for records: the string itself, or a callable's ``__name__``."""
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", type(activation).__name__)


INITS = ("gaussian", "torch_linear")


class GaussianInit:
    """Small random initialisation for any model with ``layer_shapes()``."""

    def layer_shapes(self) -> list[tuple[int, int]]:  # pragma: no cover - provided by the model
        raise NotImplementedError

    def init_weights(
        self,
        population: int,
        scale: float,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        init: str = "gaussian",
    ) -> list[torch.Tensor]:
        """Initial weights for ``population`` members, layer by layer from ``generator``.

        ``init='gaussian'``: i.i.d. ``N(0, scale^2)`` entries. ``init='torch_linear'``: ``scale``
        times PyTorch's default ``nn.Linear`` weight, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with
        ``fan_in`` the layer's columns (standard deviation ``scale / sqrt(3 fan_in)``), the start
        of the gradient-descent runs of arXiv:2506.03931's code (``near_zero_init``). For one
        member, drawn in float32 from a generator seeded ``s``, it equals ``nn.Linear(cols, rows,
        bias=False).weight * scale`` built layer by layer after ``torch.manual_seed(s)``.
        """
        check_int("population", population)
        check_float("scale", scale, positive=True)
        check_choice("init", init, INITS)
        weights = []
        for rows, cols in self.layer_shapes():
            if init == "gaussian":
                weight = scale * torch.randn(population, rows, cols, generator=generator, dtype=dtype)
            else:
                bound = 1.0 / math.sqrt(cols)
                weight = torch.empty(population, rows, cols, dtype=dtype)
                weight.uniform_(-bound, bound, generator=generator).mul_(scale)
            weights.append(weight.to(device))
        return weights


@dataclass(frozen=True)
class DeepFactorization(GaussianInit):
    """The factorization model: sizes, width ``k``, depth ``d`` and activation.

    Parameters
    ----------
    m, m2 : int
        Shape ``m x m'`` of the end-to-end matrix.
    width : int
        Hidden width ``k`` (ignored for ``depth == 1``).
    depth : int
        Number of layers ``d >= 1``.
    activation : str or callable
        ``'linear'``, ``'relu'``, ``'leaky_relu'``, ``'tanh'`` or any elementwise callable.
    negative_slope : float
        Slope of ``leaky_relu`` for negative inputs.
    """

    m: int
    m2: int
    width: int
    depth: int
    activation: str | Activation = "linear"
    negative_slope: float = 0.2

    def __post_init__(self) -> None:
        check_int("m", self.m)
        check_int("m2", self.m2)
        check_int("width", self.width)
        check_int("depth", self.depth)
        # resolve once so an unknown name fails at construction, not at first use
        object.__setattr__(self, "_act", get_activation(self.activation, self.negative_slope))

    @property
    def act(self) -> Activation:
        return self._act  # type: ignore[attr-defined]

    @property
    def is_linear(self) -> bool:
        return self.activation == "linear" or self.depth == 1

    def layer_shapes(self) -> list[tuple[int, int]]:
        """Shapes ``(out, in)`` of ``W_1, ..., W_d``."""
        if self.depth == 1:
            return [(self.m, self.m2)]
        k = self.width
        return [(k, self.m2)] + [(k, k)] * (self.depth - 2) + [(self.m, k)]

    def check_fits(self, shape: tuple[int, int]) -> None:
        """Raise unless the end-to-end matrix has the problem's ``shape`` ``(m, m')``."""
        if (shape[0], shape[1]) != (self.m, self.m2):
            raise ValueError(f"model shape ({self.m}, {self.m2}) does not match problem shape {tuple(shape)}")

    def n_parameters(self) -> int:
        return sum(rows * cols for rows, cols in self.layer_shapes())

    def check_weights(self, weights: Sequence[torch.Tensor]) -> int:
        """Validate a list of population weights; return the population size ``P``."""
        shapes = self.layer_shapes()
        if len(weights) != len(shapes):
            raise ValueError(f"weights must hold {len(shapes)} layers, got {len(weights)}")
        population = weights[0].shape[0] if weights[0].dim() == 3 else -1
        for index, (weight, shape) in enumerate(zip(weights, shapes, strict=True)):
            if weight.dim() != 3 or tuple(weight.shape[1:]) != shape or weight.shape[0] != population:
                raise ValueError(
                    f"weights[{index}] must have shape (P, {shape[0]}, {shape[1]}) with a common P, "
                    f"got {tuple(weight.shape)}"
                )
        return population

    def pad(self, weights: Sequence[torch.Tensor], width: int) -> list[torch.Tensor]:
        """This model's population weights embedded in a net of hidden width ``width >= self.width``:
        the extra rows of ``W_1`` and hidden layers and the extra columns of ``W_d`` are zero.

        For an activation with ``s(0) = 0`` (all of :data:`ACTIVATIONS`) the padded net computes the
        same ``W``, and gradient steps keep the padding zero (an extra hidden unit has a zero
        outgoing column and a zero input: zero gradient on both sides), so nets of several widths
        can train as one population of the widest.
        """
        self.check_weights(weights)
        if self.depth == 1 or width == self.width:
            return list(weights)
        if width < self.width:
            raise ValueError(f"width must be >= the model's width {self.width}, got {width}")
        extra = width - self.width
        padded = []
        for index, weight in enumerate(weights):
            rows = extra if index < self.depth - 1 else 0
            cols = extra if index > 0 else 0
            padded.append(torch.nn.functional.pad(weight, (0, cols, 0, rows)))
        return padded

    def deepen(self, weights: Sequence[torch.Tensor], depth: int) -> list[torch.Tensor]:
        """This model's population weights embedded in a net of ``depth >= self.depth`` layers:
        ``k x k`` identity layers between the last hidden layer and the output layer (the layout
        :class:`MixedDepths` trains, which applies no activation after them)."""
        self.check_weights(weights)
        depth = check_int("depth", depth)
        if depth < self.depth:
            raise ValueError(f"depth must be >= the model's depth {self.depth}, got {depth}")
        if depth > self.depth and self.depth < 2:
            raise ValueError("only nets of depth >= 2 have a hidden width to deepen in")
        identity = torch.eye(self.width, dtype=weights[0].dtype, device=weights[0].device)
        extra = [identity.expand(weights[0].shape[0], -1, -1).clone() for _ in range(depth - self.depth)]
        return [*weights[:-1], *extra, weights[-1]]

    def boundary_activations(self) -> Sequence[Activation]:
        """The activation after each layer but the last (``depth - 1`` of them)."""
        return (self.act,) * (self.depth - 1)

    def boundary_backwards(self) -> list:
        """:func:`activation_backward` of each boundary's activation (``None``: linear); built once
        (a GD step asks for it every time)."""
        if "_backwards" not in self.__dict__:
            object.__setattr__(self, "_backwards", self._make_backwards())
        return self._backwards  # type: ignore[attr-defined]

    def _make_backwards(self) -> list:
        return [activation_backward(self.activation, self.negative_slope)] * (self.depth - 1)

    def has_backward(self) -> bool:
        """Whether :meth:`backward` applies: every activation is a name (not a callable)."""
        return has_backward(self.activation)

    def end_to_end(self, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """The end-to-end matrices ``(P, m, m')`` of a population of weights."""
        self.check_weights(weights)
        product = weights[0]
        for weight, act in zip(weights[1:], self.boundary_activations(), strict=True):
            # bmm, not @: the same product without matmul's broadcasting views (GD is dispatch-bound)
            product = batched_product(weight, act(product))
        return product

    def forward(self, weights: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list]:
        """:meth:`end_to_end` and what :meth:`backward` needs: each activation's input and output."""
        self.check_weights(weights)
        product, saved = weights[0], []
        for weight, act in zip(weights[1:], self.boundary_activations(), strict=True):
            output = act(product)
            saved.append((product, output))
            product = batched_product(weight, output)
        return product, saved

    @torch.no_grad()
    def backward(
        self, weights: Sequence[torch.Tensor], saved: list, grad: torch.Tensor
    ) -> list[torch.Tensor]:
        """The gradients of every layer from ``grad``, that of a scalar function of the end-to-end
        matrices (:meth:`forward`'s ``saved``): backpropagation written out, with the kernels
        autograd runs (the products by :func:`batched_product`, the activations'
        :func:`activation_backward`), without autograd's per-operation bookkeeping, which
        dominates a GD step of the small nets of the paper. No gradient of ``weights`` is kept."""
        grads: list[torch.Tensor] = [grad] * len(weights)
        backwards = self.boundary_backwards()
        for index in range(len(weights) - 1, 0, -1):
            x, y = saved[index - 1]
            grads[index] = batched_product(grad, y.mT)
            grad = batched_product(weights[index].mT, grad)
            if backwards[index - 1] is not None:
                grad = backwards[index - 1](grad, x, y)
        grads[0] = grad
        return grads


@dataclass(frozen=True)
class MixedDepths(DeepFactorization):
    """Nets of several depths trained as one population of the deepest (``depth = max(depths)``).

    Member ``p`` of depth ``d_p`` holds its own layers at ``W_1 .. W_{d_p - 1}`` and ``W_depth``,
    and identity layers in between (:meth:`DeepFactorization.deepen`); its activation applies after
    its own hidden layers only, so it computes its own net's ``W`` (a product with an identity
    matrix adds exact zeros). :meth:`gradient_masks` zeroes the identity layers' gradients: they
    stay the identity under every optimizer whose step is zero for a zero gradient, and a
    per-member gradient norm (group RMSprop) sums the member's own squares and exact zeros (equal
    to a run alone up to the order of that sum, the last bit). Small nets are
    bound by per-operation overhead, so one deep batch costs less than one batch per depth.

    ``activation`` is one name (every member) or a :class:`MemberActivations` (one per member).
    """

    depths: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        depths = tuple(check_int("depths[i]", d, minimum=2) for d in self.depths)
        if not depths:
            raise ValueError("depths must name one depth (>= 2) per member")
        if self.depth != max(depths):
            raise ValueError(f"depth must be the deepest member's, {max(depths)}; got {self.depth}")
        names = self.activation.names if isinstance(self.activation, MemberActivations) else None
        if names is not None and len(names) != len(depths):
            raise ValueError(f"activation names {len(names)} members, depths {len(depths)}")
        if names is None and not isinstance(self.activation, str):
            raise TypeError("activation must be a name or a MemberActivations for MixedDepths")
        names = names or (self.activation,) * len(depths)
        # after layer j (1-based) member p applies its activation iff j < d_p
        boundaries = []
        for j in range(1, self.depth):
            own = [name if j < d else "linear" for name, d in zip(names, depths, strict=True)]
            boundaries.append(self.act if own == list(names) else MemberActivations(own, self.negative_slope))
        object.__setattr__(self, "depths", depths)
        object.__setattr__(self, "_boundaries", boundaries)

    def boundary_activations(self) -> Sequence[Activation]:
        return self._boundaries  # type: ignore[attr-defined]

    def _make_backwards(self) -> list:
        return [
            b.backward
            if isinstance(b, MemberActivations)
            else activation_backward(self.activation, self.negative_slope)
            for b in self._boundaries  # type: ignore[attr-defined]
        ]

    def check_weights(self, weights: Sequence[torch.Tensor]) -> int:
        population = super().check_weights(weights)
        if population != len(self.depths):
            raise ValueError(f"weights hold {population} members, depths {len(self.depths)}")
        return population

    def gradient_masks(self, device, dtype) -> list[torch.Tensor | None]:
        """Per layer, ``None`` (every member trains it) or a ``(P, 1, 1)`` 0/1 factor that zeroes the
        gradient of the members for which it is an identity layer (0-based ``d_p - 1 <= i < depth - 1``)."""
        depths = torch.tensor(self.depths)
        masks = []
        for index in range(self.depth):
            padding = (depths - 1 <= index) & (index < self.depth - 1)
            factor = (~padding).to(device=device, dtype=dtype).reshape(-1, 1, 1)
            masks.append(factor if padding.any() else None)
        return masks
