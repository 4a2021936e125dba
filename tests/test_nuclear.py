import scipy.linalg
import torch

from factorkit.fit.nuclear import min_nuclear_norm
from factorkit.problems import make_sensing_problem
from factorkit.prox import nuclear_norm


def test_feasible_and_optimal_against_null_space_perturbations():
    problem = make_sensing_problem(5, 5, rank=2, n=9, measurements="gaussian", seed=4, dtype="float64")
    result = min_nuclear_norm(problem)
    assert result.converged
    assert result.train_loss < 1e-18
    null = torch.from_numpy(scipy.linalg.null_space(problem.A.reshape(9, -1).numpy()))
    generator = torch.Generator().manual_seed(0)
    for scale in (1e-3, 1e-2, 1e-1):
        for _ in range(100):
            direction = (null @ torch.randn(null.shape[1], dtype=torch.float64, generator=generator)).reshape(
                5, 5
            )
            assert float(nuclear_norm(result.W + scale * direction)) >= result.nuclear_norm - 1e-9


def test_exact_recovery_of_rank_one_with_enough_measurements():
    problem = make_sensing_problem(5, 5, rank=1, n=15, measurements="completion", seed=3, dtype="float64")
    result = min_nuclear_norm(problem)
    assert result.rel_error < 1e-6


def test_full_observation_returns_ground_truth():
    problem = make_sensing_problem(3, 3, rank=3, n=9, measurements="completion", seed=0, dtype="float64")
    torch.testing.assert_close(min_nuclear_norm(problem).W, problem.W_star)


def test_robust_nuclear_norm_is_a_minimum_of_its_objective():
    from factorkit.fit.nuclear import robust_nuclear_norm, robust_objective
    from factorkit.problems import corrupt

    problem = corrupt(make_sensing_problem(6, 6, rank=2, n=30, seed=1, dtype="float64"), outliers=0.2, seed=2)
    result = robust_nuclear_norm(problem, lam=0.5)
    assert result.converged
    generator = torch.Generator().manual_seed(0)
    for scale in (1e-4, 1e-2, 1e-1):
        for _ in range(200):
            direction = torch.randn(6, 6, dtype=torch.float64, generator=generator)
            moved = robust_objective(problem, result.W + scale * direction / direction.norm(), 0.5)
            assert moved >= result.objective - 1e-8


def test_robust_nuclear_norm_ignores_sparse_outliers_and_interpolates_clean_data():
    from factorkit.fit.nuclear import robust_nuclear_norm
    from factorkit.problems import corrupt

    clean = make_sensing_problem(20, 20, rank=3, n=300, psd=True, seed=0, dtype="float64")
    assert robust_nuclear_norm(clean).rel_error < 1e-6
    # 5% gross outliers: ignored exactly; a plain interpolant (min nuclear norm) is pulled off
    noisy = corrupt(clean, outliers=0.05, seed=1)
    assert robust_nuclear_norm(noisy).rel_error < 1e-6
    assert min_nuclear_norm(noisy).rel_error > 0.1
