import pytest
import torch

from factorkit.models import DeepFactorization, get_activation


def loop_end_to_end(weights, act):
    out = []
    for p in range(weights[0].shape[0]):
        product = weights[0][p]
        for weight in weights[1:]:
            product = weight[p] @ act(product)
        out.append(product)
    return torch.stack(out)


@pytest.mark.parametrize("activation", ["linear", "relu", "leaky_relu", "tanh"])
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_batched_end_to_end_equals_per_member_loop(activation, depth):
    model = DeepFactorization(4, 3, width=6, depth=depth, activation=activation)
    weights = model.init_weights(5, 1.0, torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = loop_end_to_end(weights, get_activation(activation))
    torch.testing.assert_close(model.end_to_end(weights), expected)
    assert model.end_to_end(weights).shape == (5, 4, 3)


def test_shapes_follow_paper_convention():
    model = DeepFactorization(4, 3, width=6, depth=3)
    assert model.layer_shapes() == [(6, 3), (6, 6), (4, 6)]
    assert DeepFactorization(4, 3, width=6, depth=1).layer_shapes() == [(4, 3)]
    assert model.n_parameters() == 18 + 36 + 24


def test_leaky_relu_slope_and_callable_activation():
    act = get_activation("leaky_relu")
    torch.testing.assert_close(act(torch.tensor([-1.0, 2.0])), torch.tensor([-0.2, 2.0]))
    model = DeepFactorization(2, 2, width=3, depth=2, activation=torch.sin)
    weights = model.init_weights(2, 1.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.end_to_end(weights), weights[1] @ torch.sin(weights[0]))


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="activation must be one of"):
        DeepFactorization(2, 2, 3, 2, activation="swish")
    with pytest.raises(ValueError, match="depth must be >= 1"):
        DeepFactorization(2, 2, 3, 0)
    with pytest.raises(TypeError, match="width must be an integer"):
        DeepFactorization(2, 2, 3.0, 2)
    model = DeepFactorization(2, 2, 3, 2)
    with pytest.raises(ValueError, match="weights must hold 2 layers"):
        model.end_to_end([torch.zeros(1, 3, 2)])
    with pytest.raises(ValueError, match="weights\\[1\\] must have shape"):
        model.end_to_end([torch.zeros(1, 3, 2), torch.zeros(2, 2, 3)])


# below and above SLICED_ELEMENTS in all, and above SLICED_BACKWARD_ELEMENTS with the 5 runs
@pytest.mark.parametrize("block", [(3, 4), (40, 20), (80, 50)])
@pytest.mark.parametrize(
    "names",
    [
        ["tanh", "linear", "leaky_relu", "relu", "tanh"],  # 5 runs: masks (small) or split (large)
        ["tanh", "linear", "leaky_relu"] * 6,  # 18 runs, more than SLICED_RUNS: masks select
        ["leaky_relu"] * 3,  # one run: the function itself
    ],
)
def test_member_activations_select_each_members_own_function_and_gradient(names, block):
    from factorkit.models import MemberActivations
    from factorkit.models.deep import SLICED_BACKWARD_ELEMENTS, SLICED_ELEMENTS, SLICED_RUNS

    mixed = MemberActivations(names)
    assert (mixed._runs is None) == (len(names) > SLICED_RUNS)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(len(names), *block, generator=generator, dtype=torch.float64, requires_grad=True)
    assert (x.numel() >= SLICED_ELEMENTS) == (block != (3, 4))
    assert (x.numel() >= SLICED_BACKWARD_ELEMENTS) == (block == (80, 50) and len(names) > 3)
    out = mixed(x)
    out.pow(2).sum().backward()
    for p, name in enumerate(names):
        alone = x[p].detach().clone().requires_grad_()
        value = get_activation(name)(alone)
        value.pow(2).sum().backward()
        torch.testing.assert_close(out[p], value, rtol=0, atol=0)  # the same operation, selected
        torch.testing.assert_close(x.grad[p], alone.grad, rtol=0, atol=0)
    # the written-out derivative (masks, whatever the forward's layout): the same elementwise
    # kernels, though vectorized and scalar loops may round the last bit differently
    eps = torch.finfo(torch.float64).eps
    torch.testing.assert_close(mixed.backward(2 * out.detach(), x.detach(), out.detach()), x.grad,
                               rtol=4 * eps, atol=0)  # fmt: skip
    # and the selection itself is exact: member p's entries are its own derivative's, computed
    # by the same kernel on the same values (lerp with weights 0 and 1 or where's masks alike)
    from factorkit.models import deep
    from factorkit.models.deep import activation_backward

    g, xd, yd = 2 * out.detach(), x.detach(), out.detach()
    for lerp in (True, False):
        saved, deep.SELECT_BY_LERP = deep.SELECT_BY_LERP, lerp
        try:
            selected = mixed.backward(g, xd, yd)
        finally:
            deep.SELECT_BY_LERP = saved
        for name in set(names):
            own = g if name == "linear" else activation_backward(name)(g, xd, yd)
            members = [p for p, n in enumerate(names) if n == name]
            assert torch.equal(selected[members], own[members])
    with pytest.raises(ValueError, match="activation must be one of"):
        MemberActivations(["tanh", "sigmoid"])
    with pytest.raises(ValueError, match=f"must hold {len(names)} members"):
        mixed(torch.zeros(len(names) + 1, *block))
    import pickle

    assert pickle.loads(pickle.dumps(mixed)).names == tuple(names)


