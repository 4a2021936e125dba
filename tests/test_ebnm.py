import numpy as np
import pytest
from scipy import integrate, optimize, stats

from factorkit.methods.ebnm import ebnm, expected_log_gaussian


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    theta = np.where(rng.random(300) < 0.6, 0.0, rng.laplace(0, 2, 300))
    s = rng.uniform(0.5, 1.5, 300)
    return theta + s * rng.standard_normal(300), s


def test_normal_prior_closed_form(data):
    x, s = data
    result = ebnm(x, s, "normal")
    sigma2 = result.g["scale"] ** 2
    np.testing.assert_allclose(result.mean, sigma2 / (sigma2 + s**2) * x, rtol=1e-10)
    np.testing.assert_allclose(result.log_likelihood, stats.norm.logpdf(x, 0, np.sqrt(sigma2 + s**2)).sum())
    # sigma^2 is the maximum-likelihood value (independent 1-D search)
    best = optimize.minimize_scalar(
        lambda v: -stats.norm.logpdf(x, 0, np.sqrt(v + s**2)).sum(),
        bounds=(1e-6, 100),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert sigma2 == pytest.approx(best.x, rel=1e-4)


@pytest.mark.parametrize("prior", ["point_normal", "point_laplace", "point_exponential"])
def test_posterior_and_marginal_match_numerical_integration(prior):
    g = {"pi0": 0.3, "scale": 1.7}
    x = np.array([-3.0, -0.4, 0.0, 0.8, 2.5, 6.0])
    s = np.array([1.0, 0.5, 2.0, 1.2, 0.7, 1.0])
    result = ebnm(x, s, prior, g_init=g, fix_g=True)
    rate = 1 / g["scale"]

    def slab(t):
        if prior == "point_normal":
            return stats.norm.pdf(t, 0, g["scale"])
        if prior == "point_laplace":
            return 0.5 * rate * np.exp(-rate * abs(t))
        return rate * np.exp(-rate * t) if t >= 0 else 0.0

    log_lik = 0.0
    for j in range(x.size):
        like = lambda t, j=j: stats.norm.pdf(x[j], t, s[j])  # noqa: E731
        lo = 0.0 if prior == "point_exponential" else -np.inf
        pieces = [(lo, 0.0), (0.0, np.inf)] if lo == -np.inf else [(0.0, np.inf)]

        def moment(power, like=like, pieces=pieces):
            return sum(
                integrate.quad(lambda t: t**power * slab(t) * like(t), a, b, epsabs=1e-13, epsrel=1e-12)[0]
                for a, b in pieces
            )

        z, m1, m2 = moment(0), moment(1), moment(2)
        marginal = g["pi0"] * like(0.0) + (1 - g["pi0"]) * z
        log_lik += np.log(marginal)
        assert result.mean[j] == pytest.approx((1 - g["pi0"]) * m1 / marginal, abs=1e-6)
        assert result.second_moment[j] == pytest.approx((1 - g["pi0"]) * m2 / marginal, abs=1e-6)
    assert result.log_likelihood == pytest.approx(log_lik, abs=1e-6)


@pytest.mark.parametrize("prior", ["point_normal", "point_laplace", "normal_scale_mixture"])
def test_fitted_prior_is_a_likelihood_maximum_and_never_worse_than_its_start(data, prior):
    x, s = data
    result = ebnm(x, s, prior)
    if prior == "normal_scale_mixture":
        # optimum of a concave problem: the KKT conditions of the mixture weights (tightened from 1e-3
        # when the weights came from EM; the convex solver meets them to ~1e-8)
        from factorkit.methods.ebnm import log_normal as _log_normal

        L = np.exp(_log_normal(x[:, None], result.g["sd"][None, :] ** 2 + s[:, None] ** 2))
        gradient = (L / (L @ result.g["pi"])[:, None]).sum(0)
        assert gradient.max() <= x.size * (1 + 1e-6)
        assert np.allclose(gradient[result.g["pi"] > 1e-3], x.size, rtol=1e-6)
    else:
        for pi0 in (result.g["pi0"] * 0.9, min(result.g["pi0"] * 1.1, 0.999)):
            for scale in (result.g["scale"] * 0.95, result.g["scale"] * 1.05):
                other = ebnm(x, s, prior, g_init={"pi0": pi0, "scale": scale}, fix_g=True)
                assert other.log_likelihood <= result.log_likelihood + 1e-8
    start = ebnm(x, s, prior)
    again = ebnm(x, s, prior, g_init=start.g)
    assert again.log_likelihood >= start.log_likelihood - 1e-9


def test_expected_log_gaussian_matches_sampling():
    rng = np.random.default_rng(1)
    x, s, mean, sd = 1.2, 0.8, 0.5, 0.3
    draws = rng.normal(mean, sd, 400_000)
    sampled = stats.norm.logpdf(x, draws, s).mean()
    exact = expected_log_gaussian(np.array([x]), np.array([s]), np.array([mean]), np.array([mean**2 + sd**2]))
    assert exact == pytest.approx(sampled, abs=2e-3)


def test_bad_input():
    with pytest.raises(ValueError, match="prior must be one of"):
        ebnm(np.ones(3), 1.0, "horseshoe")
    with pytest.raises(ValueError, match="standard errors s must be finite and > 0"):
        ebnm(np.ones(3), np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="NaN"):
        ebnm(np.array([1.0, np.nan]), 1.0)


def test_nonnegative_mixture_matches_numerical_integration():
    g = {"pi": np.array([0.2, 0.5, 0.3]), "upper": np.array([0.7, 3.0])}
    x = np.array([-4.0, -0.5, 0.0, 0.6, 2.0, 5.0, 40.0])
    s = np.array([1.0, 0.5, 2.0, 1.2, 0.7, 1.0, 1.0])
    result = ebnm(x, s, "nonnegative_scale_mixture", g_init=g, fix_g=True)
    log_lik = 0.0
    for j in range(x.size):
        like = stats.norm(x[j], s[j]).pdf
        moments = [g["pi"][0] * like(0.0) * (0.0**p) for p in range(3)]
        for weight, a in zip(g["pi"][1:], g["upper"], strict=True):
            for p in range(3):
                value = integrate.quad(
                    lambda t, p=p, a=a, like=like: t**p * like(t) / a, 0, a, epsabs=1e-14, epsrel=1e-12
                )[0]
                moments[p] += weight * value
        log_lik += np.log(moments[0])
        assert result.mean[j] == pytest.approx(moments[1] / moments[0], abs=1e-6)
        assert result.second_moment[j] == pytest.approx(moments[2] / moments[0], abs=1e-6)
    assert result.log_likelihood == pytest.approx(log_lik, abs=1e-6)
    fitted = ebnm(x, s, "nonnegative_scale_mixture")
    assert fitted.log_likelihood >= result.log_likelihood - 1e-9 and np.all(fitted.mean >= 0)


def test_covariate_ash_with_only_an_intercept_is_ash(data):
    from factorkit.methods.ebnm_covariate import ebnm_covariate_ash

    x, s = data
    plain = ebnm(x, s, "normal_scale_mixture")
    intercept_only = ebnm_covariate_ash(x, s, np.zeros((x.size, 0)))
    # softmax weights with an intercept alone are free mixture weights: the same problem, solved
    # by two independent routes (L-BFGS-B on the concave unnormalized-weight problem, L-BFGS on
    # bounded softmax logits)
    assert intercept_only.log_likelihood == pytest.approx(plain.log_likelihood, abs=0.02)
    np.testing.assert_allclose(intercept_only.mean, plain.mean, atol=0.1)  # a flat optimum


def test_covariate_ash_ridge_shrinks_the_covariate_coefficients_only(data):
    from factorkit.methods.ebnm_covariate import ebnm_covariate_ash

    x, s = data
    Z = np.random.default_rng(5).standard_normal((x.size, 2))
    free = ebnm_covariate_ash(x, s, Z)
    shrunk = ebnm_covariate_ash(x, s, Z, ridge=100.0)
    assert np.linalg.norm(shrunk.g["B"][1:]) < 0.5 * np.linalg.norm(free.g["B"][1:])
    assert shrunk.log_likelihood <= free.log_likelihood + 1e-9  # the penalty only costs likelihood
    start = ebnm_covariate_ash(x, s, Z, g_init=shrunk.g, ridge=100.0)
    assert start.log_likelihood >= shrunk.log_likelihood - 1e-9  # never worse than its start


def _band(seed, n=600):
    """Loadings active only where the first covariate lies in a middle band (non-monotone)."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 2))
    theta = np.where(np.abs(Z[:, 0]) < 0.6, 2.0 * rng.standard_normal(n), 0.0)
    s = np.full(n, 1.0)
    return theta + s * rng.standard_normal(n), s, Z, theta


@pytest.mark.parametrize("prior", ["point_normal", "normal_scale_mixture"])
def test_mlp_without_hidden_layers_is_the_linear_covariate_model(prior):
    from factorkit.methods.ebnm_covariate import (
        ebnm_covariate_ash,
        ebnm_covariate_mlp,
        ebnm_covariate_point_normal,
    )

    x, s, Z, _ = _band(0, n=400)
    torch_fit = ebnm_covariate_mlp(x, s, Z, prior=prior, hidden=(), weight_decay=0.0, max_iter=500)
    if prior == "point_normal":  # a second implementation: SciPy L-BFGS-B with hand-written gradients
        reference = ebnm_covariate_point_normal(x, s, Z)
        assert torch_fit.log_likelihood == pytest.approx(reference.log_likelihood, abs=1e-6)
        np.testing.assert_allclose(torch_fit.mean, reference.mean, atol=1e-5)
    else:  # the same model from the SciPy fit's coefficients: its likelihood, then a local optimum
        reference = ebnm_covariate_ash(x, s, Z)
        B = reference.g["B"]
        g = {"state": [B[1:].T.copy(), B[0].copy()], "sd": reference.g["sd"]}
        at_reference = ebnm_covariate_mlp(x, s, Z, g, prior=prior, hidden=(), weight_decay=0.0, max_iter=1)
        assert at_reference.log_likelihood >= reference.log_likelihood - 1e-8
        assert torch_fit.log_likelihood >= reference.log_likelihood - 1.0


def test_mlp_learns_a_covariate_effect_a_linear_model_cannot():
    from factorkit.methods.ebnm import ebnm
    from factorkit.methods.ebnm_covariate import ebnm_covariate_mlp, ebnm_covariate_point_normal

    x, s, Z, theta = _band(1)
    plain = ebnm(x, s, "point_normal")
    linear = ebnm_covariate_point_normal(x, s, Z)
    mlp = ebnm_covariate_mlp(x, s, Z, hidden=(8,), seed=0)
    assert linear.log_likelihood - plain.log_likelihood < 5  # a band is invisible to a logistic
    assert mlp.log_likelihood > linear.log_likelihood + 30

    def mse(fit):
        return np.mean((fit.mean - theta) ** 2)

    assert mse(mlp) < 0.85 * mse(linear)
    # warm start from its own fit: never worse, and deterministic for a seed
    again = ebnm_covariate_mlp(x, s, Z, mlp.g, hidden=(8,))
    assert again.log_likelihood >= mlp.log_likelihood - 1e-9
    same = ebnm_covariate_mlp(x, s, Z, hidden=(8,), seed=0)
    assert same.log_likelihood == mlp.log_likelihood


def test_mlp_covariate_ebnm_is_validated():
    from factorkit.methods.ebnm_covariate import ebnm_covariate_mlp

    x, s, Z, _ = _band(2, n=50)
    with pytest.raises(ValueError, match="prior must be one of"):
        ebnm_covariate_mlp(x, s, Z, prior="point_laplace")
    with pytest.raises(ValueError, match="hidden\\[0\\]"):
        ebnm_covariate_mlp(x, s, Z, hidden=(0,))
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        ebnm_covariate_mlp(x, s, Z, weight_decay=-1.0)
    with pytest.raises(ValueError, match="covariates must be a 2-D array with 50 rows"):
        ebnm_covariate_mlp(x, s, Z[:10])
    fit = ebnm_covariate_mlp(x, s, Z, hidden=(4,), max_iter=5)
    with pytest.raises(ValueError, match="does not fit this network"):
        ebnm_covariate_mlp(x, s, Z, fit.g, hidden=(5,))
