import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from factorkit.problems import (
    ProblemBatch,
    SensingProblem,
    entry_measurements,
    make_sensing_problem,
    orthonormal_complement,
)


def brute_force_losses(problem, W):
    """Loops over measurements and an independently computed orthonormal basis (scipy)."""
    A = problem.A.double().numpy()
    W, W_star = W.double().numpy(), problem.W_star.double().numpy()
    train = np.mean([(np.sum(a * W) - np.sum(a * W_star)) ** 2 for a in A])
    basis = scipy.linalg.null_space(A.reshape(len(A), -1))  # columns span span{A_i}^perp
    gen = np.mean([np.sum(b.reshape(W.shape) * (W - W_star)) ** 2 for b in basis.T])
    return train, gen


@pytest.mark.parametrize("measurements", ["gaussian", "completion"])
@pytest.mark.parametrize("shape", [(5, 5), (3, 6), (6, 2)])
def test_losses_match_brute_force_over_explicit_basis(measurements, shape):
    m, m2 = shape
    problem = make_sensing_problem(
        m, m2, rank=1, n=m * m2 // 2, measurements=measurements, seed=3, dtype="float64"
    )
    W = torch.randn(m, m2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    train, gen = problem.losses(W)
    expected_train, expected_gen = brute_force_losses(problem, W)
    assert float(train) == pytest.approx(expected_train, rel=1e-10)
    assert float(gen) == pytest.approx(expected_gen, rel=1e-10)
    assert float(problem.train_loss(W)) == pytest.approx(expected_train, rel=1e-10)
    assert float(problem.gen_loss(W)) == pytest.approx(expected_gen, rel=1e-10)


def test_ground_truth_has_zero_losses_and_unit_norm():
    problem = make_sensing_problem(5, 5, rank=2, n=22, seed=7, dtype="float64")
    train, gen = problem.losses(problem.W_star)
    assert float(train) < 1e-28 and float(gen) < 1e-28
    assert float(problem.W_star.norm()) == pytest.approx(1.0)
    assert int(torch.linalg.matrix_rank(problem.W_star)) == 2
    assert float(problem.rel_error(problem.W_star)) == 0.0


def test_completion_gen_loss_is_mse_on_unobserved_entries():
    problem = make_sensing_problem(4, 5, rank=1, n=9, measurements="completion", seed=2, dtype="float64")
    observed = problem.A.sum(0).bool()
    assert int(observed.sum()) == 9  # distinct entries
    W = torch.randn(4, 5, dtype=torch.float64)
    diff = (W - problem.W_star).square()
    assert float(problem.gen_loss(W)) == pytest.approx(float(diff[~observed].mean()), rel=1e-12)
    assert float(problem.train_loss(W)) == pytest.approx(float(diff[observed].mean()), rel=1e-12)


def test_gaussian_measurements_have_unit_norm():
    problem = make_sensing_problem(5, 5, n=15, seed=0, dtype="float64")
    torch.testing.assert_close(problem.A.flatten(1).norm(dim=1), torch.ones(15, dtype=torch.float64))


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 6), m2=st.integers(1, 6), data=st.data())
def test_complement_is_orthonormal_and_orthogonal(m, m2, data):
    n = data.draw(st.integers(1, m * m2))
    A = torch.randn(n, m, m2, dtype=torch.float64)
    basis = orthonormal_complement(A).reshape(-1, m * m2)
    assert basis.shape[0] == m * m2 - n
    torch.testing.assert_close(basis @ basis.T, torch.eye(basis.shape[0], dtype=torch.float64))
    if basis.numel():
        assert float((basis @ A.reshape(n, -1).T).abs().max()) < 1e-10


def test_dependent_measurements_use_numerical_rank():
    A = torch.randn(3, 2, 2, dtype=torch.float64)
    A = torch.cat([A, A[:1] * 2.0])  # 4 measurements, rank 3
    assert orthonormal_complement(A).shape[0] == 1


def test_full_observation_has_nan_gen_loss():
    problem = make_sensing_problem(2, 2, n=4, measurements="completion", seed=0, dtype="float64")
    assert problem.complement.shape[0] == 0
    assert torch.isnan(problem.gen_loss(torch.zeros(2, 2, dtype=torch.float64)))


def test_same_seed_same_problem_across_dtypes_and_batched_losses():
    p32 = make_sensing_problem(seed=11, dtype="float32")
    p64 = make_sensing_problem(seed=11, dtype="float64")
    torch.testing.assert_close(p32.W_star.double(), p64.W_star, atol=1e-7, rtol=1e-6)
    W = torch.randn(7, 3, 5, 5, dtype=torch.float64)
    train, gen = p64.losses(W)
    assert train.shape == gen.shape == (7, 3)
    torch.testing.assert_close(train[2, 1], p64.train_loss(W[2, 1]))