def test_mixed_depths_batch_equals_each_net_alone_and_keeps_its_identity_layers():
    """Nets of depths 2-5 and three activations as one population of depth 5 (identity layers,
    no activation after them): the end-to-end matrices are each net's own to rounding (a
    product with an identity adds exact zeros; the batch is another bmm call), and 300
    group-RMSprop steps equal each net trained alone (the per-member gradient norm sums the same
    squares plus exact zeros: equal to the last bits)."""
    from factorkit.fit.gd import train_gd
    from factorkit.models import MemberActivations, MixedDepths
    from factorkit.problems.sensing import ProblemBatch, make_sensing_problem

    depths = (2, 3, 5, 2, 4, 5)
    names = ("tanh", "leaky_relu", "linear", "leaky_relu", "tanh", "relu")
    problems = [make_sensing_problem(5, 5, 1, 15, "gaussian", s, dtype="float64") for s in range(6)]
    starts, alone = [], []
    for p, (depth, name) in enumerate(zip(depths, names, strict=True)):
        own = DeepFactorization(5, 5, 4, depth, name)
        weights = own.init_weights(1, 0.1, torch.Generator().manual_seed(p), dtype=torch.float64)
        starts.append(own.deepen(weights, 5))
        alone.append(train_gd(problems[p], own, initial=weights, lr=1e-2, optimizer="group_rmsprop",
                              max_steps=300, progress=False))  # fmt: skip
    model = MixedDepths(5, 5, 4, 5, MemberActivations(names), depths=depths)
    initial = [torch.cat([start[layer] for start in starts]) for layer in range(5)]
    own_W = torch.cat([DeepFactorization(5, 5, 4, d, n).end_to_end(
        [w[p : p + 1] for w in initial[: d - 1]] + [initial[-1][p : p + 1]])
        for p, (d, n) in enumerate(zip(depths, names, strict=True))])  # fmt: skip
    # the identity layers add exact zeros, but the batch of 6 and each net alone are different
    # bmm calls (another CPU may pick another kernel per batch size): equal to rounding, not bits
    torch.testing.assert_close(model.end_to_end(initial), own_W, rtol=1e-12, atol=1e-15)
    batch = train_gd(ProblemBatch.of(problems), model, seeds=list(range(6)), initial=initial, lr=1e-2,
                     optimizer="group_rmsprop", max_steps=300, progress=False)  # fmt: skip
    eye = torch.eye(4, dtype=torch.float64)
    for p, depth in enumerate(depths):
        torch.testing.assert_close(batch.W[p], alone[p].W[0], rtol=1e-12, atol=1e-15)
        assert float(batch.gen_loss[p]) == pytest.approx(float(alone[p].gen_loss[0]), rel=1e-12)
        for layer in range(depth - 1, 4):  # its identity layers never moved
            assert torch.equal(batch.weights[layer][p], eye)
    assert sum(mask is not None for mask in model.gradient_masks("cpu", torch.float64)) == 3


