import math

import numpy as np
import pytest
import torch
from scipy import stats

from factorkit.fit.guess_check import Prior, guess_and_check
from factorkit.models import DeepFactorization
from factorkit.problems import SensingProblem, make_sensing_problem


def naive_loop(problem, model, prior, eps, n_samples, max_evaluations, chunk_size, seed, backend):
    """One candidate at a time, NumPy loss with explicit sums; the same candidate stream."""
    A, y = problem.A.double().numpy(), problem.y.double().numpy()
    accepted, evaluations, index = [], 0, 0
    while evaluations < max_evaluations and len(accepted) < n_samples:
        # chunk c of the stream of `seed` comes from SeedSequence(seed, spawn_key=(c,))
        state = np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(1, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(state))
        index += 1
        chunk = prior.sample(
            model, min(chunk_size, max_evaluations - evaluations), generator, problem.dtype, backend
        )
        for W in chunk:
            evaluations += 1
            w = W.double().numpy()
            loss = np.mean([(np.sum(a * w) - target) ** 2 for a, target in zip(A, y, strict=True)])
            if loss < eps:
                accepted.append(W)
                if len(accepted) == n_samples:
                    break
    return accepted, evaluations


@pytest.mark.parametrize("backend", ["direct", "reparam"])
@pytest.mark.parametrize("activation", ["linear", "tanh"])
def test_batched_rejection_equals_naive_loop_draw_for_draw(activation, backend):
    problem = make_sensing_problem(4, 4, rank=1, n=8, seed=2, dtype="float64")
    model = DeepFactorization(4, 4, width=6, depth=3, activation=activation)
    prior = Prior.from_name("gaussian")
    result = guess_and_check(
        problem,
        model,
        eps=0.08,
        prior=prior,
        n_samples=25,
        max_evaluations=200_000,
        chunk_size=997,
        seed=5,
        progress=False,
        backend=backend,
    )
    accepted, evaluations = naive_loop(problem, model, prior, 0.08, 25, 200_000, 997, 5, backend)
    assert result.accepted == len(accepted) == 25
    assert result.evaluations == evaluations
    torch.testing.assert_close(result.accepted_W, torch.stack(accepted))
    assert result.acceptance_rate == 25 / evaluations


def orthonormal_problem(n=6, m=3, m2=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(m * m2, m * m2, dtype=torch.float64, generator=generator))
    A = q[:n].reshape(n, m, m2)
    W_star = torch.randn(m, m2, dtype=torch.float64, generator=generator)
    return SensingProblem.from_measurements(A, W_star / W_star.norm())


def test_acceptance_rate_matches_noncentral_chi_square():
    # depth 1, linear, N(0, s^2) prior, orthonormal A: n L_train / s^2 ~ ncx2(n, ||y||^2 / s^2)
    problem, s, eps = orthonormal_problem(), 0.4, 0.15
    model = DeepFactorization(3, 4, width=1, depth=1)
    prior = Prior(layer_scales=(s,))
    exact = stats.ncx2.cdf(problem.n * eps / s**2, problem.n, float(problem.y.square().sum()) / s**2)
    result = guess_and_check(
        problem, model, eps=eps, prior=prior, max_evaluations=400_000, seed=1, progress=False
    )
    assert 0.01 < exact < 0.5
    assert stats.binomtest(result.accepted, result.evaluations, exact).pvalue > 0.001
    low, high = result.acceptance_interval(0.999)
    assert low < exact < high


def test_posterior_and_prior_gen_loss_match_closed_form():
    # with orthonormal A and isotropic prior, the complement coordinates are independent of the
    # constraint: E[L_gen | accept] = E[L_gen] = s^2 + ||B w*||^2 / |B|
    problem, s = orthonormal_problem(seed=3), 0.4
    model = DeepFactorization(3, 4, width=1, depth=1)
    result = guess_and_check(
        problem,
        model,
        eps=0.15,
        prior=Prior(layer_scales=(s,)),
        max_evaluations=400_000,
        seed=2,
        progress=False,
    )
    B = problem.complement.reshape(problem.complement.shape[0], -1)
    expected = s**2 + float((B @ problem.W_star.reshape(-1)).square().mean())
    low, high = result.gen_loss_interval(0.999)
    assert low < expected < high
    assert abs(result.prior_gen_loss_mean - expected) < 4 * result.prior_gen_loss_se


