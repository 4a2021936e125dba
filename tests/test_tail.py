"""factorkit.fit.tail: the counted tail index of the eps = 0 weight, checked against the density
itself (how fast it grows toward a stratum) and wired into the samplers (eps = 0 refused where the
interpolating posterior does not exist). Hill's estimates from prior draws beside the count:
``benchmarks/explore_weight_tail.py`` (recorded in benchmarks/README.md; too slow for the suite)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from factorkit.fit import sample_posterior
from factorkit.fit.auto import auto_sample
from factorkit.fit.marginal import OutputLayerIntegral
from factorkit.fit.marginal_sampler import marginal_sample
from factorkit.fit.normalized import Directions, NormalizedInterpolation
from factorkit.fit.prior import resolve_prior
from factorkit.fit.tail import covered, spread_cost, truth_rank, weight_tail_index
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem


def problem_of(n=15, rank=1, dtype="float64", measurements="gaussian"):
    return make_sensing_problem(5, 5, rank=rank, n=n, seed=0, dtype=dtype, measurements=measurements)


def tail_of(problem, width, depth, activation="linear", prior="gaussian"):
    model = DeepFactorization(5, 5, width, depth, activation)
    return weight_tail_index(problem, model, resolve_prior(prior, problem))


def test_spread_cost_is_the_smallest_sum_of_squares():
    for small in range(7):
        for factors in range(1, 5):
            # brute force over every composition into `factors` non-negative parts
            parts = [p for p in np.ndindex(*(small + 1,) * factors) if sum(p) == small]
            assert spread_cost(small, factors) == min(sum(x * x for x in p) for p in parts)
    with pytest.raises(ValueError, match="factors"):
        spread_cost(3, 0)


def test_the_papers_problem_counts_by_hand():
    # m = m' = 5, n = 15, rank 1, k = 5: the rank-1 stratum (10 vanishing eigenvalues) costs
    # 16 + 4, 8 + 4, 6 + 4, 4 + 4 at depths 2, 3, 4, 5 (j = 4 small values over d - 1 factors,
    # plus 4 alignment conditions)
    problem = problem_of()
    expected = {2: 2.0, 3: 1.2, 4: 1.0, 5: 0.8, 6: 0.8}
    for depth, alpha in expected.items():
        tail = tail_of(problem, 5, depth)
        assert (tail.alpha, tail.rank, tail.vanishing) == (alpha, 1, 10)
    assert tail_of(problem, 5, 3).exists and not tail_of(problem, 5, 3).finite_variance
    assert not tail_of(problem, 5, 4).exists  # alpha = 1: a logarithmic divergence
    # width: each small value in a k x k factor also pays k - m' alignment conditions
    assert tail_of(problem, 10, 4).alpha == 3.0 and tail_of(problem, 10, 6).alpha == 2.8
    # width_rank2's problem: rank 2, n = 22; the rank-3 stratum sets it at width 5 (8 / 7)
    tail = tail_of(problem_of(n=22, rank=2), 5, 2)
    assert (tail.rank, tail.vanishing, tail.cost) == (3, 7, 8)
    # depth 1 has no hidden layers, so the weight is one number
    assert tail_of(problem, 5, 1).alpha == math.inf


def test_the_density_grows_toward_a_stratum_as_counted():
    # The count's premise, checked on the density the sampler computes: with G = P + lam (I - P),
    # P the projection on an r-dimensional space holding W*'s row space, log N(y; 0, Sigma(G))
    # grows like -(n - m r)/2 log lam; with the space turned away from W*'s rows it falls.
    problem = problem_of()
    model = DeepFactorization(5, 5, 5, 2)
    integral = OutputLayerIntegral(problem, model, resolve_prior("gaussian", problem), 0.0)
    row = torch.linalg.svd(problem.W_star).Vh[:1]  # W*'s row space (rank 1)
    other = torch.linalg.qr(torch.cat([row, torch.eye(5, dtype=torch.float64)]).T).Q[:, 1:].T
    for rank in (1, 2, 3):
        basis = torch.cat([row, other[: rank - 1]])
        projection = basis.T @ basis
        lams = torch.tensor([1e-6, 1e-8], dtype=torch.float64)
        grams = projection + lams[:, None, None] * (torch.eye(5, dtype=torch.float64) - projection)
        log_w = integral.analyse(grams).log_weight
        slope = (log_w[1] - log_w[0]) / math.log(1e-2)
        # O(lam) corrections only: the slope is -a/2 to well within 1e-3
        assert slope == pytest.approx(-(15 - 5 * rank) / 2, abs=1e-3)
    turned = other[:1].T @ other[:1] + 1e-8 * (torch.eye(5, dtype=torch.float64) - other[:1].T @ other[:1])
    assert integral.analyse(turned[None]).log_weight[0] < -1e6


def test_a_normalized_prior_counts_one_condition_more():
    # W on the sphere of radius ||W*||: n - m r + 1 conditions near a rank-r stratum, so the
    # paper's depth figures (normalized, k = 5) have alpha 20/11, 12/11, 10/11 at depths 2-4
    problem = problem_of()
    for depth, (alpha, rank, vanishing) in {
        2: (20 / 11, 1, 11),
        3: (12 / 11, 1, 11),
        4: (10 / 11, 1, 11),
    }.items():
        tail = tail_of(problem, 5, depth, prior="normalized_gaussian")
        assert (tail.alpha, tail.rank, tail.vanishing) == (pytest.approx(alpha), rank, vanishing)
    assert tail_of(problem, 5, 3, prior="normalized_gaussian").exists
    assert tail_of(problem, 5, 4, prior="normalized_gaussian").missing
    # n = 10: the rank-1 stratum, 20 / 6 against the Gaussian prior's 20 / 5 (and the rank-2
    # stratum, n = m r, now has one condition: 12 / 1, not the minimum)
    assert tail_of(problem_of(n=10), 5, 2, prior="normalized_gaussian").alpha == pytest.approx(20 / 6)
    assert tail_of(problem_of(n=10), 5, 2).alpha == 4.0


@pytest.mark.parametrize("n, rank", [(15, 1), (15, 2), (10, 2)])
def test_the_normalized_weight_grows_toward_a_stratum_as_counted(n, rank):
    # The premise, on the weight factorkit.fit.normalized computes (its direction integral by
    # importance sampling about the mode, 4096 directions): hidden layers F = F0 + s E with F0 of
    # rank r holding W*'s row space; log p(h = y | F) grows like -(n - m r + 1) log s, one power
    # more than the Gaussian prior's -(n - m r) (computed beside it, exactly)
    problem = problem_of(n=n)
    model = DeepFactorization(5, 5, 5, 2)
    prior = resolve_prior("normalized_gaussian", problem)
    directions = Directions(NormalizedInterpolation(problem, model, prior), count=4096)
    gaussian = OutputLayerIntegral(problem, model, resolve_prior("gaussian", problem), 0.0)
    generator = torch.Generator().manual_seed(3)
    row = torch.linalg.svd(problem.W_star).Vh[:1]
    F0 = torch.randn(5, rank, generator=generator, dtype=torch.float64) @ torch.cat(
        [row, torch.randn(rank - 1, 5, generator=generator, dtype=torch.float64)]
    )
    E = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    grams = torch.stack([(F0 + s * E).T @ (F0 + s * E) for s in (1e-3, 1e-4)])
    latent = directions.draw(2, torch.Generator().manual_seed(0))
    normalized = directions.evaluate(grams, latent)[0]
    unnormalized = gaussian.analyse(grams).log_weight
    # O(s) corrections and the directions' Monte Carlo error (the proposal is near exact there)
    assert (normalized[1] - normalized[0]) / math.log(10) == pytest.approx(n - 5 * rank + 1, abs=0.1)
    assert (unnormalized[1] - unnormalized[0]) / math.log(10) == pytest.approx(n - 5 * rank, abs=0.1)


def test_what_the_count_covers():
    problem = problem_of()
    gaussian = resolve_prior("gaussian", problem)
    assert covered(problem, DeepFactorization(5, 5, 5, 3, "relu"), gaussian) is not None
    assert covered(problem, DeepFactorization(5, 5, 5, 3, torch.sin), gaussian) is not None
    assert covered(problem, DeepFactorization(5, 5, 4, 3), gaussian) is not None  # k < m'
    assert covered(problem_of(measurements="completion"), DeepFactorization(5, 5, 5, 3), gaussian)
    # a normalized prior is counted only with the truth on its sphere (target_norm = ||W*||)
    normalized = resolve_prior("normalized_gaussian", problem)
    assert covered(problem, DeepFactorization(5, 5, 5, 3), normalized) is None
    off = dataclasses.replace(normalized, target_norm=2 * normalized.target_norm)
    assert "target_norm" in covered(problem, DeepFactorization(5, 5, 5, 3), off)
    assert weight_tail_index(problem, DeepFactorization(5, 5, 5, 3), off) is None
    assert tail_of(problem, 5, 3, prior="uniform") is None
    # noisy measurements: y is no longer A(W*), the strata's premise; float32's own y is exact enough
    from factorkit.problems.sensing import corrupt

    assert "noisy" in covered(corrupt(problem, noise_std=0.01), DeepFactorization(5, 5, 5, 3), gaussian)
    assert covered(problem_of(dtype="float32"), DeepFactorization(5, 5, 5, 3), gaussian) is None
    # tanh and leaky ReLU: F = s(W_1) has a positive density, so depth 2 counts as linear does;
    # deeper, the last layer alone gives an upper bound (never "exists", "missing" where <= 1)
    for activation in ("tanh", "leaky_relu"):
        assert tail_of(problem, 5, 2, activation) == tail_of(problem, 5, 2)
        deep = tail_of(problem, 5, 6, activation)
        assert (deep.alpha, deep.upper, deep.exists, deep.missing) == (2.0, True, False, False)
        assert tail_of(problem_of(n=24), 5, 4, activation).missing  # bound 0.5
    assert not DeepFactorization(5, 5, 5, 2, "leaky_relu", negative_slope=0.0).is_linear
    assert tail_of(problem, 5, 3, activation="relu") is None
    # a float32 rank-1 truth has float32-sized other singular values: still rank 1
    assert truth_rank(problem_of(dtype="float32")) == 1 == truth_rank(problem)
    assert truth_rank(problem_of(n=22, rank=2, dtype="float32")) == 2


def test_eps_zero_is_refused_where_the_interpolating_posterior_does_not_exist():
    problem = problem_of(dtype="float32")
    deep = DeepFactorization(5, 5, 5, 4)
    for run in (
        lambda: marginal_sample(problem, deep, eps=0.0),
        lambda: auto_sample(problem, deep, eps=0.0),
        lambda: sample_posterior(problem, deep, eps=0.0, sampler="marginal"),
    ):
        with pytest.raises(ValueError, match=r"does not exist.*tail index is 1 <= 1.*rank 1"):
            run()
    # above eps = 0 the threshold posterior exists: sampled, with the index recorded
    result = marginal_sample(problem, deep, eps=0.05, method="importance", n_samples=50, target_ess=50)
    assert result.extra["tail_index"] == 1.0
    # where it exists the index is recorded beside the answer; nan where not counted
    assert marginal_sample(problem, DeepFactorization(5, 5, 5, 2), eps=0.0).extra["tail_index"] == 2.0
    relu = marginal_sample(problem, DeepFactorization(5, 5, 5, 2, "relu"), eps=0.05, method="importance",
                           n_samples=50, target_ess=50)  # fmt: skip
    assert math.isnan(relu.extra["tail_index"])
    # a bound above 1 says nothing either way: sampled (tanh, depth 3: at most 2)
    bound = marginal_sample(problem, DeepFactorization(5, 5, 5, 3, "tanh"), eps=0.0, method="importance",
                            n_samples=50, target_ess=50, hidden_draws=4096)  # fmt: skip
    assert bound.extra["tail_index"] == 2.0
    # a bound at most 1 refuses too (tanh, depth 4, n = 24: at most 0.5)
    with pytest.raises(ValueError, match=r"tail index is at most 0.5 <= 1"):
        marginal_sample(problem_of(n=24), DeepFactorization(5, 5, 5, 4, "tanh"), eps=0.0)
    # a normalized prior too (depth 4: 10/11), refused before its sampler starts
    with pytest.raises(ValueError, match=r"does not exist.*tail index is 0.909 <= 1"):
        marginal_sample(problem, deep, prior="normalized_gaussian", eps=0.0)


def test_a_study_refuses_such_a_cell_before_it_runs():
    from factorkit.experiments import StudyConfig

    raw = {
        "name": "refuse", "seeds": 1, "problem": {"m": 5, "m2": 5, "n": 15},
        "grid": {"width": [5, 10], "depth": [2, 4], "method": ["gc"], "eps": [0.0, 0.02]},
        "gc": {"sampler": "marginal"},
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"gc.eps = 0 at width 5, depth 4, linear: the interpolating"):
        StudyConfig.from_dict(raw)
    # width 10 at depth 4 (alpha 3) and every eps > 0 are fine
    assert len(StudyConfig.from_dict({**raw, "grid": {**raw["grid"], "width": [10]}}).cells()) == 4
    assert StudyConfig.from_dict({**raw, "grid": {**raw["grid"], "eps": [0.02]}}).cells()
    # noisy measurements are not counted: nothing to refuse
    assert StudyConfig.from_dict({**raw, "problem": {**raw["problem"], "noise": 0.01}}).cells()
    # gc.eps0 = 'counted' keeps the eps = 0 cells where the posterior is shown to exist instead
    counted = StudyConfig.from_dict({**raw, "grid": {**raw["grid"], "depth": [2, 3, 4]}, "gc": {
        "sampler": "marginal", "eps0": "counted"}})  # fmt: skip
    zero = sorted((c.params["width"], c.params["depth"]) for c in counted.cells() if c.params["eps"] == 0)
    assert zero == [(5, 2), (5, 3), (10, 2), (10, 3), (10, 4)]  # width 5, depth 4: alpha = 1
    assert len([c for c in counted.cells() if c.params["eps"] > 0]) == 6
    # it decides which cells exist, not how one runs: the kept cells' keys are unchanged
    plain = StudyConfig.from_dict({**raw, "grid": {**raw["grid"], "width": [10], "depth": [2, 3, 4]}})
    assert {c.key(0) for c in plain.cells()} <= {c.key(0) for c in counted.cells()}
    with pytest.raises(ValueError, match="gc.eps0"):
        StudyConfig.from_dict({**raw, "gc": {"sampler": "marginal", "eps0": "some"}})
