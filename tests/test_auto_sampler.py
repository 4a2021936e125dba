"""The 'auto' sampler: pilots pick rejection, the marginal sampler or SMC; whichever runs is the
sampler run alone."""

import json
import math
import warnings

import pytest
import torch

from factorkit.fit.auto import PILOT_SEED_OFFSET, auto_sample, sample_posterior, smc_cost
from factorkit.fit.guess_check import guess_and_check
from factorkit.fit.normalized import depth_one_log_density
from factorkit.fit.smc import subset_simulation
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem


def test_large_volume_runs_rejection_equal_to_guess_and_check_alone():
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0)
    model = DeepFactorization(5, 5, 5, 2)
    result = auto_sample(problem, model, eps=0.1, target_ess=50, seed=3, keep_samples=False)
    alone = guess_and_check(problem, model, eps=0.1, n_samples=50, max_evaluations=100_000_000, seed=3,
                            keep_samples=False, progress=False)  # fmt: skip
    assert result.sampler == "rejection" and result.accepted == 50
    assert result.evaluations == alone.evaluations
    assert torch.equal(result.accepted_gen_loss, alone.accepted_gen_loss)
    pilot = result.extra["pilot"]
    assert pilot["draws"] == 2**16 and pilot["accepted"] > 0
    assert pilot["rejection_draws"] <= pilot["smc_evaluations"]
    # the pilot is its own stream: rerunning it reproduces its count
    again = guess_and_check(problem, model, eps=0.1, max_evaluations=2**16, seed=3 + PILOT_SEED_OFFSET,
                            keep_samples=False, progress=False)  # fmt: skip
    assert again.accepted == pilot["accepted"]


@pytest.mark.parametrize("prior", ["normalized_gaussian", "normalized_uniform"])
def test_tiny_volume_runs_smc_until_the_target_ess(prior):
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=1)
    model = DeepFactorization(5, 5, 5, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = sample_posterior(problem, model, eps=0.002, prior=prior, sampler="auto", target_ess=300,
                                  n_particles=200, runs=4, seed=5, keep_samples=False)  # fmt: skip
        alone = subset_simulation(problem, model, eps=0.002, prior=prior, n_particles=200, runs=4, seed=5,
                                  keep_samples=False, min_ess=300, total_evaluations=100_000_000)  # fmt: skip
    assert result.sampler == "smc" and result.extra["pilot"]["accepted"] == 0
    assert "normalized prior" in result.extra["pilot"]["marginal"]  # why the marginal sampler did not run
    assert result.extra["log_volume"] < math.log(3 / 2**16)
    assert result.extra["ess"] >= 300 or len(result.extra["log_volume_runs"]) == 64
    assert result.extra["log_volume_runs"] == alone.extra["log_volume_runs"]
    assert bool((result.accepted_train_loss < 0.002).all())


def test_smc_cost_counts_levels():
    assert smc_cost(1e-3, 100, 2, 0.1, 10) == 2 * 100 * (1 + 10 * 3)
    assert smc_cost(0.5, 100, 1, 0.1, 10) == 100 * 11


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"target_ess": 0}, "target_ess must be > 0"), ({"pilot": 0}, "pilot must be >= 1"),
     ({"seed": -1}, "seed must be >= 0")],
)  # fmt: skip
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        auto_sample(make_sensing_problem(), DeepFactorization(5, 5, 5, 2), eps=0.1, **kwargs)


def test_gaussian_output_layer_at_a_small_threshold_runs_the_marginal_sampler():
    from factorkit.fit.marginal_sampler import marginal_sample

    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0)
    model = DeepFactorization(5, 5, 40, 2, "tanh")
    result = auto_sample(problem, model, eps=0.005, target_ess=100, seed=3, keep_samples=False)
    alone = marginal_sample(problem, model, eps=0.005, target_ess=100, seed=3, keep_samples=False)
    assert result.sampler == "marginal" and result.extra["pilot"]["marginal"] == "applies"
    assert "marginal" in result.extra["pilot"]["reason"]
    assert result.extra["log_volume"] == alone.extra["log_volume"]  # the same stream: the same run
    assert result.gen_loss_mean == alone.extra["gen_loss_rb"]
    low, high = result.gen_loss_interval()
    assert low < result.gen_loss_mean < high
    assert result.summary()["sampler"] == "marginal"
    json.dumps(result.summary())  # JSON-ready, as every sampler's summary


def test_eps_zero_only_where_the_output_layer_integrates_out():
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0)
    result = sample_posterior(problem, DeepFactorization(5, 5, 5, 1), eps=0.0, sampler="auto", seed=1)
    assert result.sampler == "marginal" and result.extra["method"] == "exact"
    assert result.extra["log_volume"] == -math.inf and math.isfinite(result.extra["log_density"])
    with pytest.raises(ValueError, match="eps = 0 needs the marginal sampler.*must be Gaussian"):
        auto_sample(problem, DeepFactorization(5, 5, 5, 2), eps=0.0, prior="normalized_uniform")
    # a normalized Gaussian prior has its own exact reduction at eps = 0 (factorkit.fit.normalized)
    normalized = auto_sample(problem, DeepFactorization(5, 5, 5, 1), eps=0.0, prior="normalized_gaussian")
    assert normalized.sampler == "marginal" and normalized.extra["method"] == "exact"
    # a float32 problem: its complement basis is orthonormal to float32's rounding (~1e-7), which
    # the reduction uses and the coarea formula (A alone) does not (float64: 1e-12, test_normalized)
    assert normalized.extra["log_density"] == pytest.approx(
        depth_one_log_density(problem, float(problem.W_star.norm())), rel=1e-6
    )
    direct = sample_posterior(problem, DeepFactorization(5, 5, 5, 1), eps=0.0, sampler="marginal", seed=1)
    assert direct.extra["log_density"] == result.extra["log_density"]