def test_default_gaussian_prior_scaling():
    model = DeepFactorization(5, 3, width=40, depth=2)
    # the paper's: variance one over the layer's outputs (k for W_1, m for W_d)
    assert Prior.from_name("gaussian").scales(model) == pytest.approx([1 / math.sqrt(40), 1 / math.sqrt(5)])
    fan_in = Prior.from_name("gaussian", layer_scaling="fan_in")
    assert fan_in.scales(model) == pytest.approx([1 / math.sqrt(3), 1 / math.sqrt(40)])
    with pytest.raises(ValueError, match="layer_scaling must be one of 'fan_out', 'fan_in'; got 'fan'"):
        Prior(layer_scaling="fan")
    W = fan_in.sample(model, 40_000, torch.Generator().manual_seed(0), torch.float64)
    # fan-in: E[W_ij^2] = k * (1/k) * (1/m') = 1/m'; fan-out: k * (1/m) * (1/k) = 1/m
    assert float(W.square().mean()) == pytest.approx(1 / 3, rel=0.02)
    W = Prior.from_name("gaussian").sample(model, 40_000, torch.Generator().manual_seed(1), torch.float64)
    assert float(W.square().mean()) == pytest.approx(1 / 5, rel=0.02)


def test_normalized_and_uniform_priors():
    model = DeepFactorization(5, 5, width=5, depth=3)
    generator = torch.Generator().manual_seed(0)
    W = Prior.from_name("normalized_gaussian", target_norm=2.0).sample(model, 1000, generator)
    torch.testing.assert_close(W.flatten(1).norm(dim=1), torch.full((1000,), 2.0))
    weights = Prior.from_name("uniform").sample_weights(model, 1000, generator)
    for weight, scale in zip(weights, Prior().scales(model), strict=True):
        assert float(weight.abs().max()) <= scale
        assert float(weight.square().mean()) == pytest.approx(scale**2 / 3, rel=0.05)


def test_zero_acceptances_reported_not_invented():
    problem = make_sensing_problem(seed=0)
    result = guess_and_check(
        problem,
        DeepFactorization(5, 5, 5, 2),
        eps=1e-6,
        n_samples=3,
        max_evaluations=5000,
        seed=0,
        progress=False,
    )
    assert result.accepted == 0 and result.evaluations == 5000
    assert not result.reached_target
    assert math.isnan(result.gen_loss_mean)
    assert result.acceptance_interval()[0] == 0.0 and result.acceptance_interval()[1] < 1e-3
    summary = result.summary()
    assert summary["accepted"] == 0 and math.isnan(summary["gen_loss"])


def test_chunking_is_reproducible_for_a_seed():
    problem = make_sensing_problem(seed=1)
    model = DeepFactorization(5, 5, 5, 2)
    a = guess_and_check(
        problem, model, eps=0.1, max_evaluations=20_000, chunk_size=4096, seed=9, progress=False
    )
    b = guess_and_check(
        problem, model, eps=0.1, max_evaluations=20_000, chunk_size=4096, seed=9, progress=False
    )
    torch.testing.assert_close(a.accepted_W, b.accepted_W)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"eps": 0.0}, ValueError, "eps must be > 0"),
        ({"eps": -1.0}, ValueError, "eps must be > 0"),
        ({"eps": float("nan")}, ValueError, "eps must be finite"),
        ({"eps": 0.1, "prior": "laplace"}, ValueError, "prior must be one of"),
        ({"eps": 0.1, "n_samples": 0}, ValueError, "n_samples must be >= 1"),
        ({"eps": 0.1, "max_evaluations": 0}, ValueError, "max_evaluations must be >= 1"),
        ({"eps": 0.1, "prior": 3}, TypeError, "prior must be a name or a Prior"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        guess_and_check(make_sensing_problem(), DeepFactorization(5, 5, 5, 2), progress=False, **kwargs)


def test_prior_validation():
    with pytest.raises(ValueError, match="layer_scales\\[1\\] must be > 0"):
        Prior(layer_scales=(1.0, -1.0))
    with pytest.raises(ValueError, match="layer_scales has 1 entries"):
        Prior(layer_scales=(1.0,)).scales(DeepFactorization(5, 5, 5, 2))
