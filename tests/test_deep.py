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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_product_matches_bmm_and_keeps_gradients(dtype):
    """The NumPy path for many small products equals ``torch.bmm`` to rounding (a sum of 5
    products: 5 ulps of the largest term bounds any reordering); a product that needs a gradient
    stays on torch and the gradient flows."""
    from factorkit.models.deep import SMALL_PRODUCT_BATCH, batched_product

    g = torch.Generator().manual_seed(0)
    a = torch.randn(SMALL_PRODUCT_BATCH * 4, 5, 5, generator=g, dtype=dtype)
    b = torch.randn(SMALL_PRODUCT_BATCH * 4, 5, 3, generator=g, dtype=dtype)
    fast, reference = batched_product(a, b), torch.bmm(a, b)
    bound = 5 * torch.finfo(dtype).eps * (a.abs() @ b.abs())
    assert fast.dtype == dtype and fast.shape == reference.shape
    assert bool(((fast - reference).abs() <= bound).all())
    a.requires_grad_()
    out = batched_product(a, b)
    assert out.grad_fn is not None
    out.sum().backward()
    torch.testing.assert_close(a.grad, b.sum(2).unsqueeze(1).expand_as(a), rtol=0, atol=0)


def test_member_activations_select_each_members_own_function_and_gradient():
    from factorkit.models import MemberActivations

    names = ["tanh", "linear", "leaky_relu", "relu", "tanh"]
    mixed = MemberActivations(names)
    x = torch.randn(
        5, 3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True
    )
    out = mixed(x)
    out.pow(2).sum().backward()
    for p, name in enumerate(names):
        alone = x[p].detach().clone().requires_grad_()
        value = get_activation(name)(alone)
        value.pow(2).sum().backward()
        torch.testing.assert_close(out[p], value, rtol=0, atol=0)  # the same operation, selected
        torch.testing.assert_close(x.grad[p], alone.grad, rtol=0, atol=0)
    with pytest.raises(ValueError, match="activation must be one of"):
        MemberActivations(["tanh", "sigmoid"])
    with pytest.raises(ValueError, match="must hold 5 members"):
        mixed(torch.zeros(4, 3, 4))
    import pickle

    assert pickle.loads(pickle.dumps(mixed)).names == tuple(names)
