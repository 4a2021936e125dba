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


def _deep_cell(depth: int = 6):
    """The paper's problem (5 x 5, rank 1, n = 15) and a narrow net whose spectra spread with
    depth: the ball probabilities need many Ruben terms and contour nodes."""
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0)
    return problem, DeepFactorization(5, 5, 5, depth)


def test_the_pilot_screens_only_draws_that_cannot_matter():
    """The marginal pilot analyses its draws as the sampler's first batch does (Chernoff bounds,
    exact probabilities only within SCREEN_NATS of the best): every draw it skips lies more than
    SCREEN_NATS below the best exact weight, the others are the exact weights (the same
    computation, row by row), and the ESS is the one every exact weight gives."""
    import numpy as np

    from factorkit.fit.hidden import HiddenLayers
    from factorkit.fit.marginal import OutputLayerIntegral
    from factorkit.fit.marginal_sampler import SCREEN_NATS, first_analysis, kish_ess, normalized_weights
    from factorkit.fit.prior import resolve_prior

    problem, model = _deep_cell()
    prior = resolve_prior("gaussian", problem)
    hidden = HiddenLayers(model, prior)
    gram = hidden.gram(hidden.draw(1024, torch.Generator().manual_seed(0)), 1024)
    integral = OutputLayerIntegral(problem.to(dtype=torch.float64), model, prior, 0.01)
    exact = integral.analyse(gram).log_weight
    screened = first_analysis(integral, gram).log_weight
    skipped = np.isneginf(screened)
    assert 100 < skipped.sum() < 1024  # the screen does something, and keeps something
    assert (exact[skipped] < exact.max() - SCREEN_NATS).all()
    np.testing.assert_allclose(screened[~skipped], exact[~skipped], rtol=1e-12)
    ess = kish_ess(normalized_weights(exact))
    assert kish_ess(normalized_weights(screened)) == pytest.approx(ess, rel=1e-9)


def test_marginal_cost_predicts_the_draws_and_the_work_of_the_run():
    """The pilot's ESS per draw predicts the run's hidden draws, and its counted work per draw the
    run's (within 2x: a pilot of 1,024 draws, and the run's screen rises with its best weight); the
    price in rejection evaluations is the predicted time over SMC's time per evaluation."""
    from factorkit.fit.auto import SMC_EVALUATION_COST, marginal_cost, marginal_us, smc_evaluation_us
    from factorkit.fit.marginal_sampler import marginal_sample
    from factorkit.fit.prior import resolve_prior

    problem, model = _deep_cell()
    prior = resolve_prior("gaussian", problem)
    cost = marginal_cost(problem, model, prior, 0.01, target_ess=200, n_particles=500, runs=8, mcmc_steps=10,
                         seed=0)  # fmt: skip
    run = marginal_sample(problem, model, eps=0.01, target_ess=200, seed=0, keep_samples=False)
    assert cost.method == run.extra["method"] == "importance"
    assert 0.5 < run.evaluations / cost.draws < 2
    work = run.extra["work"]
    predicted = cost.microseconds - marginal_us(cost.draws, {"ruben": 0, "contour": 0})  # the ball's share
    actual = marginal_us(run.evaluations, {k: v / run.evaluations for k, v in work.items()})
    actual -= marginal_us(run.evaluations, {"ruben": 0, "contour": 0})
    assert work["contour"] > 0 and 0.5 < predicted / actual < 2
    price = SMC_EVALUATION_COST * cost.microseconds / smc_evaluation_us(model)
    assert cost.evaluations == pytest.approx(price)


@pytest.mark.parametrize(("width", "depth", "sampler"), [(5, 8, "smc"), (5, 4, "smc"), (20, 2, "marginal"),
                                                         (160, 2, "marginal")])  # fmt: skip
