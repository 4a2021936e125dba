"""The Gaussian probability of a ball (Ruben's series) against what it cannot fake: the exact 1-D
formula, numerical integration in 2 and 3 dimensions, SciPy's non-central chi-square for equal
eigenvalues (deep in the tail), a singular covariance, and the small-ball limit."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from factorkit.fit.ball import log_ball_probability, log_ball_volume, log_gaussian_density


def probability(values, centre, radius2):
    return math.exp(log_ball_probability(np.asarray([values]), np.asarray([centre]), radius2)[0])


def test_one_dimension_is_a_normal_interval():
    # P(2 (x + d)^2 <= 3), d = -1.5 / sqrt 2: x in [-r - d, r - d], r = sqrt(3 / 2)
    d, r = -1.5 / math.sqrt(2), math.sqrt(1.5)
    exact = stats.norm.cdf(r - d) - stats.norm.cdf(-r - d)
    assert probability([2.0], [1.5], 3.0) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_two_and_three_dimensions_equal_numerical_integration(seed):
    rng = np.random.default_rng(seed)
    L, y, t = rng.uniform(0.1, 3, 2), rng.normal(size=2) * 1.5, rng.uniform(0.2, 4)
    R = math.sqrt(t)

    def density2(b, a):
        return math.exp(-0.5 * (a * a / L[0] + b * b / L[1])) / (2 * math.pi * math.sqrt(L[0] * L[1]))

    def half(a):
        return math.sqrt(max(t - (a - y[0]) ** 2, 0.0))

    low, high = (lambda a: y[1] - half(a)), (lambda a: y[1] + half(a))
    value, _ = integrate.dblquad(density2, y[0] - R, y[0] + R, low, high, epsabs=1e-14, epsrel=1e-12)
    assert probability(L, y, t) == pytest.approx(value, rel=1e-9)

    L3, y3, t3 = rng.uniform(0.2, 2, 3), rng.normal(size=3), rng.uniform(0.5, 3)

    # in spherical coordinates about the ball's centre: r^2 sin(theta) times the density
    def density3(r, theta, phi):
        point = y3 + r * np.array(
            [math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta)]
        )
        quad = float((point**2 / L3).sum())
        return r * r * math.sin(theta) * math.exp(-0.5 * quad) / math.sqrt((2 * math.pi) ** 3 * L3.prod())

    value3, _ = integrate.tplquad(
        density3, 0, 2 * math.pi, 0, math.pi, 0, math.sqrt(t3), epsabs=1e-12, epsrel=1e-10
    )
    assert probability(L3, y3, t3) == pytest.approx(value3, rel=1e-7)


@pytest.mark.parametrize("radius2", [40.0, 5.0, 0.5, 1e-2, 1e-6])
def test_equal_eigenvalues_are_scipys_noncentral_chi_square_into_the_far_tail(radius2):
    """``lambda chi'^2_n(delta^2)``: ``ncx2`` (Boost's series, relative accuracy in the lower tail),
    down to probabilities of 1e-30 and below."""
    lam, y = 0.7, np.linspace(-1.5, 2.0, 9)
    ours = log_ball_probability(np.full((1, 9), lam), y[None], radius2)[0]
    reference = stats.ncx2.logcdf(radius2 / lam, 9, float((y**2).sum() / lam))
    assert ours == pytest.approx(reference, rel=1e-10)
    if radius2 == 1e-6:
        assert ours < math.log(1e-30)


def test_a_singular_covariance_puts_g_on_its_range():
    values, centre = np.array([0.0, 0.5, 2.0]), np.array([0.3, 1.0, -0.4])
    # the null direction contributes the fixed 0.09: a ball of squared radius below it is missed
    assert log_ball_probability(values[None], centre[None], 0.08)[0] == -math.inf
    inside = probability(values, centre, 1.09)
    assert inside == pytest.approx(probability(values[1:], centre[1:], 1.0), rel=1e-12)
    assert log_gaussian_density(values[None], centre[None])[0] == -math.inf  # y off the range
    assert probability([0.0, 0.0], [0.1, 0.0], 0.02) == 1.0  # Sigma = 0: g = 0, inside the ball


def test_small_balls_reach_the_density_with_the_exact_slope():
    rng = np.random.default_rng(4)
    values, centre = rng.uniform(0.05, 2, 15), rng.normal(size=15)
    small, smaller = (
        log_ball_probability(values[None], centre[None], 1e-6)[0],
        log_ball_probability(values[None], centre[None], 1e-8)[0],
    )
    assert small - smaller == pytest.approx(7.5 * math.log(100), rel=1e-5)
    limit = log_gaussian_density(values[None], centre[None])[0]
    assert smaller - log_ball_volume(15, 1e-8) == pytest.approx(limit, abs=1e-6)


def test_cost_stays_linear_in_the_terms_for_a_spread_spectrum():
    """t / lambda_min = 5e4 needs some 25,000 terms: the running sums keep that to O(n) each."""
    rng = np.random.default_rng(1)
    values = np.exp(rng.uniform(0, math.log(1e4), (20, 15)))
    values /= values.max(1, keepdims=True)
    result = log_ball_probability(values, rng.normal(size=(20, 15)) * 0.5, 5.0)
    assert np.isfinite(result).all() and (result <= 0).all()


def test_a_centre_far_out_along_a_tiny_eigenvalue_goes_to_the_contour():
    """Eigenvalue spread 1e8 and ``t / (2 min lambda) = 1300``: few terms by the compact-spectrum
    count, but with the centre outside the ball along the small eigenvalues Ruben's mixing
    distribution sits at ``k ~ sum delta^2 / 2`` (1e6 and more) and the series never stops
    (the RuntimeError tempered SMC met at eps 1e-6, depth 5). ``auto`` gives up on Ruben for such
    a row after RUBEN_CAP terms and takes the contour; where Ruben still converges (the nearer
    centre) the two agree to the rtol."""
    from factorkit.fit.ball import log_ball_upper_bound

    values = np.logspace(-8, 0, 20)
    normal = np.random.default_rng(0).normal(size=20)
    near, far = 0.1 * normal, normal
    with pytest.raises(RuntimeError, match="did not converge"):
        log_ball_probability(values, far, 2.6e-5, method="ruben", max_terms=20_000)
    value = log_ball_probability(values, far, 2.6e-5)[0]
    bound = log_ball_upper_bound(values, far, 2.6e-5)[0]
    assert bound - 20 < value <= bound  # Chernoff is a few nats above the truth
    exact = log_ball_probability(values, near, 2.6e-5, method="ruben")[0]
    assert log_ball_probability(values, near, 2.6e-5)[0] == pytest.approx(exact, rel=1e-10)


def test_the_contour_a_chunk_of_rows_at_a_time_is_every_row_at_once():
    """``_contour`` splits its rows into chunks of ``CONTOUR_ROWS`` (its temporaries stay in cache);
    each row's integral is unchanged, so the values match the one-call layout within the method's
    own accuracy (rtol 1e-12 in P, so 1e-12 in log P: the saddlepoint's Newton loop stops when every
    row of a call has converged, so a row's last step can differ between layouts), and Ruben's
    series, an independent method, agrees to the rtol."""
    from factorkit.fit.ball import CONTOUR_ROWS, _contour, _contour_rows

    rng = np.random.default_rng(3)
    rows = 2 * CONTOUR_ROWS + 7
    lam = np.sort(np.exp(rng.uniform(math.log(1e-3), 0, (rows, 6))), axis=1)
    c2 = lam * rng.normal(size=(rows, 6)) ** 2
    t = np.full(rows, 0.05)
    chunked = _contour(lam, c2, t, 1e-12)
    assert np.isfinite(chunked).all()
    np.testing.assert_allclose(chunked, _contour_rows(lam, c2, t, 1e-12), rtol=1e-13, atol=1e-12)
    ruben = log_ball_probability(lam[:5], np.sqrt(c2[:5]), 0.05, method="ruben")
    np.testing.assert_allclose(chunked[:5], ruben, rtol=1e-9)


def test_work_counts_what_each_method_did():
    """``work`` counts passes of each method's inner loop over the eigenvalues: a compact spectrum
    takes Ruben's series only (whole blocks of 64 terms, one row), a spread one with a far centre
    the contour only (whole blocks of ``CONTOUR_BLOCK`` nodes); the counts add up across calls."""
    from factorkit.fit.ball import CONTOUR_BLOCK

    work = {}
    log_ball_probability(np.linspace(0.5, 1.0, 4), np.zeros(4), 0.5, work=work)
    assert set(work) == {"ruben", "blocks"} and work["ruben"] % (64 * 4) == 0 and work["ruben"] > 0
    first = dict(work)
    values = np.logspace(-8, 0, 20)
    log_ball_probability(values, np.random.default_rng(0).normal(size=20), 2.6e-5, work=work)
    assert work["ruben"] >= first["ruben"] and work["contour"] % (CONTOUR_BLOCK * 20) == 0
    assert work["contour"] > 0 and work["blocks"] > first["blocks"]
