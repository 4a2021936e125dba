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


# One draw of Sigma_gg's spectrum from the unnormalized depth figure's leaky ReLU, depth 6, seed 0
# (eigenvalues, centre U^T y; radius2 0.15): K'(s) holds near 1 for |s| up to ~50 and then falls,
# so Newton on log K'(-e^w) from that plateau overshot to s ~ -6e11 and back, within the bracket,
# for all of its 100 steps. The contour then ran on a line far from the saddlepoint, lost every
# digit, and reported P = 1 for a probability of exp(-1875.7): the heaviest weight of all.
PLATEAU_VALUES = np.array([
    1.1145099610100002e-06, 1.4433871582987316e-06, 4.3033827925209003e-06, 9.3232556423809488e-06,
    3.6165394589066767e-05, 8.8182201762208520e-05, 2.2625337768092887e-04, 4.8820928555660183e-04,
    5.0515581553965943e-04, 7.0433905761307762e-04, 2.1722615346028789e-03, 3.2893504778582984e-03,
    7.3840118876414354e-03, 1.0513118431345718e-02, 1.4091182809139386e-02,
])  # fmt: skip
PLATEAU_CENTRE = np.array([
    -0.011274515188578332, -0.24614823131997987, 0.03273221040643125, -0.17235381888077175,
    0.41329948139014894, -0.5561182878367875, -0.18167821737390738, 0.3278777974621363,
    0.2089858845930457, -0.42865329709393096, 0.32245346119777585, 0.011282166167189356,
    0.05990137310167916, 0.06498681999540595, 0.008022876987032648,
])  # fmt: skip

# Another, from the study's run of that figure: Newton reached f = 0 exactly (the root to the last
# bit), this row the last of its call to converge; the first safeguarded loop then read the
# proposal on its own bracket end as "outside", bisected away from the root (s = -555 for -6170)
# and stopped there
EXACT_ROOT_VALUES = np.array([
    8.2875238960459145e-09, 1.5564464942210958e-08, 1.2221409243495838e-07, 4.4424959597846846e-07,
    5.5950196867881278e-07, 4.8802817835679011e-06, 1.7391396061445457e-05, 3.0386167413319383e-05,
    6.8872442018067792e-05, 7.3871219840237267e-05, 6.8565306413006350e-04, 1.1172832775898224e-03,
    1.7652565593302284e-03, 2.3029666076916388e-03, 3.0428785344939089e-03,
])  # fmt: skip
EXACT_ROOT_CENTRE = np.array([
    0.029037514757290273, -0.036972531424754984, -0.1295660693482295, -0.24970748052268543,
    0.04872040866320093, 0.24436887344354583, -0.03480959168080275, 0.012273107875898095,
    0.13031927427656154, -0.15800915113217268, 0.17125076570077657, 0.09557910139272034,
    0.3122341323212761, 0.09418388707831847, -0.4723061046178819,
])  # fmt: skip


def _spread_rows(rows: int, seed: int):
    """Spectra spread over up to eight decades with centres of either size: Newton's hard cases."""
    rng = np.random.default_rng(seed)
    lam = np.sort(np.exp(rng.uniform(math.log(1e-8), 0, (rows, 15))), axis=1)
    centre = rng.normal(size=(rows, 15)) * rng.choice([0.03, 0.3, 1.0], size=(rows, 1))
    t = np.full(rows, 0.15)
    keep = t < (lam + centre**2).sum(1)  # below the mean: a saddlepoint s < 0 exists
    return lam[keep], centre[keep], t[keep]


def test_the_saddlepoint_solves_its_equation_where_newton_alone_oscillates():
    """``K'(s) = t`` to 1e-12 relative on the two rows above and 1,909 spread rows, all in one
    call, and the root is the one a plain bisection on ``s`` (an independent solver, 200 halvings)
    finds; the exact-root row again on its own."""
    from factorkit.fit.ball import _cumulants, saddlepoint

    lam, centre, t = _spread_rows(2000, 0)
    lam = np.vstack([PLATEAU_VALUES, EXACT_ROOT_VALUES, lam])
    c2 = np.vstack([PLATEAU_CENTRE, EXACT_ROOT_CENTRE, centre]) ** 2
    t = np.concatenate([[0.15, 0.15], t])
    s = saddlepoint(lam, c2, t)
    _, K1, _ = _cumulants(s, lam, c2)
    np.testing.assert_allclose(K1, t, rtol=1e-12)
    lo, hi = np.full(len(t), -1e12), np.zeros(len(t))  # K' decreases as s falls: bisection on s
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        above = _cumulants(mid, lam, c2)[1] > t
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    np.testing.assert_allclose(s, 0.5 * (lo + hi), rtol=1e-9)
    # alone, the exact-root row is the last of its call to converge (as it was in the study)
    alone = saddlepoint(EXACT_ROOT_VALUES[None], EXACT_ROOT_CENTRE[None] ** 2, np.array([0.15]))
    assert alone[0] == pytest.approx(s[1], rel=1e-12)


def test_the_plateau_row_has_the_probability_rubens_series_gives():
    """The contour through the right saddlepoint equals Ruben's series (an independent method, no
    saddlepoint in it) on the plateau row, and both lie a few nats under Chernoff's bound."""
    from factorkit.fit.ball import log_ball_upper_bound

    ruben = log_ball_probability(PLATEAU_VALUES, PLATEAU_CENTRE, 0.15, method="ruben")[0]
    contour = log_ball_probability(PLATEAU_VALUES, PLATEAU_CENTRE, 0.15, method="contour")[0]
    bound = log_ball_upper_bound(PLATEAU_VALUES, PLATEAU_CENTRE, 0.15)[0]
    assert contour == pytest.approx(ruben, rel=1e-10)
    assert bound - 10 < ruben < bound < -1800  # P ~ exp(-1875.7), not 1


def test_a_row_whose_saddlepoint_is_not_found_is_left_to_ruben(monkeypatch):
    """Should the root finder ever miss, the contour does not run on a wrong line: the row comes
    back NaN from the contour and ``log_ball_probability`` finishes it by Ruben's series."""
    from factorkit.fit import ball

    lam, centre, t = _spread_rows(50, 1)
    lam, centre = lam[:, -6:], centre[:, -6:]  # the six largest, scaled to 1 at most: Ruben is quick
    lam, centre = lam / lam[:, -1:], centre / np.sqrt(lam[:, -1:])
    keep = 0.15 < (lam + centre**2).sum(1)
    lam, centre = lam[keep], centre[keep]
    exact = log_ball_probability(lam, centre, 0.15, method="ruben")
    solver = ball.saddlepoint
    monkeypatch.setattr(ball, "saddlepoint", lambda lam, c2, t: 1e3 * solver(lam, c2, t))
    assert np.isnan(ball._contour_rows(lam, centre**2, np.full(len(lam), 0.15), 1e-12)).all()
    np.testing.assert_allclose(log_ball_probability(lam, centre, 0.15, method="contour"), exact, rtol=1e-10)