def test_deep_narrow_cells_go_to_smc_and_wide_ones_to_the_marginal_sampler(width, depth, sampler):
    """What the counted prices change: on deep narrow nets a marginal run costs 5-10x SMC's
    evaluations' time (spread spectra: many series terms and contour nodes a draw; the constant
    price before sent them to the marginal sampler), on wide ones a fraction of it. The margins
    here are 2x and more, so a machine's rounding cannot flip them (the counts are integers of
    work and the pilots are seeded)."""
    from factorkit.fit.auto import SMC_EVALUATION_COST, choose_sampler, marginal_cost
    from factorkit.fit.prior import resolve_prior

    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0)
    prior, model = resolve_prior("gaussian", problem), DeepFactorization(5, 5, width, depth)
    cost = marginal_cost(problem, model, prior, 0.01, target_ess=200, n_particles=500, runs=8, mcmc_steps=10,
                         seed=0)  # fmt: skip
    pilot = guess_and_check(problem, model, eps=0.01, prior=prior, max_evaluations=2**16, seed=1,
                            keep_samples=False, progress=False)  # fmt: skip
    choice = choose_sampler(pilot.accepted, pilot.evaluations, target_ess=200, max_evaluations=10**8,
                            n_particles=500, runs=8, p0=0.25, mcmc_steps=10,
                            marginal_evaluations=cost.evaluations)  # fmt: skip
    assert choice.sampler == sampler
    smc = SMC_EVALUATION_COST * choice.smc_evaluations  # in rejection evaluations, as the choice
    other, chosen = (smc, cost.evaluations) if sampler == "marginal" else (cost.evaluations, smc)
    assert other > 2 * chosen


def test_marginal_cost_prices_the_hand_over_at_eps_zero_where_the_weight_has_infinite_variance():
    """``width_rank2``'s width-5 cell (rank 2, ``n = 22``, depth 2): at ``eps = 0`` the weight's
    tail index is 8/7 (infinite variance), so the sampler skips importance sampling (its Kish ESS
    stalls: the importance stage alone gives up on this problem) and runs tempered SMC with its
    effort check (four runs at four times the moves); the price is that. At ``eps > 0`` the weight
    is a probability (bounded) and importance sampling is priced as before."""
    from factorkit.fit import auto
    from factorkit.fit.auto import marginal_cost, tempered_draws
    from factorkit.fit.hidden import HiddenLayers
    from factorkit.fit.marginal import OutputLayerIntegral
    from factorkit.fit.marginal_sampler import _importance, marginal_sample
    from factorkit.fit.prior import resolve_prior
    from factorkit.fit.tail import weight_tail_index

    problem = make_sensing_problem(5, 5, rank=2, n=22, seed=0, dtype="float64")
    prior, model = resolve_prior("gaussian", problem), DeepFactorization(5, 5, 5, 2, "linear")
    tail = weight_tail_index(problem, model, prior)
    assert tail.alpha == pytest.approx(8 / 7) and tail.infinite_variance
    settings = {"target_ess": 200, "n_particles": 500, "runs": 4, "mcmc_steps": 10, "seed": 0}
    cost = marginal_cost(problem, model, prior, 0.0, **settings)
    assert cost.method == "tempered"
    # eight runs and the check's four (four times the moves), over the pilot's planned levels:
    # caps, then the excess's (at least 8 at alpha = 8/7); the sampler's eight runs on this
    # problem take 17-26 (seed 0, 2026-12-08)
    planned = [t for t in range(1, 40) if cost.draws == tempered_draws(500, 4, 10, True, t)]
    assert planned and 10 <= planned[0] <= 26
    assert cost.draws == 8 * 500 * (1 + 10 * planned[0]) + 4 * 500 * (1 + 40 * planned[0])
    # each move is a Gaussian density at eps = 0, priced per move, not per importance draw (which
    # carries the posterior draws' work: 80 us, 5-15x these rows' measured time)
    assert cost.microseconds == pytest.approx(auto.MARGINAL_RUN_US + cost.draws * auto.MARGINAL_MOVE_US)
    integral = OutputLayerIntegral(problem, model, prior, 0.0)
    hidden = HiddenLayers(model, prior)
    generator = torch.Generator().manual_seed(0)
    assert _importance(integral, hidden, 200, 2**18, 100, generator, give_up=True) is None
    assert marginal_cost(problem, model, prior, 0.02, **settings).method == "importance"
    # the sampler itself: straight to tempered SMC, not one importance batch first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        run = marginal_sample(problem, model, eps=0.0, target_ess=50, runs=2, n_particles=100,
                              check_effort=False, seed=1, keep_samples=False)  # fmt: skip
    assert run.extra["method"] == "smc"
    assert run.evaluations == sum(100 * (1 + 10 * t) for t in run.extra["temperatures"])