def test_problem_batch_is_memberwise():
    problems = [make_sensing_problem(seed=s, dtype="float64") for s in range(3)]
    batch = ProblemBatch.of(problems)
    W = torch.randn(3, 5, 5, dtype=torch.float64)
    train, gen = batch.losses(W)
    for index, problem in enumerate(problems):
        t, g = problem.losses(W[index])
        torch.testing.assert_close(train[index], t)
        torch.testing.assert_close(gen[index], g)
    torch.testing.assert_close(batch.rel_error(W)[1], problems[1].rel_error(W[1]))
    with pytest.raises(ValueError, match="problems\\[1\\]"):
        ProblemBatch.of([problems[0], make_sensing_problem(n=10, dtype="float64")])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"m": 0}, "m must be >= 1"),
        ({"m2": -3}, "m2 must be >= 1"),
        ({"rank": 6}, "rank must be <= min"),
        ({"n": 26}, "n must be <= m \\* m2"),
        ({"n": 0}, "n must be >= 1"),
        ({"measurements": "poisson"}, "measurements must be one of"),
        ({"norm": -1.0}, "norm must be > 0"),
        ({"dtype": "float16"}, "dtype must be one of"),
    ],
)
def test_bad_sizes_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_sensing_problem(**kwargs)


def test_bad_types_and_nan_data():
    with pytest.raises(TypeError, match="m must be an integer"):
        make_sensing_problem(m=2.5)
    A = torch.randn(3, 2, 2, dtype=torch.float64)
    A[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="A contains NaN"):
        SensingProblem.from_measurements(A, torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="W_star must have shape"):
        SensingProblem.from_measurements(torch.randn(3, 2, 2), torch.zeros(3, 3))
    with pytest.raises(TypeError, match="A must have a floating dtype"):
        SensingProblem.from_measurements(torch.ones(3, 2, 2, dtype=torch.long), torch.zeros(2, 2))
    problem = make_sensing_problem()
    with pytest.raises(ValueError, match="trailing shape"):
        problem.losses(torch.zeros(4, 4))


def test_entry_measurements_rejects_non_bool_mask():
    with pytest.raises(TypeError, match="mask"):
        entry_measurements(torch.ones(2, 2))


def test_restricted_isometry_of_an_orthonormal_basis_is_exactly_one():
    from factorkit.problems.sensing import SensingProblem, restricted_isometry

    basis = torch.eye(12, dtype=torch.float64).reshape(12, 3, 4)
    problem = SensingProblem.from_measurements(basis, torch.ones(3, 4, dtype=torch.float64))
    low, high = restricted_isometry(problem)
    assert low == pytest.approx(1.0, abs=1e-12) and high == pytest.approx(1.0, abs=1e-12)


def test_restricted_isometry_matches_a_grid_search_over_unit_rank_one_matrices():
    from factorkit.problems.sensing import restricted_isometry

    problem = make_sensing_problem(2, 2, rank=1, n=3, seed=4, dtype="float64")
    angles = torch.linspace(0, math.pi, 1501, dtype=torch.float64)
    u = torch.stack([angles.cos(), angles.sin()], 1)
    # <A_i, u v^T> for every (u, v) pair on the grid
    values = torch.einsum("ai,nij,bj->abn", u, problem.A, u).square().sum(-1) * 4 / 3
    low, high = restricted_isometry(problem)
    assert low == pytest.approx(float(values.min()), abs=1e-5)
    assert high == pytest.approx(float(values.max()), abs=1e-5)


@pytest.mark.parametrize("loss", ["l2", "l1"])
@pytest.mark.parametrize("measurements", ["gaussian", "completion"])
def test_closed_form_gradient_equals_autograd(measurements, loss):
    """``losses_and_gradient``: the losses of ``losses`` and the gradient autograd gives of the
    summed objective (L_train, or the mean absolute residual), one problem or one per member."""
    problems = [make_sensing_problem(4, 3, 1, 7, measurements, seed=s, dtype="float64") for s in range(3)]
    W = torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for problem in (problems[0], ProblemBatch.of(problems)):
        leaf = W.clone().requires_grad_()
        train, gen = problem.losses(leaf)
        objective = problem.train_residuals(leaf).abs().mean(-1).sum() if loss == "l1" else train.sum()
        objective.backward()
        ours = problem.losses_and_gradient(W, loss)
        # the same sums in another order (the gradient's product with the operator's transpose)
        for value, reference in zip(ours, (train.detach(), gen.detach(), leaf.grad), strict=True):
            torch.testing.assert_close(value, reference, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="loss must be one of"):
        problems[0].losses_and_gradient(W, "huber")
    with pytest.raises(ValueError, match="W must have shape"):
        ProblemBatch.of(problems).losses_and_gradient(W[:2])