def test_mixed_depths_refuse_inconsistent_settings():
    from factorkit.models import MemberActivations, MixedDepths

    with pytest.raises(ValueError, match="depths must name one depth"):
        MixedDepths(5, 5, 4, 3, "tanh")
    with pytest.raises(ValueError, match="depth must be the deepest member's"):
        MixedDepths(5, 5, 4, 4, "tanh", depths=(2, 3))
    with pytest.raises(ValueError, match="depths\\[i\\] must be"):
        MixedDepths(5, 5, 4, 3, "tanh", depths=(1, 3))
    with pytest.raises(ValueError, match="activation names 3 members, depths 2"):
        MixedDepths(5, 5, 4, 3, MemberActivations(["tanh"] * 3), depths=(2, 3))
    model = MixedDepths(5, 5, 4, 3, "tanh", depths=(2, 3))
    with pytest.raises(ValueError, match="weights hold 3 members, depths 2"):
        model.end_to_end([torch.zeros(3, 4, 5), torch.zeros(3, 4, 4), torch.zeros(3, 5, 4)])
    own = DeepFactorization(5, 5, 4, 3, "tanh")
    weights = own.init_weights(2, 0.1, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="depth must be >= the model's depth 3"):
        own.deepen(weights, 2)
    with pytest.raises(ValueError, match="depth >= 2"):
        DeepFactorization(5, 5, 4, 1).deepen([torch.zeros(2, 5, 5)], 3)


def _autograd_gradients(model, weights, weight_of_W):
    leaves = [w.clone().requires_grad_() for w in weights]
    (model.end_to_end(leaves) * weight_of_W).sum().backward()
    return [leaf.grad for leaf in leaves]


# float64 products by NumPy's stacked matmul (many small ones) or torch's bmm round alike to a few
# units of the last place per product; through up to 4 layers of O(1) weights that stays below 1e-13
HAND_TOLERANCE = {"rtol": 1e-11, "atol": 1e-13}


@pytest.mark.parametrize("population", [3, 70])  # 70: the products go through NumPy's matmul
@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("activation", ["linear", "tanh", "relu", "leaky_relu"])
def test_hand_backward_equals_autograd(activation, depth, population):
    """The model's written-out backward pass against autograd through ``end_to_end``, for the
    gradient of ``sum(C * W)`` (any ``C``: the gradient in ``W`` of any scalar loss)."""
    model = DeepFactorization(4, 3, width=5, depth=depth, activation=activation)
    generator = torch.Generator().manual_seed(depth)
    weights = model.init_weights(population, 0.7, generator, dtype=torch.float64)
    C = torch.randn(population, 4, 3, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        W, saved = model.forward(weights)
    assert torch.equal(W, model.end_to_end(weights))  # the same operations
    assert model.has_backward()
    for ours, theirs in zip(
        model.backward(weights, saved, C), _autograd_gradients(model, weights, C), strict=True
    ):
        torch.testing.assert_close(ours, theirs, **HAND_TOLERANCE)


@pytest.mark.parametrize("population_factor", [1, 12])  # 6 or 72 members: masks, NumPy products
def test_hand_backward_of_mixed_depths_and_activations_equals_autograd(population_factor):
    from factorkit.models import MemberActivations, MixedDepths

    depths = (2, 3, 5, 2, 4, 5) * population_factor
    names = ("tanh", "leaky_relu", "linear", "leaky_relu", "tanh", "relu") * population_factor
    model = MixedDepths(5, 5, 4, 5, MemberActivations(names), depths=depths)
    generator = torch.Generator().manual_seed(3)
    weights = model.init_weights(len(depths), 0.7, generator, dtype=torch.float64)
    C = torch.randn(len(depths), 5, 5, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        _, saved = model.forward(weights)
    for ours, theirs in zip(
        model.backward(weights, saved, C), _autograd_gradients(model, weights, C), strict=True
    ):
        torch.testing.assert_close(ours, theirs, **HAND_TOLERANCE)


def test_hand_backward_needs_named_activations():
    from factorkit.models.deep import activation_backward

    model = DeepFactorization(4, 3, width=5, depth=2, activation=torch.sin)
    assert not model.has_backward()
    with pytest.raises(TypeError, match="no hand-written derivative"):
        activation_backward(torch.sin)
    with pytest.raises(ValueError, match="activation must be one of"):
        activation_backward("sigmoid")
