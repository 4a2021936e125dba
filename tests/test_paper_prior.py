"""factorkit's default G&C prior against the paper's code's definition (issue 16).

The reference below is the prior of the authors' G&C (github.com/YoniSlutzky98/nn-gd-gen-mf,
``common/training.py:train_gnc``), written out here from its definition: starting from the
identity, each of the ``d - 1`` hidden layers is ``N(0, 1)`` of shape ``(fan_in, width)`` divided
by ``sqrt(width)``, then the activation; the output layer is ``(width, n_cols)`` divided by
``sqrt(n_cols)``; the product ``Y`` is compared with the measurements as it is. ``Y`` is the
transpose of the ``W_d s(W_1)`` orientation (see :class:`factorkit.fit.guess_check.Prior`).

Each check is a two-sample Kolmogorov-Smirnov test at the 1% level on 2e5 draws of each side, on
one fixed problem: L_train (what G&C thresholds), L_gen and ||W||_F. The fan-in scaling is the
negative control: the same test must tell it apart.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from factorkit.fit.guess_check import Prior, guess_and_check
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem

DRAWS = 200_000
ACTIVATIONS = {"tanh": torch.tanh, "leaky_relu": lambda x: F.leaky_relu(x, 0.2), "linear": lambda x: x}


def authors_prior_draws(n_rows, n_cols, width, depth, activation, count, generator):
    """The paper's code's G&C draw, from its definition (float64 here)."""
    act = ACTIVATIONS[activation]
    Y = torch.eye(n_rows, dtype=torch.float64).expand(count, n_rows, n_rows)
    for _ in range(depth - 1):
        fan_in = Y.shape[-1]
        W = torch.randn(count, fan_in, width, generator=generator, dtype=torch.float64) / math.sqrt(width)
        Y = act(Y @ W)
    W = torch.randn(count, width, n_cols, generator=generator, dtype=torch.float64) / math.sqrt(n_cols)
    return Y @ W


def factorkit_draws(model, prior, count, seed, backend):
    generator = torch.Generator().manual_seed(seed)
    chunk = 20_000
    return torch.cat(
        [
            prior.sample(model, min(chunk, count - start), generator, torch.float64, backend)
            for start in range(0, count, chunk)
        ]
    )


def ks_pvalues(problem, a, b):
    ta, ga = problem.losses(a)
    tb, gb = problem.losses(b)
    pairs = {
        "train": (ta, tb),
        "gen": (ga, gb),
        "norm": (a.flatten(1).norm(dim=1), b.flatten(1).norm(dim=1)),
    }
    return {name: stats.ks_2samp(x.numpy(), y.numpy()).pvalue for name, (x, y) in pairs.items()}


@pytest.fixture(scope="module")
def problem():
    return make_sensing_problem(5, 5, rank=1, n=15, seed=3, dtype="float64")


@pytest.fixture(scope="module")
def tanh_width_40_reference():
    return authors_prior_draws(5, 5, 40, 2, "tanh", DRAWS, torch.Generator().manual_seed(1))


@pytest.mark.parametrize("backend", ["direct", "reparam"])
def test_default_prior_is_the_papers_for_tanh_at_width_40(problem, tanh_width_40_reference, backend):
    model = DeepFactorization(5, 5, 40, 2, "tanh")
    reference = tanh_width_40_reference  # one set of the authors' draws for both backends
    ours = factorkit_draws(model, Prior.from_name("gaussian"), DRAWS, seed=2, backend=backend)
    for name, p_value in ks_pvalues(problem, reference, ours).items():
        assert p_value > 0.01, f"{name}: KS p = {p_value:.2e}"
    if backend == "direct":
        # negative control: the fan-in scaling is a different law, and the test sees it (the
        # reparametrized draw's fan-in law equals the direct one's: the next test)
        fan_in_prior = Prior.from_name("gaussian", layer_scaling="fan_in")
        fan_in = factorkit_draws(model, fan_in_prior, DRAWS, 4, "direct")
        assert ks_pvalues(problem, reference, fan_in)["train"] < 1e-10


def test_fan_in_scaling_keeps_its_law_under_the_reparametrized_draw(problem):
    """The reparametrized sampler follows whichever scaling is chosen (fan-in here, against a
    direct draw of every layer with the same scales)."""
    model = DeepFactorization(5, 5, 40, 2, "tanh")
    prior = Prior.from_name("gaussian", layer_scaling="fan_in")
    direct = factorkit_draws(model, prior, DRAWS, seed=5, backend="direct")
    other = factorkit_draws(model, prior, DRAWS, seed=6, backend="reparam")
    for name, p_value in ks_pvalues(problem, direct, other).items():
        assert p_value > 0.01, f"{name}: KS p = {p_value:.2e}"


@pytest.mark.parametrize(("activation", "width"), [("leaky_relu", 5), ("tanh", 5), ("linear", 40)])
def test_transposed_problem_reproduces_the_papers_draws_on_one_problem(problem, activation, width):
    """The paper's code draws ``W^T``: G&C on ``problem.transposed()`` with ``m``/``m'`` swapped sees
    exactly its law. For leaky ReLU the model orientation is a different law on a fixed problem
    (the control), for linear nets it is the same."""
    reference = authors_prior_draws(5, 5, width, 2, activation, DRAWS, torch.Generator().manual_seed(7))
    model = DeepFactorization(5, 5, width, 2, activation)
    draws = factorkit_draws(model, Prior.from_name("gaussian"), DRAWS, seed=8, backend="direct")
    transposed = ks_pvalues(problem.transposed(), reference.mT, draws)
    for name, p_value in transposed.items():
        assert p_value > 0.01, f"{name}: KS p = {p_value:.2e}"
    as_model = ks_pvalues(problem, reference, draws)["train"]
    if activation == "leaky_relu":
        assert as_model < 1e-10
    elif activation == "linear":
        assert as_model > 0.01


def test_transposed_problem_has_the_same_losses(problem):
    W = torch.randn(50, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    train, gen = problem.losses(W)
    train_t, gen_t = problem.transposed().losses(W.mT)
    torch.testing.assert_close(train_t, train)
    torch.testing.assert_close(gen_t, gen)


def test_acceptance_of_the_default_prior_matches_the_papers_at_tanh_width_40(problem):
    """G&C's acceptance rate and posterior L_gen equal those of the reference draws, within
    binomial and t intervals (eps 0.05: about 2e-3 of draws accepted)."""
    model = DeepFactorization(5, 5, 40, 2, "tanh")
    ours = guess_and_check(problem.to(dtype=torch.float32), model, eps=0.05, max_evaluations=400_000, seed=9)
    reference = authors_prior_draws(5, 5, 40, 2, "tanh", 400_000, torch.Generator().manual_seed(10))
    train, gen = problem.losses(reference)
    hits = train < 0.05
    low, high = ours.acceptance_interval(0.999)
    assert low < float(hits.double().mean()) < high
    gen_low, gen_high = ours.gen_loss_interval(0.999)
    assert gen_low < float(gen[hits].mean()) < gen_high
