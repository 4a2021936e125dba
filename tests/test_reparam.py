"""Exactness of the reparametrized prior draws against the direct draw (issue: KS tests).

Each check is a fixed-seed test at the 1% level, so across ~60 of them about one false alarm is
expected for an arbitrary seed choice. A first seed scheme gave two (linear k=5 d=3, entry KS
p = 0.008; tanh acceptance p = 0.008); rerun with 4x the draws over 4 other seeds, all 32 KS
p-values fell in [0.06, 0.93] and the acceptance counts agreed, so the seeds below were moved,
not the thresholds. Drawing in chunks (bounded memory) changed the streams and a third config
(linear k=40 d=3) failed at p = 0.008; with 2e6 draws of each backend its four KS p-values were
0.40, 0.16, 0.27, 0.58 and means and variances agreed to four digits; over 20 seeds its 80
p-values were uniform (KS against U(0, 1): p = 0.58), the check kept below as a slow test.
"""

import pytest
import torch
from scipy import stats

from factorkit.fit.guess_check import Prior, guess_and_check
from factorkit.fit.reparam import applies, bartlett_factor, sample_end_to_end, standard_gamma
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem

DRAWS = 100_000


def statistics(problem, W):
    """The quantities compared: ||W||_F, L_train, and two single entries."""
    return {
        "norm": W.flatten(1).norm(dim=1),
        "train": problem.train_loss(W),
        "entry00": W[:, 0, 0],
        "entry23": W[:, 2, 3],
    }


def compare(model, prior, seed, draws=DRAWS):
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    generator = torch.Generator().manual_seed(seed)
    chunk = 10_000  # bounded memory: a direct draw of wide layers is large

    def draw(backend):
        return torch.cat(
            [
                prior.sample(model, min(chunk, draws - start), generator, torch.float64, backend)
                for start in range(0, draws, chunk)
            ]
        )

    direct, fast = draw("direct"), draw("reparam")
    for name, a in statistics(problem, direct).items():
        b = statistics(problem, fast)[name]
        if name == "norm" and prior.normalize:
            # a point mass: both draws must sit on it (a KS test would compare rounding noise)
            for norms in (a, b):
                torch.testing.assert_close(
                    norms, torch.full_like(norms, prior.target_norm), rtol=1e-12, atol=0
                )
            continue
        p_value = stats.ks_2samp(a.numpy(), b.numpy()).pvalue
        assert p_value > 0.01, f"{name}: KS p = {p_value:.2e}"


@pytest.mark.parametrize(
    ("width", "depth"),
    [
        (5, 2),
        (40, 2),
        (160, 2),
        (5, 3),
        pytest.param(40, 3, marks=pytest.mark.slow),  # 8.6 s; width 40 at depth 2, depth 3 at width 5
        (5, 6),
        pytest.param(40, 6, marks=pytest.mark.slow),  # 23 s; depth 6 runs at width 5 by default
        pytest.param(160, 3, marks=pytest.mark.slow),
        pytest.param(160, 6, marks=pytest.mark.slow),
    ],
)
def test_linear_wishart_chain_matches_direct_draw(width, depth):
    compare(
        DeepFactorization(5, 5, width, depth), Prior.from_name("gaussian"), seed=3000 + 10 * width + depth
    )


@pytest.mark.slow
def test_ks_pvalues_are_uniform_over_seeds():
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    model, prior = DeepFactorization(5, 5, 40, 3), Prior.from_name("gaussian")
    p_values = []
    for seed in range(20):
        generator = torch.Generator().manual_seed(5000 + seed)
        direct, fast = (
            torch.cat([prior.sample(model, 10_000, generator, torch.float64, b) for _ in range(10)])
            for b in ("direct", "reparam")
        )
        for name, a in statistics(problem, direct).items():
            p_values.append(stats.ks_2samp(a.numpy(), statistics(problem, fast)[name].numpy()).pvalue)
    assert stats.kstest(p_values, "uniform").pvalue > 0.01


@pytest.mark.parametrize("width", [20, pytest.param(40, marks=pytest.mark.slow)])  # 40: 12 s
def test_normalized_prior_matches_direct_draw(width):
    compare(DeepFactorization(5, 5, width, 4), Prior.from_name("normalized_gaussian"), seed=7)


@pytest.mark.parametrize(
    ("activation", "width", "depth"),
    [
        ("tanh", 5, 2),
        ("leaky_relu", 5, 2),
        ("relu", 5, 2),
        ("tanh", 20, 3),
        # 12-16 s each: width 20 runs with tanh by default, every activation at width 5
        pytest.param("tanh", 40, 3, marks=pytest.mark.slow),
        pytest.param("leaky_relu", 40, 3, marks=pytest.mark.slow),
        pytest.param("relu", 40, 3, marks=pytest.mark.slow),
    ],
)
def test_output_layer_marginalization_matches_direct_draw(activation, width, depth):
    compare(DeepFactorization(5, 5, width, depth, activation), Prior.from_name("gaussian"), seed=depth)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["tanh", "leaky_relu"])
def test_output_layer_marginalization_wide(activation):
    compare(DeepFactorization(5, 5, 160, 2, activation), Prior.from_name("gaussian"), seed=11)


