import pytest
import torch

from factorkit.models import DeepFactorization
from factorkit.optim import Adafactor, state_size
from factorkit.problems import make_sensing_problem


def train(optimizer_class, steps=100, **options):
    problem = make_sensing_problem(5, 4, rank=1, n=12, seed=0, dtype="float64")
    model = DeepFactorization(5, 4, width=6, depth=3, activation="tanh")
    weights = [
        w[0].clone().requires_grad_()
        for w in model.init_weights(1, 0.3, torch.Generator().manual_seed(1), dtype=torch.float64)
    ]
    bias = torch.zeros(4, dtype=torch.float64, requires_grad=True)  # a 1-D parameter too
    optimizer = optimizer_class([*weights, bias], **options)
    trajectory = []
    for _ in range(steps):
        optimizer.zero_grad()
        W = model.end_to_end([w.unsqueeze(0) for w in weights])[0] + bias
        problem.train_loss(W).backward()
        optimizer.step()
        trajectory.append([p.detach().clone() for p in [*weights, bias]])
    return trajectory, optimizer


@pytest.mark.parametrize("options", [{"lr": 1e-2}, {"lr": 0.3, "d": 2.0, "weight_decay": 0.01, "eps2": 1e-2}])
def test_matches_torch_adafactor_step_for_step(options):
    mine, _ = train(Adafactor, **options)
    torch_options = {k: v for k, v in options.items() if k != "eps2"}
    torch_options["eps"] = (None, options.get("eps2", 1e-3))  # torch spells (eps1, eps2) as one tuple
    reference, _ = train(torch.optim.Adafactor, **torch_options)
    for step, (a, b) in enumerate(zip(mine, reference, strict=True)):
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, msg=f"step {step}")


def test_theory_variant_differs_and_trains():
    theory, _ = train(Adafactor, lr=1e-2, relative_step=False, eps_mode="theory", steps=100)
    reference, _ = train(torch.optim.Adafactor, lr=1e-2, steps=100)
    assert not torch.allclose(theory[-1][0], reference[-1][0])
    schedule, _ = train(Adafactor, lr=lambda t: 0.05 / t**0.5, relative_step=False, steps=50)
    assert all(torch.isfinite(p).all() for p in schedule[-1])


def test_state_is_factored():
    weight = torch.zeros(100, 50, requires_grad=True)
    vector = torch.zeros(7, requires_grad=True)
    for optimizer in (Adafactor([weight, vector]), torch.optim.Adam([weight, vector])):
        (weight.sum() + vector.sum()).backward()
        optimizer.step()
    adafactor, adam = Adafactor([weight, vector]), torch.optim.Adam([weight, vector])
    for optimizer in (adafactor, adam):
        optimizer.zero_grad()
        (weight.square().sum() + vector.sum()).backward()
        optimizer.step()
    assert state_size(adafactor) == 100 + 50 + 7
    assert state_size(adam) == 2 * (100 * 50 + 7)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"lr": 0.0}, "lr must be > 0"),
        ({"beta2_decay": 0.5}, "beta2_decay must be <= 0"),
        ({"eps_mode": "paper"}, "eps_mode must be one of"),
        ({"lr": lambda t: 0.1}, "callable lr schedule needs relative_step=False"),
    ],
)
def test_bad_arguments(options, match):
    with pytest.raises(ValueError, match=match):
        Adafactor([torch.zeros(2, requires_grad=True)], **options)
