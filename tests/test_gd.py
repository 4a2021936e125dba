import warnings

import pytest
import torch

from factorkit.fit.gd import train_gd
from factorkit.fit.nuclear import min_nuclear_norm
from factorkit.models import DeepFactorization
from factorkit.problems import ProblemBatch, make_sensing_problem


@pytest.mark.parametrize(
    ("optimizer", "lr", "options"),
    [
        ("gd", 0.3, None),
        ("group_rmsprop", 1e-2, None),
        ("adam", 1e-2, None),
        ("sgd", 0.1, {"momentum": 0.9}),
        ("adafactor", 1e-2, None),
    ],
)
def test_batched_population_equals_per_seed_loop(optimizer, lr, options):
    problem = make_sensing_problem(4, 3, rank=1, n=8, seed=1, dtype="float64")
    model = DeepFactorization(4, 3, width=5, depth=3, activation="tanh")
    kwargs = dict(
        init_scale=0.1,
        lr=lr,
        max_steps=150,
        eps_train=1e-3,
        optimizer=optimizer,
        optimizer_options=options,
        log_every=10,
        progress=False,
    )
    batched = train_gd(problem, model, seeds=[3, 4, 5, 6], **kwargs)
    for index, seed in enumerate([3, 4, 5, 6]):
        single = train_gd(problem, model, seeds=[seed], **kwargs)
        assert int(single.steps[0]) == int(batched.steps[index])
        torch.testing.assert_close(single.W[0], batched.W[index])
        logged = single.history_train.shape[0]  # the batch runs on until its last member stops
        torch.testing.assert_close(single.history_train[:, 0], batched.history_train[:logged, index])


def test_batched_problems_equal_separate_problems():
    problems = [make_sensing_problem(seed=s, dtype="float64") for s in range(3)]
    model = DeepFactorization(5, 5, width=5, depth=2)
    kwargs = dict(init_scale=1e-2, lr=0.3, max_steps=200, progress=False)
    batched = train_gd(ProblemBatch.of(problems), model, seeds=[10, 11, 12], **kwargs)
    for index, problem in enumerate(problems):
        single = train_gd(problem, model, seeds=[10 + index], **kwargs)
        torch.testing.assert_close(single.gen_loss[0], batched.gen_loss[index])


def test_stopping_freezes_member_at_first_step_below_eps():
    problem = make_sensing_problem(seed=0, dtype="float64")
    model = DeepFactorization(5, 5, width=5, depth=2)
    result = train_gd(
        problem,
        model,
        seeds=0,
        population=3,
        init_scale=1e-3,
        lr=0.5,
        max_steps=5000,
        eps_train=1e-6,
        log_every=1,
        progress=False,
    )
    assert bool(result.converged.all())
    assert bool((result.train_loss < 1e-6).all())
    for member in range(3):
        step = int(result.steps[member])
        curve = result.history_train[:, member]
        assert float(curve[step - 1]) >= 1e-6 > float(curve[step])  # first crossing
        assert bool((curve[step:] == curve[step]).all())  # frozen afterwards


def test_per_member_step_counts_equal_runs_of_each_count():
    """``max_steps`` per member: each member ends where its own run of that many steps ends (held
    afterwards, ``converged`` False: a step count is not a threshold)."""
    problem = make_sensing_problem(seed=0, dtype="float64")
    model = DeepFactorization(5, 5, width=5, depth=3, activation="tanh")
    kwargs = dict(init_scale=1e-2, lr=0.2, optimizer="group_rmsprop", progress=False)
    together = train_gd(problem, model, seeds=[1, 2, 3], max_steps=[30, 0, 80], **kwargs)
    assert together.steps.tolist() == [30, 0, 80] and not bool(together.converged.any())
    for index, steps in enumerate([30, 0, 80]):
        alone = train_gd(problem, model, seeds=[1 + index], max_steps=steps, **kwargs)
        torch.testing.assert_close(together.W[index], alone.W[0], rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="max_steps holds 2 counts for a population of 3"):
        train_gd(problem, model, seeds=[1, 2, 3], max_steps=[3, 4], **kwargs)


