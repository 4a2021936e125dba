"""The interpolating posterior of normalized Gaussian priors (factorkit.fit.normalized), checked
against what it cannot fake: the coarea formula at depth 1, brute-force rejection over the output
layer for a fixed hidden layer, and rejection over the whole prior on a problem small enough that
rejection reaches small thresholds (its log V(eps) - log vol(ball) extrapolated to eps = 0)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from factorkit.fit.hidden import gram_of_weights
from factorkit.fit.marginal_sampler import marginal_sample
from factorkit.fit.normalized import (
    Directions,
    NormalizedInterpolation,
    applies,
    dense_log_weights,
    depth_one_log_density,
    normalized_zero_sample,
    sphere_integral,
)
from factorkit.fit.prior import Prior, resolve_prior
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem


def _small():
    """2 x 2 matrices, two Gaussian measurements: the posterior lives on a circle."""
    problem = make_sensing_problem(2, 2, rank=1, n=2, seed=1, dtype="float64")
    return problem, resolve_prior("normalized_gaussian", problem)


def _log_ball(n: int, eps: float) -> float:
    return (n / 2) * math.log(math.pi * n * eps) - math.lgamma(n / 2 + 1)


def test_depth_one_is_the_coarea_formula_and_every_draw_interpolates_at_norm_c():
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    prior = resolve_prior("normalized_gaussian", problem)
    state = normalized_zero_sample(
        problem,
        DeepFactorization(5, 5, 5, 1),
        prior,
        n_samples=4000,
        generator=torch.Generator().manual_seed(0),
    )
    # one weight for every direction at depth 1: the estimate is the closed form, not an average
    assert state["method"] == "exact" and state["log_volume_se"] < 1e-12
    assert state["log_volume"] == pytest.approx(depth_one_log_density(problem, prior.target_norm), rel=1e-12)
    W = state["draws"]["W"]
    # float64 products of entries of order 1: rounding far below 1e-20 in squared residuals
    assert float(state["draws"]["train"].max()) < 1e-20
    torch.testing.assert_close(
        W.flatten(1).norm(dim=1), torch.full((len(W),), prior.target_norm, dtype=W.dtype)
    )
    # the posterior is uniform on the sphere of radius rho around the least-norm interpolant:
    # E[L_gen] = (rho^2 + |h*|^2) / k in closed form
    target = NormalizedInterpolation(problem, DeepFactorization(5, 5, 5, 1), prior)
    expected = (target.rho**2 + float(target.h_star.square().sum())) / target.k
    gen = state["draws"]["gen"]
    assert abs(float(gen.mean()) - expected) < 4 * float(gen.std()) / math.sqrt(len(gen))


def test_given_the_hidden_layer_the_density_is_brute_force_rejection_over_the_output_layer():
    problem, prior = _small()
    model = DeepFactorization(2, 2, 3, 2, "leaky_relu")
    target = NormalizedInterpolation(problem, model, prior)
    generator = torch.Generator().manual_seed(3)
    F = model.act(torch.randn(3, 2, generator=generator, dtype=torch.float64) / math.sqrt(3))
    gram = (F.T @ F).expand(200_000, 2, 2).clone()
    log_weight, _ = target.log_weights(
        gram, torch.randn(200_000, 2, generator=generator, dtype=torch.float64)
    )
    top = log_weight.max()
    reduction = top + math.log(np.exp(log_weight - top).mean())
    # brute force: W_2 ~ N(0, s^2) entries, W = c G / ||G||, the share of draws within the ball
    scale = prior.scales(model)[-1]
    A, y = problem.A.reshape(2, 4), problem.y
    ratios = {}
    for eps in (3e-3, 1e-3):
        inside = total = 0
        for _ in range(8):
            G = (scale * torch.randn(1_000_000, 2, 3, generator=generator, dtype=torch.float64) @ F).reshape(
                -1, 4
            )
            h = prior.target_norm * G / G.norm(dim=1, keepdim=True) @ A.T
            inside += int(((h - y).square().mean(1) <= eps).sum())
            total += len(G)
        ratios[eps] = (math.log(inside / total) - _log_ball(2, eps), 1 / math.sqrt(inside))
    # the ball's mean density is the centre's plus O(eps): Richardson's extrapolation to eps = 0
    limit = (3 * ratios[1e-3][0] - ratios[3e-3][0]) / 2
    error = math.hypot(1.5 * ratios[1e-3][1], 0.5 * ratios[3e-3][1])
    assert abs(limit - reduction) < 4 * error + 5e-3


def _prior_grams(model, prior, count, generator):
    """``F^T F`` of ``count`` prior draws of the hidden layers (their Gaussian scales)."""
    hidden = [s * torch.randn(count, *shape, generator=generator, dtype=torch.float64)
              for s, shape in zip(prior.scales(model), model.layer_shapes()[:-1], strict=False)]  # fmt: skip
    return gram_of_weights(model, hidden)


@pytest.mark.parametrize("depth, activation", [(2, "tanh"), (3, "leaky_relu"), (4, "linear")])
def test_the_kronecker_weights_equal_the_dense_formula(depth, activation):
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=2, dtype="float64")
    prior = resolve_prior("normalized_gaussian", problem)
    model = DeepFactorization(5, 5, 5, depth, activation)
    target = NormalizedInterpolation(problem, model, prior)
    generator = torch.Generator().manual_seed(5)
    gram = _prior_grams(model, prior, 64, generator)
    xi = torch.randn(64, target.k, generator=generator, dtype=torch.float64)
    fast, v_fast = target.log_weights(gram, xi)
    dense, v_dense = dense_log_weights(target, gram, xi)
    # the two routes round differently: a log-determinant and a quadratic form of K lose about
    # cond(K) * 2^-52 relative (deep linear draws reach cond ~1e7: ~1e-9 of a log-weight of ~100)
    cond = torch.linalg.cond(target.integral.covariance(gram))
    tolerance = (cond * torch.finfo(torch.float64).eps * 10).numpy() * np.maximum(1.0, np.abs(dense))
    assert (np.abs(fast - dense) <= tolerance).all()
    assert float(cond.max()) > 1e3  # ill-conditioned draws are among them, in every case
    torch.testing.assert_close(v_fast, v_dense, rtol=0, atol=1e-10)


def test_a_singular_hidden_gram_gets_the_eigenvalue_route_not_a_failure():
    problem, prior = _small()
    model = DeepFactorization(2, 2, 3, 2, "linear")
    target = NormalizedInterpolation(problem, model, prior)
    F = torch.tensor([[1.0, 2.0], [0.5, 1.0], [-1.0, -2.0]], dtype=torch.float64)  # rank 1
    regular = torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=torch.float64)
    gram = torch.stack([F.T @ F, regular])
    xi = torch.randn(2, target.k, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    log_weight, v = target.log_weights(gram, xi)
    # the regular draw as the dense formula gives it; the singular one finite and far below it
    # (its K has a null space of dimension m: the density there is that of a floored eigenvalue)
    assert log_weight[1] == pytest.approx(dense_log_weights(target, gram[1:], xi[1:])[0][0], abs=1e-10)
    assert np.isfinite(log_weight[0]) and log_weight[0] < log_weight[1] - 10
    assert torch.isfinite(v).all()


def _dense_quadratic(target, gram):
    """``Q_v = c0 + 2 b.v + v^T P v`` and ``log |K|`` from ``K(F)`` formed whole and inverted: the
    blocks of ``K^{-1}`` at ``a_v = (y / rho, v)`` (independent of the whitening in ``Directions``)."""
    K = target.integral.covariance(gram)
    inverse = torch.linalg.inv(K)
    n, x = target.n, target.y / target.rho
    P = inverse[:, n:, n:]
    b = (inverse[:, n:, :n] @ x[:, None])[..., 0]
    c0 = (x @ inverse[:, :n, :n] @ x[:, None])[..., 0]
    return P, b, c0, torch.linalg.slogdet(K)[1]


def test_the_direction_integral_is_a_quadrature_over_the_sphere():
    # 3 x 3 matrices, six measurements: the direction lives on S^2, where a grid integrates it
    problem = make_sensing_problem(3, 3, rank=1, n=6, seed=4, dtype="float64")
    prior = resolve_prior("normalized_gaussian", problem)
    model = DeepFactorization(3, 3, 4, 2, "tanh")
    target = NormalizedInterpolation(problem, model, prior)
    generator = torch.Generator().manual_seed(2)
    F = model.act(torch.randn(4, 3, generator=generator, dtype=torch.float64) * prior.scales(model)[0])
    gram = (F.T @ F)[None]
    P, b, c0, log_det = _dense_quadratic(target, gram)
    directions = Directions(target, count=2**16)
    P_fast, b_fast, c0_fast, log_det_fast = directions._quadratic(gram)
    torch.testing.assert_close(
        (P_fast, b_fast, c0_fast, log_det_fast), (P, b, c0, log_det), rtol=1e-9, atol=1e-9
    )
    # the midpoint rule on a (theta, phi) grid: E_v uniform [|K|^{-1/2} Q_v^{-D/2}] in closed sums
    theta = (torch.arange(1200, dtype=torch.float64) + 0.5) * math.pi / 1200
    phi = (torch.arange(2400, dtype=torch.float64) + 0.5) * 2 * math.pi / 2400
    st, ct = torch.sin(theta)[:, None], torch.cos(theta)[:, None]
    v = torch.stack(
        [(st * torch.cos(phi)).flatten(), (st * torch.sin(phi)).flatten(), ct.expand(-1, 2400).flatten()], 1
    )
    Q = c0[0] + 2 * v @ b[0] + ((v @ P[0]) * v).sum(1)
    area = st.expand(-1, 2400).flatten() * (math.pi / 1200) * (2 * math.pi / 2400)  # sums to 4 pi
    log_f = -0.5 * log_det[0] - 0.5 * target.D * Q.log()
    top = log_f.max()
    quadrature = float(top + torch.log((area * (log_f - top).exp()).sum() / (4 * math.pi))) + target.constant
    log_weight, inner, directions_v = directions.evaluate(gram, directions.draw(1, generator))
    weights = (inner[0] - inner[0].max()).exp()
    se = float(weights.std() / weights.mean()) / math.sqrt(len(weights))  # of the mean, relative
    assert abs(float(log_weight[0]) - quadrature) < 4 * se + 1e-6
    assert se < 0.02  # the proposal fits: a Kish ESS far above the grid's worth of checking
    # the mode the proposal is built around is the grid's minimum of Q (to the grid's spacing)
    v_star, _ = Directions._mode(P, b)
    q_star = float(c0[0] + 2 * v_star[0] @ b[0] + v_star[0] @ P[0] @ v_star[0])
    assert q_star <= float(Q.min()) + 1e-9 * float(Q.min())


def _circle_problem(generator, spread: float):
    """``P`` (2 x 2, eigenvalues ``spread`` decades apart), ``b`` and ``c0`` with ``Q_v > 0`` on the
    circle."""
    A = torch.randn(2, 2, generator=generator, dtype=torch.float64) * torch.logspace(
        0, -spread, 2, dtype=torch.float64
    )
    P = A @ A.T
    b = 3 * torch.randn(2, generator=generator, dtype=torch.float64)
    c0 = float(b @ torch.linalg.solve(P + 0.1 * torch.eye(2, dtype=torch.float64), b)) + 0.5
    return P, b, c0


@pytest.mark.parametrize("D", [3, 8, 25])
def test_the_sphere_integral_is_adaptive_quadrature_on_the_circle(D, monkeypatch):
    """k = 2: ``int Q_v^{-D/2}`` over the circle and the direction's mean by scipy's adaptive
    quadrature (on 64 arcs, 1e-13 relative); the contour formula agrees to 1e-10, spectra from
    one to five decades of spread (its trapezoid rule reaches rounding level at the default step);
    the fallback line through 0 to 1e-8."""
    from scipy.integrate import quad

    from factorkit.fit import normalized

    generator = torch.Generator().manual_seed(D)
    for spread in (0.0, 2.0, 5.0):
        P, b, c0 = _circle_problem(generator, spread)
        Pn, bn = P.numpy(), b.numpy()

        def Q(angle, Pn=Pn, bn=bn, c0=c0):
            v = np.array([math.cos(angle), math.sin(angle)])
            return c0 + 2 * bn @ v + v @ Pn @ v

        def integral(f):
            arcs = np.linspace(0, 2 * math.pi, 65)
            return sum(
                quad(f, a, z, epsabs=0, epsrel=1e-13, limit=200)[0]
                for a, z in zip(arcs[:-1], arcs[1:], strict=True)
            )

        reference = integral(lambda t: Q(t) ** (-D / 2))
        mean_reference = [
            integral(lambda t, f=f: f(t) * Q(t) ** (-D / 2)) / reference for f in (math.cos, math.sin)
        ]
        values, vectors = torch.linalg.eigh(P[None])
        c0_t = torch.tensor([c0], dtype=torch.float64)
        expected = torch.tensor(mean_reference, dtype=torch.float64)
        log_I, mean = sphere_integral(values, vectors, b[None], c0_t, D, mean=True)
        assert float(log_I[0]) == pytest.approx(math.log(reference), abs=1e-10)
        torch.testing.assert_close(mean[0], expected, rtol=0, atol=1e-10)
        # the fallback: the line through 0 (valid for every row, more cancellation) where the
        # saddle's line is refused
        real, calls = normalized._on_the_line, []

        def refused_first(*args, real=real, calls=calls):
            log, moment, valid = real(*args)
            if not calls:
                calls.append(1)
                valid = torch.zeros_like(valid)
            return log, moment, valid

        monkeypatch.setattr(normalized, "_on_the_line", refused_first)
        log_I0, mean0 = sphere_integral(values, vectors, b[None], c0_t, D, mean=True)
        monkeypatch.setattr(normalized, "_on_the_line", real)
        assert calls and float(log_I0[0]) == pytest.approx(math.log(reference), abs=1e-8)
        torch.testing.assert_close(mean0[0], expected, rtol=0, atol=1e-8)


def test_the_sphere_integral_is_monte_carlo_on_s4_and_needs_no_exact_mode():
    """k = 5, D = 8: against uniform directions (4e6, a relative standard error below 2e-3 on
    these mildly spread spectra; the mean's error within 5 standard errors), and the same value
    from a multiplier that is not the minimiser's (any one below the spectrum is exact)."""
    from factorkit.fit import normalized

    generator = torch.Generator().manual_seed(11)
    A = torch.randn(3, 5, 5, generator=generator, dtype=torch.float64) * torch.logspace(
        0, -0.5, 5, dtype=torch.float64
    )
    P = A @ A.transpose(1, 2)
    b = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    c0 = 2 * b.norm(dim=1) + 2.0  # Q >= 2 on the sphere, a few times that at most: a flat weight
    values, vectors = torch.linalg.eigh(P)
    log_I, mean = sphere_integral(values, vectors, b, c0, 8, mean=True)
    log_sphere = math.log(2) + 2.5 * math.log(math.pi) - math.lgamma(2.5)
    for i in range(3):
        v = torch.randn(4_000_000, 5, generator=generator, dtype=torch.float64)
        v = v / v.norm(dim=1, keepdim=True)
        w = (c0[i] + 2 * v @ b[i] + ((v @ P[i]) * v).sum(1)).pow(-4.0)
        se = float(w.std() / w.mean()) / math.sqrt(len(w))
        assert se < 2e-3
        assert abs(float(log_I[i]) - (math.log(float(w.mean())) + log_sphere)) < 4 * se
        moment = (w[:, None] * v).mean(0) / w.mean()
        moment_se = (w[:, None] * (v - moment)).std(0) / w.mean() / math.sqrt(len(w))
        assert bool(((mean[i] - moment).abs() < 5 * moment_se).all())
    # a multiplier half-way to the spectrum from the minimiser's: the same integral
    true_region = normalized._trust_region

    def shifted(values, vectors, b):
        v, lam, c = true_region(values, vectors, b)
        return v, lam - 0.5 * (values[:, 0] - lam).abs() - 0.3, c

    normalized._trust_region = shifted
    try:
        torch.testing.assert_close(sphere_integral(values, vectors, b, c0, 8), log_I, rtol=0, atol=1e-9)
    finally:
        normalized._trust_region = true_region


def test_the_exact_conditional_gen_loss_is_the_directions_weighted_mean_where_they_fit():
    """``E[L_gen | F]`` from the contour against the directions' self-normalized mean over 2^16
    directions on hidden draws where those fit (Kish's ESS above 5% of them, 3,000): within 5 of
    the ratio estimator's standard errors (measured: within 1.3)."""
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    prior = resolve_prior("normalized_gaussian", problem)
    model = DeepFactorization(5, 5, 5, 2, "tanh")
    target = NormalizedInterpolation(problem, model, prior)
    generator = torch.Generator().manual_seed(6)
    gram = _prior_grams(model, prior, 8, generator)
    directions = Directions(target, count=2**16)
    exact = directions.conditional_gen_loss(gram)
    _, inner, v = directions.evaluate(gram, directions.draw(8, generator))
    checked = 0
    for i in range(8):
        w = torch.softmax(inner[i], 0)
        if float(1 / w.square().sum()) < 0.05 * len(w):
            continue
        gen = target.gen_loss(v[i])
        mean = float((w * gen).sum())
        se = float((w.square() * (gen - mean).square()).sum().sqrt())
        assert abs(float(exact[i]) - mean) < 5 * se + 1e-12
        checked += 1
    assert checked >= 6


def test_the_direction_mode_beats_every_random_direction_in_ten_dimensions():
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    prior = resolve_prior("normalized_gaussian", problem)
    model = DeepFactorization(5, 5, 5, 3, "leaky_relu")
    target = NormalizedInterpolation(problem, model, prior)
    generator = torch.Generator().manual_seed(3)
    P, b, c0, _ = _dense_quadratic(target, _prior_grams(model, prior, 6, generator))
    v_star, lam = Directions._mode(P, b)
    torch.testing.assert_close(v_star.norm(dim=1), torch.ones(6, dtype=torch.float64))
    # first-order condition on the sphere: P v* + b = lambda* v*, with lambda* below P's spectrum
    torch.testing.assert_close(P @ v_star[..., None] + b[..., None], lam[:, None, None] * v_star[..., None],
                               rtol=1e-8, atol=1e-8 * float(P.abs().max()))  # fmt: skip
    assert bool((lam <= torch.linalg.eigvalsh(P)[:, 0]).all())
    v = torch.randn(200_000, target.k, generator=generator, dtype=torch.float64)
    v = v / v.norm(dim=1, keepdim=True)
    for i in range(6):
        q_star = c0[i] + 2 * v_star[i] @ b[i] + v_star[i] @ P[i] @ v_star[i]
        assert float(q_star) <= float((c0[i] + 2 * v @ b[i] + ((v @ P[i]) * v).sum(1)).min())


def test_the_mode_finder_stops_where_forty_newton_steps_would_be(monkeypatch):
    """Newton on the secular equation stops once no draw's step exceeds a few float64 eps of its
    spectrum's scale; the mode is then that of all forty steps to rounding (a few eps relative:
    the steps left were at rounding level), on 300 prior draws of a depth-3 leaky ReLU net."""
    from factorkit.fit import normalized

    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    prior = resolve_prior("normalized_gaussian", problem)
    model = DeepFactorization(5, 5, 5, 3, "leaky_relu")
    target = NormalizedInterpolation(problem, model, prior)
    P, b, _, _ = _dense_quadratic(target, _prior_grams(model, prior, 300, torch.Generator().manual_seed(4)))
    early = Directions._mode(P, b)
    monkeypatch.setattr(normalized, "MODE_TOLERANCE", -1.0)  # never settled: all forty steps
    full = Directions._mode(P, b)
    scale = torch.linalg.eigvalsh(P)[:, -1]
    assert bool(((early[1] - full[1]).abs() <= 64 * torch.finfo(torch.float64).eps * scale).all())
    torch.testing.assert_close(early[0], full[0], rtol=0, atol=1e-10)


@pytest.mark.parametrize("depth, activation", [(3, "leaky_relu"), (5, "linear")])
def test_the_numpy_and_torch_kernels_give_one_direction_integral(depth, activation):
    """The contour and the mode's Newton steps run through NumPy by default and through torch
    inside ``torch_kernels()`` (the benchmarks' baseline): the same arithmetic, summed in another
    order, so ``log I``, its pieces and the direction's mean agree to rounding, on 300 prior draws
    whose ``F`` spans many decades at depth 5 (the least-squares route's SVD). The tolerance:
    a few hundred float64 eps of ``|log I|``, the contour's ~100 nodes and the secular equation's
    steps each rounding differently (measured: 4e-14 on values of 30-60)."""
    from factorkit._kernels import torch_kernels

    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    prior = resolve_prior("normalized_gaussian", problem)
    model = DeepFactorization(5, 5, 5, depth, activation)
    directions = Directions(NormalizedInterpolation(problem, model, prior))
    gram = _prior_grams(model, prior, 300, torch.Generator().manual_seed(6))
    fast = (directions.exact_log_weight(gram), directions.conditional_gen_loss(gram))
    with torch_kernels():
        slow = (directions.exact_log_weight(gram), directions.conditional_gen_loss(gram))
    eps = torch.finfo(torch.float64).eps
    assert bool(torch.isfinite(fast[0]).all())
    assert bool(((fast[0] - slow[0]).abs() <= 256 * eps * slow[0].abs().clamp_min(1)).all())
    torch.testing.assert_close(fast[1], slow[1], rtol=256 * eps, atol=0)
    # the mode alone, on the plain quadratic (the importance sampler's route): its multiplier and
    # the minimum
    P, b, _, _ = _dense_quadratic(directions.target, gram)
    v_fast, lam_fast = Directions._mode(P, b)
    with torch_kernels():
        v_slow, lam_slow = Directions._mode(P, b)
    scale = torch.linalg.eigvalsh(P)[:, -1]
    assert bool(((lam_fast - lam_slow).abs() <= 64 * eps * scale).all())
    # the objective there (v* itself moves by ~|b| |d lam| / gap^2 where the gap to P's lowest
    # eigenvalue is tiny: 2e-8 at depth 5, where this P, from K's dense inverse, spans 1e12 and
    # its lowest eigenvalue rounds below zero; the minimum moves by 1e-13 of the spectrum's scale
    # there, measured, against ~1e-15 on the well-conditioned draws; 1e-11 leaves other BLAS room)
    objective = [((v[:, None, :] @ P)[:, 0] * v).sum(1) + 2 * (b * v).sum(1) for v in (v_fast, v_slow)]
    assert bool(((objective[0] - objective[1]).abs() <= 1e-11 * (scale + b.norm(dim=1))).all())


# linear (10 s) in the slow set: the reduction sees the activation only through G = F^T F (one
# code path for all), so the default suite's whole-prior check is tanh's, beside depth 1's closed
# form (linear) and the fixed hidden layer's rejection (leaky ReLU)
@pytest.mark.parametrize("activation", ["tanh", pytest.param("linear", marks=pytest.mark.slow)])
def test_the_whole_posterior_is_rejection_extrapolated_to_eps_zero(activation):
    from factorkit.fit.guess_check import guess_and_check

    problem, prior = _small()
    model = DeepFactorization(2, 2, 3, 3, activation)
    state = normalized_zero_sample(
        problem, model, prior, method="importance", hidden_draws=2**15, target_ess=1e9,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert state["kish_ess"] > 2000
    seen = {}
    for eps in (3e-3, 1e-3):
        result = guess_and_check(problem, model, eps=eps, prior=prior, max_evaluations=4_000_000, seed=1,
                                 keep_samples=False)  # fmt: skip
        gen = result.accepted_gen_loss.double()
        seen[eps] = (
            math.log(result.accepted / result.evaluations) - _log_ball(2, eps),
            1 / math.sqrt(result.accepted),
            float(gen.mean()),
            float(gen.std()) / math.sqrt(len(gen)),
        )
    log_density = (3 * seen[1e-3][0] - seen[3e-3][0]) / 2
    log_density_se = math.hypot(1.5 * seen[1e-3][1], 0.5 * seen[3e-3][1])
    gen_mean = (3 * seen[1e-3][2] - seen[3e-3][2]) / 2
    gen_se = math.hypot(1.5 * seen[1e-3][3], 0.5 * seen[3e-3][3])
    assert abs(state["log_volume"] - log_density) < 4 * math.hypot(state["log_volume_se"], log_density_se)
    assert abs(state["rb"] - gen_mean) < 4 * math.hypot(state["rb_se"], gen_se)


@pytest.mark.slow
def test_on_the_paper_problem_eps_zero_continues_the_smc_curve():
    """Depth 2, linear, the paper's problem (m = m' = 5, n = 15): the interpolating posterior against
    subset simulation at eps = 3e-4 and 1e-4 (constrained pCN on the whole weights, checked against
    rejection elsewhere), its log V - log vol(ball) and L_gen extrapolated to eps = 0 (Richardson).
    The first version of the sampler (directions from the angular central Gaussian of z given F)
    failed this by 2.1 in log p: its weights missed most of the mass; the 2 x 2 checks above did not
    see it (on a circle that proposal is good enough)."""
    from factorkit.fit.smc import subset_simulation

    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    prior = resolve_prior("normalized_gaussian", problem)
    model = DeepFactorization(5, 5, 5, 2, "linear")
    seen = {}
    for eps in (3e-4, 1e-4):
        result = subset_simulation(problem, model, eps=eps, prior=prior, n_particles=1000, runs=16, seed=1,
                                   keep_samples=False)  # fmt: skip
        extra = result.extra
        gen_low, gen_high = result.gen_loss_interval()
        seen[eps] = (extra["log_volume"] - _log_ball(15, eps), extra["log_volume_se"],
                     float(result.gen_loss_mean), (gen_high - gen_low) / (2 * 1.96))  # fmt: skip
    log_density = (3 * seen[1e-4][0] - seen[3e-4][0]) / 2
    log_density_se = math.hypot(1.5 * seen[1e-4][1], 0.5 * seen[3e-4][1])
    state = normalized_zero_sample(problem, model, prior, generator=torch.Generator().manual_seed(1))
    # the O(eps) term of the ball's mean density is what Richardson removes; 0.2 more for what is
    # left of it (the two thresholds' values differ by 0.13 here)
    allowed = 4 * math.hypot(state["log_volume_se"], log_density_se) + 0.2
    assert abs(state["log_volume"] - log_density) < allowed
    # L_gen falls as eps falls (0.035, 0.030, 0.027 at 1e-3, 3e-4, 1e-4): at eps = 0 no higher
    assert state["rb"] < seen[1e-4][2] + 4 * math.hypot(state["rb_se"], seen[1e-4][3])


@pytest.mark.parametrize("path", ["capped", "power"])
def test_tempered_smc_agrees_with_importance_sampling(path):
    problem, prior = _small()
    model = DeepFactorization(2, 2, 3, 3, "tanh")
    importance = normalized_zero_sample(
        problem, model, prior, method="importance", hidden_draws=2**17, target_ess=1e9,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    # the runs as they are: the effort check (tests/test_weights.py) would only add longer runs
    smc = normalized_zero_sample(
        problem, model, prior, method="smc", target_ess=400, check_effort=False, path=path,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    assert smc["method"] == "smc"
    se = math.hypot(importance["log_volume_se"], smc["log_volume_se"])
    assert abs(importance["log_volume"] - smc["log_volume"]) < 4 * se
    assert abs(importance["rb"] - smc["rb"]) < 4 * math.hypot(importance["rb_se"], smc["rb_se"])


def test_marginal_sample_takes_normalized_priors_at_eps_zero_only():
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0)
    model = DeepFactorization(5, 5, 5, 2, "tanh")
    result = marginal_sample(
        problem, model, eps=0.0, prior="normalized_gaussian", target_ess=50, n_samples=50, hidden_draws=2048,
        method="importance", seed=0,
    )  # fmt: skip
    assert result.sampler == "marginal" and result.extra["log_volume"] == -math.inf
    assert math.isfinite(result.extra["log_density"]) and result.accepted > 0
    # float32 problem: the draws are built in float64 and rounded once
    assert float(result.accepted_train_loss.max()) < 1e-10
    with pytest.raises(ValueError, match="exact reduction exists at eps = 0 only"):
        marginal_sample(problem, model, eps=0.01, prior="normalized_gaussian")


def test_heavy_tailed_weights_are_tempered_in_finer_steps(monkeypatch):
    """Where the counted tail index is below ``HEAVY_TAIL_ALPHA`` (the paper's depth-3 linear cell:
    12/11) every temperature keeps ``HEAVY_TEMPER_FRACTION`` of the ESS, elsewhere (depth 2: 20/11)
    ``TEMPER_FRACTION``: the fraction each call of ``next_temperature`` got, through the sampler's
    own path, ``path='power'``. By default (``path='auto'``) the heavy cell takes the capped path,
    which keeps ``TEMPER_FRACTION`` at every level, its caps and the excess's tempered levels at
    its end, and the other the power path at ``TEMPER_FRACTION``."""
    from factorkit.fit import weights

    seen = {"power": [], "capped": []}
    plain_temperature, plain_cap = weights.next_temperature, weights.next_cap

    def spy_temperature(log_weight, beta, fraction):
        seen["power"].append(fraction)
        return plain_temperature(log_weight, beta, fraction)

    def spy_cap(log_weight, cap, fraction):
        seen["capped"].append(fraction)
        return plain_cap(log_weight, cap, fraction)

    monkeypatch.setattr(weights, "next_temperature", spy_temperature)
    monkeypatch.setattr(weights, "next_cap", spy_cap)
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    for depth, heavy in [(3, True), (2, False)]:
        for path in ("power", "auto"):
            for calls in seen.values():
                calls.clear()
            result = marginal_sample(
                problem, DeepFactorization(5, 5, 5, depth, "linear"), eps=0.0, prior="normalized_gaussian",
                method="smc", runs=1, n_particles=40, mcmc_steps=2, target_ess=1, check_effort=False,
                path=path, seed=0,
            )  # fmt: skip
            assert (result.extra["tail_index"] < weights.HEAVY_TAIL_ALPHA) == heavy
            if path == "auto" and heavy:
                assert result.extra["path"] == "capped"
                assert seen["capped"] and set(seen["capped"]) == {weights.TEMPER_FRACTION}
                # the excess's levels at the end (weights.Excess) temper at the plain fraction
                assert seen["power"] and set(seen["power"]) == {weights.TEMPER_FRACTION}
            else:
                assert result.extra["path"] == "power"
                want = weights.HEAVY_TEMPER_FRACTION if heavy else weights.TEMPER_FRACTION
                assert seen["power"] and set(seen["power"]) == {want} and not seen["capped"]


def test_what_the_reduction_does_not_cover_is_refused_by_name():
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0)
    gaussian = resolve_prior("normalized_gaussian", problem)
    assert applies(DeepFactorization(5, 5, 5, 3, "tanh"), gaussian) is None
    assert "relu" in applies(DeepFactorization(5, 5, 5, 2, "relu"), gaussian)
    assert "width 3 < m' = 5" in applies(DeepFactorization(5, 5, 3, 2), gaussian)
    assert "must be Gaussian" in applies(
        DeepFactorization(5, 5, 5, 2), resolve_prior("normalized_uniform", problem)
    )
    assert "not normalized" in applies(DeepFactorization(5, 5, 5, 2), resolve_prior("gaussian", problem))
    with pytest.raises(ValueError, match="relu can zero a hidden unit"):
        NormalizedInterpolation(problem, DeepFactorization(5, 5, 5, 2, "relu"), gaussian)
    # a target norm below the least-norm interpolant's: no matrix of that norm meets y
    small = Prior(normalize=True, target_norm=0.01)
    with pytest.raises(ValueError, match="no matrix of norm target_norm = 0.01 meets the measurements"):
        NormalizedInterpolation(problem, DeepFactorization(5, 5, 5, 2), small)