def test_rectangular_shapes_and_custom_scales():
    problem_shape = (3, 4)
    model = DeepFactorization(*problem_shape, width=6, depth=3)
    prior = Prior(layer_scales=(0.5, 2.0, 0.3))
    generator = torch.Generator().manual_seed(0)
    direct = prior.sample(model, DRAWS, generator, torch.float64, "direct")
    fast = prior.sample(model, DRAWS, generator, torch.float64, "reparam")
    assert fast.shape == (DRAWS, 3, 4)
    # second moments in closed form: E[W_ij^2] = prod_j s_j^2 * k^(d-1)
    expected = (0.5 * 2.0 * 0.3) ** 2 * 6**2
    for W in (direct, fast):
        assert float(W.square().mean()) == pytest.approx(expected, rel=0.03)
    assert stats.ks_2samp(direct[:, 1, 2].numpy(), fast[:, 1, 2].numpy()).pvalue > 0.01


@pytest.mark.parametrize(("shape", "depth"), [((5, 5), 2), ((3, 4), 3), ((4, 2), 5)])
def test_linear_draw_is_the_product_of_bartlett_factors(shape, depth):
    # the plane-wise products equal batched matrix products of the same random numbers, drawn
    # in the same order: R = s_{d-1} B_{d-1} ... s_1 B_1, W = s_d Z R
    m, m2 = shape
    model = DeepFactorization(m, m2, width=7, depth=depth)
    scales = [0.5 + 0.25 * j for j in range(depth)]
    ours = sample_end_to_end(model, scales, 300, torch.Generator().manual_seed(3), torch.float64)
    generator = torch.Generator().manual_seed(3)
    factor = scales[0] * bartlett_factor(300, m2, 7, generator, torch.float64)
    for scale in scales[1:-1]:
        factor = scale * bartlett_factor(300, m2, 7, generator, torch.float64) @ factor
    z = torch.randn(300, m, m2, generator=generator, dtype=torch.float64)
    assert ours.shape == (300, m, m2) and ours.is_contiguous()
    torch.testing.assert_close(ours, scales[-1] * z @ factor, rtol=1e-12, atol=1e-12)


def test_bartlett_factor_gives_wishart_moments():
    # E[B^T B] = dof I and Var[(B^T B)_ii] = 2 dof for Wishart_p(dof, I)
    factor = bartlett_factor(200_000, 4, 9, torch.Generator().manual_seed(0), torch.float64)
    assert bool((factor.tril(-1) == 0).all())
    wishart = factor.transpose(1, 2) @ factor
    torch.testing.assert_close(wishart.mean(0), 9 * torch.eye(4, dtype=torch.float64), atol=0.08, rtol=0)
    assert float(wishart[:, 3, 3].var()) == pytest.approx(18, rel=0.03)
    with pytest.raises(ValueError, match="dof >= p"):
        bartlett_factor(1, 5, 3, torch.Generator(), torch.float64)


@pytest.mark.parametrize(("width", "activation"), [(40, "linear"), (40, "tanh")])
def test_acceptance_rates_agree(width, activation):
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=1)
    model = DeepFactorization(5, 5, width, 2, activation)
    runs = [
        guess_and_check(
            problem,
            model,
            eps=0.1,
            max_evaluations=200_000,
            seed=seed,
            backend=backend,
            keep_samples=False,
            progress=False,
        )
        for seed, backend in ((11, "direct"), (12, "reparam"))
    ]
    # two independent binomial samples: the two-sample test (not one run's point estimate inside the
    # other's interval, which fails ~7% of the time at a nominal 99%)
    table = [[r.accepted, r.evaluations - r.accepted] for r in runs]
    assert min(r.accepted for r in runs) > 1000
    assert stats.chi2_contingency(table).pvalue > 0.01


def test_auto_backend_choice_and_errors():
    gaussian, uniform = Prior.from_name("gaussian"), Prior.from_name("uniform")
    assert gaussian.backend_for(DeepFactorization(5, 5, 40, 2)) == "reparam"
    assert gaussian.backend_for(DeepFactorization(5, 5, 10, 6)) == "reparam"
    assert gaussian.backend_for(DeepFactorization(5, 5, 5, 6)) == "direct"  # slower at k = m'
    assert gaussian.backend_for(DeepFactorization(5, 5, 40, 2, "tanh")) == "reparam"
    assert gaussian.backend_for(DeepFactorization(5, 5, 40, 3, "tanh")) == "direct"  # slower
    assert gaussian.backend_for(DeepFactorization(5, 5, 3, 2)) == "direct"  # width < m'
    assert gaussian.backend_for(DeepFactorization(5, 5, 5, 1)) == "direct"
    assert uniform.backend_for(DeepFactorization(5, 5, 40, 2)) == "direct"
    assert not applies(DeepFactorization(5, 5, 4, 3))
    with pytest.raises(ValueError, match="backend='reparam' needs a Gaussian prior"):
        uniform.backend_for(DeepFactorization(5, 5, 40, 2), "reparam")
    with pytest.raises(ValueError, match="backend must be one of"):
        gaussian.backend_for(DeepFactorization(5, 5, 40, 2), "fast")
    with pytest.raises(ValueError, match="needs depth >= 2"):
        sample_end_to_end(DeepFactorization(5, 5, 5, 1), [1.0], 3, torch.Generator(), torch.float32)


@pytest.mark.parametrize("alpha", [0.5, 0.8, 1.0, 3.5, 80.0])
def test_standard_gamma_matches_scipy(alpha):
    draws = standard_gamma(
        torch.full((200_000,), alpha, dtype=torch.float64), torch.Generator().manual_seed(1)
    )
    assert stats.kstest(draws.numpy(), stats.gamma(alpha).cdf).pvalue > 0.01
    with pytest.raises(ValueError, match="alpha >= 1/2"):
        standard_gamma(torch.tensor([0.3]), torch.Generator())
