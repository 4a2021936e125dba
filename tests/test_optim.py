import pytest
import torch

from factorkit.optim import GroupRMSprop


def test_first_step_is_normalized_gradient():
    # v_1 = (1 - a) ||g||^2, bias-corrected to ||g||^2: the step is lr * g / (||g|| + eps)
    a = torch.tensor([3.0, 4.0], requires_grad=True)
    b = torch.tensor([[0.0, 12.0]], requires_grad=True)
    opt = GroupRMSprop([a, b], lr=0.5, eps=0.0)
    (a * torch.tensor([3.0, 4.0])).sum().backward()  # grad a = (3, 4)
    (b * torch.tensor([[0.0, 12.0]])).sum().backward()  # grad b = (0, 12); ||g|| = 13
    opt.step()
    torch.testing.assert_close(a.detach(), torch.tensor([3.0, 4.0]) - 0.5 * torch.tensor([3.0, 4.0]) / 13)
    torch.testing.assert_close(
        b.detach(), torch.tensor([[0.0, 12.0]]) - 0.5 * torch.tensor([[0.0, 12.0]]) / 13
    )


def test_population_axis_gives_each_member_its_own_norm():
    w = torch.tensor([[1.0, 0.0], [0.0, 100.0]], requires_grad=True)
    opt = GroupRMSprop([w], lr=1.0, eps=0.0, population_axis=True)
    w.square().sum().backward()  # grads (2, 0) and (0, 200)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([[0.0, 0.0], [0.0, 99.0]]))


def test_second_step_uses_running_average():
    w = torch.tensor([1.0], requires_grad=True)
    opt = GroupRMSprop([w], lr=0.1, alpha=0.5, eps=0.0)
    for (grad,) in [(2.0,), (4.0,)]:
        opt.zero_grad()
        (w * grad).sum().backward()
        opt.step()
    # v1 = 0.5*4 = 2, v2 = 0.5*2 + 0.5*16 = 9, bias 1 - 0.25 = 0.75 -> rms = sqrt(12)
    expected = 1.0 - 0.1 * 2.0 / 2.0 - 0.1 * 4.0 / 12**0.5
    assert float(w.detach()) == pytest.approx(expected)


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="alpha must be < 1"):
        GroupRMSprop([torch.zeros(1, requires_grad=True)], alpha=1.0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        GroupRMSprop([torch.zeros(1, requires_grad=True)], lr=-1.0)


def test_momentum_is_heavy_ball_on_the_normalized_step():
    """b_t = mu b_{t-1} + g_t, w -= lr / (rms_t + eps) * b_t, against an explicit loop."""
    target = torch.tensor([1.0, -2.0, 0.5])
    w = torch.zeros(3, requires_grad=True)
    opt = GroupRMSprop([w], lr=0.1, alpha=0.9, eps=1e-8, momentum=0.7)
    ref, buffer, average = torch.zeros(3), torch.zeros(3), 0.0
    for step in range(1, 6):
        opt.zero_grad()
        (w - target).square().sum().backward()
        opt.step()
        grad = 2 * (ref - target)
        average = 0.9 * average + 0.1 * float(grad.square().sum())
        buffer = 0.7 * buffer + grad
        ref = ref - 0.1 / ((average / (1 - 0.9**step)) ** 0.5 + 1e-8) * buffer
        torch.testing.assert_close(w.detach(), ref)
    with pytest.raises(ValueError, match="momentum must be < 1"):
        GroupRMSprop([torch.zeros(1, requires_grad=True)], momentum=1.0)


def test_group_rmsprop_momentum_per_member_equals_separate_runs():
    """Members with and without momentum in one population train as they do apart (momentum 0
    is exactly no momentum: ``0 * b + g = g``; the same elementwise operations on both sides)."""
    torch.manual_seed(0)
    start = torch.randn(3, 4, 2, dtype=torch.float64)
    target = torch.randn(3, 4, 2, dtype=torch.float64)
    momenta = [0.0, 0.9, 0.5]

    def train(weights, goal, momentum):
        w = weights.clone().requires_grad_()
        opt = GroupRMSprop([w], lr=0.05, population_axis=True, momentum=momentum)
        for _ in range(20):
            opt.zero_grad()
            (w - goal).pow(2).sum().backward()
            opt.step()
        return w.detach()

    together = train(start, target, momenta)
    for p, momentum in enumerate(momenta):
        alone = train(start[p : p + 1], target[p : p + 1], momentum)
        torch.testing.assert_close(together[p : p + 1], alone, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        GroupRMSprop([torch.zeros(2, 1, requires_grad=True)], population_axis=True, momentum=[0.1, 1.0])
    with pytest.raises(ValueError, match="population_axis=True"):
        GroupRMSprop([torch.zeros(2, 1, requires_grad=True)], momentum=[0.1, 0.2])


@pytest.mark.parametrize("shape", [(2, 3), (20, 10)])  # one concatenation / a dot product per parameter
def test_group_rmsprop_members_of_wide_and_narrow_layers_train_as_they_do_apart(shape):
    """Each member's squared gradient norm sums its own entries over every parameter, by
    whichever route the layers' size picks (``BMM_ELEMENTS``): a population of three trains as
    three runs alone. The two sides sum the same squares in different orders: at most ``N`` float64
    eps relative in a norm of ``N = 2 r c`` squares, half of it in the step, over five steps."""
    from factorkit.optim.group_rmsprop import BMM_ELEMENTS

    rows, cols = shape
    assert (rows * cols >= BMM_ELEMENTS) == (shape == (20, 10))
    generator = torch.Generator().manual_seed(0)
    starts = [torch.randn(3, rows, cols, generator=generator, dtype=torch.float64),
              torch.randn(3, cols, rows, generator=generator, dtype=torch.float64)]  # fmt: skip
    goal = torch.randn(3, rows, rows, generator=generator, dtype=torch.float64)

    def train(weights, target, population):
        params = [w.clone().requires_grad_() for w in weights]
        opt = GroupRMSprop(params, lr=0.05, population_axis=population)
        for _ in range(5):
            opt.zero_grad()
            (params[0] @ params[1] - target).pow(2).sum().backward()
            opt.step()
        return [p.detach() for p in params]

    together = train(starts, goal, True)
    tolerance = 5 * 2 * rows * cols * torch.finfo(torch.float64).eps
    for member in range(3):
        alone = train([w[member] for w in starts], goal[member], False)
        for batched, single in zip(together, alone, strict=True):
            torch.testing.assert_close(batched[member], single, rtol=tolerance, atol=tolerance)