def test_depth2_small_init_matches_min_nuclear_norm_on_completion():
    # A problem where the minimum-nuclear-norm completion is not W* itself (L_gen > 0), so the
    # comparison is informative. On other sparse completions GD reaches *lower* L_gen than the
    # nuclear-norm solution (Razin & Cohen, NeurIPS 2020); see docs/guide/study.md.
    problem = make_sensing_problem(4, 4, rank=1, n=7, measurements="completion", seed=4, dtype="float64")
    reference = min_nuclear_norm(problem)
    assert reference.gen_loss > 0.05
    result = train_gd(
        problem,
        DeepFactorization(4, 4, width=4, depth=2),
        seeds=0,
        population=3,
        init_scale=1e-4,
        lr=0.2,
        max_steps=20_000,
        eps_train=1e-12,
        progress=False,
    )
    assert bool(result.converged.all())
    relative_gap = (result.gen_loss - reference.gen_loss).abs() / reference.gen_loss
    assert float(relative_gap.max()) < 0.10


def test_paper_completion_setting_gd_generalizes():
    problem = make_sensing_problem(5, 5, rank=1, n=15, measurements="completion", seed=3, dtype="float64")
    result = train_gd(
        problem,
        DeepFactorization(5, 5, width=5, depth=2),
        seeds=0,
        population=2,
        init_scale=1e-3,
        lr=0.5,
        max_steps=5000,
        eps_train=1e-9,
        progress=False,
    )
    assert float(result.gen_loss.max()) < 1e-4  # random guessing is ~0.2 here


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"optimizer": "lbfgs"}, ValueError, "optimizer must be one of"),
        ({"lr": 0.0}, ValueError, "lr must be > 0"),
        ({"init_scale": float("nan")}, ValueError, "init_scale must be finite"),
        ({"eps_train": -1.0}, ValueError, "eps_train must be > 0"),
        ({"max_steps": 1.5}, TypeError, "max_steps must be an integer"),
        ({"optimizer": "adam", "optimizer_options": {"bogus": 1}}, ValueError, "optimizer_options"),
        ({"seeds": [0, 1], "population": 3}, ValueError, "population=3 but 2 seeds"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    problem = make_sensing_problem()
    with pytest.raises(error, match=match):
        train_gd(problem, DeepFactorization(5, 5, 5, 2), max_steps=kwargs.pop("max_steps", 1), **kwargs)


def test_model_problem_shape_mismatch():
    with pytest.raises(ValueError, match="does not match problem shape"):
        train_gd(make_sensing_problem(), DeepFactorization(4, 5, 5, 2))


def test_l1_loss_step_is_the_sign_subgradient_with_geometric_decay():
    # depth 1: W = W_1, so one GD step on (1/n) sum |r_i| is W -= lr_t (1/n) sum sign(r_i) A_i
    problem = make_sensing_problem(4, 3, rank=1, n=8, seed=0, dtype="float64")
    model = DeepFactorization(4, 3, width=1, depth=1)
    result = train_gd(
        problem,
        model,
        seeds=[7],
        init_scale=0.5,
        lr=0.1,
        lr_decay=0.5,
        max_steps=2,
        loss="l1",
        progress=False,
    )
    W = model.init_weights(1, 0.5, torch.Generator().manual_seed(7), dtype=torch.float64)[0][0]
    for lr in (0.1, 0.05):
        signs = torch.sign(problem.train_residuals(W))
        W = W - lr * (signs[:, None, None] * problem.A).sum(0) / problem.n
    torch.testing.assert_close(result.W[0], W)


def test_bad_loss_and_decay():
    problem = make_sensing_problem()
    with pytest.raises(ValueError, match="loss must be one of"):
        train_gd(problem, DeepFactorization(5, 5, 5, 2), loss="huber", max_steps=1)
    with pytest.raises(ValueError, match="lr_decay must be <= 1.0"):
        train_gd(problem, DeepFactorization(5, 5, 5, 2), lr_decay=1.5, max_steps=1)


def test_initial_weights_and_monitor():
    problem = make_sensing_problem(4, 3, rank=1, n=8, seed=2, dtype="float64")
    model = DeepFactorization(4, 3, width=5, depth=2)
    kwargs = dict(lr=0.2, max_steps=30, log_every=10, progress=False)
    seeded = train_gd(problem, model, seeds=[5, 6], init_scale=0.1, **kwargs)
    start = [
        torch.cat(layer)
        for layer in zip(
            *(
                model.init_weights(1, 0.1, torch.Generator().manual_seed(s), dtype=torch.float64)
                for s in (5, 6)
            ),
            strict=True,
        )
    ]
    given = train_gd(problem, model, initial=start, monitor=lambda w: w[1].flatten(1).norm(dim=1), **kwargs)
    torch.testing.assert_close(given.W, seeded.W)
    assert given.history_monitor.shape == (4, 2)  # steps 0, 10, 20, 30 x 2 members
    torch.testing.assert_close(given.history_monitor[-1], given.weights[1].flatten(1).norm(dim=1))
    assert seeded.history_monitor is None
    with pytest.raises(ValueError, match="weights\\[0\\] must have shape"):
        train_gd(problem, model, initial=[start[0][:, :2], start[1]], **kwargs)
    with pytest.raises(ValueError, match="initial weights hold 2 members, expected 3"):
        train_gd(problem, model, initial=start, seeds=[1, 2, 3], **kwargs)


def test_symmetric_model_on_a_dense_target_reaches_the_eckart_young_optimum():
    from factorkit.models import SymmetricFactorization
    from factorkit.problems import DenseTarget

    rng = torch.Generator().manual_seed(0)
    B = torch.randn(8, 8, generator=rng, dtype=torch.float64)
    M = B + B.T
    values, vectors = torch.linalg.eigh(M)
    best = (vectors[:, -2:] * values[-2:]) @ vectors[:, -2:].T  # top-2 positive part
    result = train_gd(
        DenseTarget(M),
        SymmetricFactorization(8, 2),
        seeds=0,
        init_scale=1e-3,
        lr=0.05 / float(values[-1]),
        max_steps=4000,
        progress=False,
    )
    torch.testing.assert_close(result.W[0], best, atol=1e-6, rtol=0)
    assert float(result.rel_error[0]) == pytest.approx(float((best - M).norm() / M.norm()), rel=1e-6)


def test_dense_target_and_symmetric_model_bad_input():
    from factorkit.models import SymmetricFactorization
    from factorkit.problems import DenseTarget

    with pytest.raises(TypeError, match="M must be a torch.Tensor"):
        DenseTarget([[1.0]])
    with pytest.raises(ValueError, match="2-D floating-point"):
        DenseTarget(torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="M"):
        DenseTarget(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="does not match problem shape"):
        train_gd(DenseTarget(torch.eye(3, dtype=torch.float64)), SymmetricFactorization(4, 2), max_steps=1)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        SymmetricFactorization(4, 0)


def test_torch_linear_start_and_trajectory_equal_the_papers_code():
    """``init='torch_linear'`` is ``near_zero_init`` of the paper's code: its nn.Linear layers built
    after ``torch.manual_seed(seed)``, times the scale; with GroupRMSprop the float32 trajectory then
    follows the code's (re-written here from its definition) to rounding."""
    seed, scale, lr, steps = 5, 1e-1, 1e-2, 300
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=2)  # float32, as the paper's code
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 8, bias=False), torch.nn.Tanh(), torch.nn.Linear(8, 5, bias=False)
    )
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    start = [net[0].weight.detach().clone(), net[2].weight.detach().clone()]
    model = DeepFactorization(5, 5, 8, 2, "tanh")
    drawn = model.init_weights(1, scale, torch.Generator().manual_seed(seed), init="torch_linear")
    for ours, theirs in zip(drawn, start, strict=True):
        torch.testing.assert_close(ours[0], theirs, rtol=0, atol=0)

    # the code's loop: Y = net(I).t(), mean squared measurement error, normalized full-gradient step
    square_avg = 0.0
    for step in range(1, steps + 1):
        net.zero_grad()
        Y = net(torch.eye(5)).t()
        loss = ((problem.A * Y).flatten(1).sum(1) - problem.y).square().mean()
        loss.backward()
        square_avg = 0.99 * square_avg + 0.01 * sum(float(p.grad.square().sum()) for p in net.parameters())
        with torch.no_grad():
            step_size = lr / ((square_avg / (1 - 0.99**step)) ** 0.5 + 1e-6)
            for p in net.parameters():
                p.sub_(step_size * p.grad)
    result = train_gd(
        problem,
        model,
        seeds=[seed],
        init="torch_linear",
        init_scale=scale,
        lr=lr,
        max_steps=steps,
        optimizer="group_rmsprop",
        progress=False,
    )
    torch.testing.assert_close(result.W[0], net(torch.eye(5)).t().detach(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("loss", ["l2", "l1"])
def test_training_by_hand_follows_autograd(loss):
    """``train_gd``'s written-out gradients (the model's backward pass, the problem's closed-form
    gradient; or autograd through the loss alone where the problem has none, here a dense target)
    against autograd through the whole net (the same activation as a callable, which has no
    written-out derivative): the same float64 trajectories, to rounding."""
    from factorkit.models import MemberActivations
    from factorkit.problems.target import DenseTarget

    problems = [make_sensing_problem(4, 3, 1, 8, seed=s, dtype="float64") for s in range(4)]
    dense = DenseTarget(problems[0].W_star)
    names = ["tanh", "tanh", "leaky_relu", "linear"]
    kwargs = dict(
        init_scale=0.3, lr=1e-2, max_steps=200, optimizer="group_rmsprop", loss=loss, progress=False
    )
    for problem in (ProblemBatch.of(problems), dense):
        by_hand = train_gd(
            problem, DeepFactorization(4, 3, 5, 3, MemberActivations(names)), seeds=[0, 1, 2, 3], **kwargs
        )
        through = DeepFactorization(4, 3, 5, 3, lambda x: MemberActivations(names)(x))
        assert not through.has_backward()
        autograd = train_gd(problem, through, seeds=[0, 1, 2, 3], **kwargs)
        # 200 steps of rounding differences (sums in other orders) grow by the steps' sensitivity
        torch.testing.assert_close(by_hand.W, autograd.W, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(by_hand.history_train, autograd.history_train, rtol=1e-9, atol=1e-14)


def test_bare_optimizer_step_is_the_same_update_and_keeps_hooks():
    """``train_gd`` calls GroupRMSprop's update without ``torch.optim``'s wrapper only where nothing
    needs the wrapper: the same weights to the last bit as through ``step()`` (the same function),
    and a registered global step hook still runs every step (the wrapper is kept then)."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from factorkit.fit import gd

    problems = ProblemBatch.of([make_sensing_problem(4, 3, 1, 8, seed=s) for s in range(3)])
    model = DeepFactorization(4, 3, 5, 2, "tanh")
    kwargs = dict(
        seeds=[0, 1, 2], init_scale=0.3, lr=1e-2, max_steps=50, optimizer="group_rmsprop", progress=False
    )
    bare = train_gd(problems, model, **kwargs)
    saved, gd.BARE_STEP = gd.BARE_STEP, False
    try:
        wrapped = train_gd(problems, model, **kwargs)
    finally:
        gd.BARE_STEP = saved
    assert all(torch.equal(a, b) for a, b in zip(bare.weights, wrapped.weights, strict=True))
    calls = []
    handle = register_optimizer_step_pre_hook(lambda *_: calls.append(1))
    try:
        hooked = train_gd(problems, model, **kwargs)
    finally:
        handle.remove()
    assert len(calls) == 50 and all(
        torch.equal(a, b) for a, b in zip(bare.weights, hooked.weights, strict=True)
    )
    # a learning-rate schedule checks that step() ran: the wrapper is kept, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_gd(problems, model, **{**kwargs, "lr_decay": 0.99})
