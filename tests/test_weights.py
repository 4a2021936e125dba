"""The tempering helpers both marginal samplers share (``factorkit.fit.weights``): the effort
check of :func:`tempered_runs`, on runs whose answers are planted, so what it must decide is known."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from factorkit.fit.smc import effective_sample_size, extension_bounds
from factorkit.fit.weights import (
    EFFORT_FACTOR,
    EXCESS_TAIL,
    Capped,
    Excess,
    Power,
    SingularCache,
    effort_change,
    expected_caps,
    log_mean_exp,
    singular_value_moves,
    temper,
    tempered_runs,
    thin_svd,
)

PARTICLES = 50


def _runs(count: int, steps: int, rng: np.random.Generator, bias) -> list[dict]:
    """``count`` fake runs whose statistics are noise about ``bias(steps)`` (zero: converged)."""
    out = []
    for _ in range(count):
        shift = bias(steps)
        rb = torch.from_numpy(0.05 + shift + 0.01 * rng.standard_normal(PARTICLES))
        out.append({
            "draws": {key: rb.clone() for key in ("W", "train", "gen", "rb")},
            "log_volume": 3.0 + 10 * shift + 0.1 * rng.standard_normal(),
            "mean_log_weight": 20.0 + 100 * shift + 0.5 * rng.standard_normal(),
            "levels": [{"acceptance": 0.3}],
            "evaluations": steps * PARTICLES,
            "distinct": PARTICLES,
        })  # fmt: skip
    return out


def _sampler(bias, seed: int = 0):
    rng = np.random.default_rng(seed)
    calls = []

    def more(count, steps):
        calls.append((count, steps))
        return _runs(count, steps, rng, bias)

    return more, calls


def test_effort_change_sees_a_planted_shift_and_not_noise():
    rng = np.random.default_rng(1)
    same = effort_change(_runs(8, 10, rng, lambda s: 0.0), _runs(4, 40, rng, lambda s: 0.0))
    assert not same["moved"]
    assert max(abs(same[f"{key}_z"]) for key in ("log_volume", "rb", "mean_log_weight")) < 3
    # a shift of 0.02 in L_gen is 0.2 in log V and 2 in the mean log-weight: ~10 se in each
    shifted = effort_change(_runs(8, 10, rng, lambda s: 0.0), _runs(4, 40, rng, lambda s: 0.02))
    assert shifted["moved"]
    assert shifted["rb_z"] > 3 and shifted["log_volume_z"] > 3 and shifted["mean_log_weight_z"] > 3
    assert shifted["rb"][1] - shifted["rb"][0] == pytest.approx(0.02, abs=0.005)
    # runs without a mean log-weight are compared on the other two
    bare = [{k: v for k, v in r.items() if k != "mean_log_weight"} for r in _runs(6, 10, rng, lambda s: 0.0)]
    assert "mean_log_weight" not in effort_change(bare, bare)


def test_converged_runs_are_pooled_without_a_warning():
    more, calls = _sampler(lambda steps: 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = tempered_runs(more, 8, 10.0, PARTICLES, 10, check_effort=True)
    assert calls[:2] == [(8, 10), (4, 10 * EFFORT_FACTOR)]
    assert state["effort"]["converged"] and state["effort"]["mcmc_steps"] == 10
    short, long = state["effort"]["checks"][0]["ess_per_evaluation"]
    assert short > long  # equally good runs: the shorter ones are the cheaper samples
    assert len(state["log_volume_runs"]) == 12  # both groups kept


def test_converged_runs_are_added_where_effective_samples_are_cheaper():
    # The same answer at both efforts (the check does not fire), but the shorter runs' constants
    # scatter by 2 in log Z and their means with them, as in a heavy cell: the pooled ESS of four
    # longer runs is worth more than four times that of eight short ones, so runs are added at
    # the longer steps. (The test above has the reverse: equal runs, the short ones cheaper.)
    rng = np.random.default_rng(5)
    calls = []

    def more(count, steps):
        calls.append((count, steps))
        heavy = steps == 10
        out = []
        for _ in range(count):
            rb = torch.from_numpy(0.05 + (0.01 if heavy else 0.0005) * rng.standard_normal()
                                  + 0.01 * rng.standard_normal(PARTICLES))  # fmt: skip
            out.append({
                "draws": {key: rb.clone() for key in ("W", "train", "gen", "rb")},
                "log_volume": 3.0 + (2.0 if heavy else 0.1) * rng.standard_normal(),
                "mean_log_weight": 20.0 + 0.5 * rng.standard_normal(),
                "levels": [{"acceptance": 0.3}],
                "evaluations": steps * PARTICLES,
                "distinct": PARTICLES,
            })  # fmt: skip
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = tempered_runs(more, 8, 100.0, PARTICLES, 10, check_effort=True)
    check = state["effort"]["checks"][0]
    assert not check["moved"]
    short, long = check["ess_per_evaluation"]
    assert long > short
    assert state["effort"]["converged"] and state["effort"]["mcmc_steps"] == 10 * EFFORT_FACTOR
    assert len(calls) > 2 and all(steps == 10 * EFFORT_FACTOR for _, steps in calls[1:])
    # a target out of reach: the longer runs added stop where the shorter ones' cap would have,
    # in evaluations (the 12 runs so far, then a quarter of the cap's remaining runs)
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = tempered_runs(more, 8, 1e9, PARTICLES, 10, check_effort=True)
    cap = extension_bounds(8)[1]
    assert state["effort"]["mcmc_steps"] == 10 * EFFORT_FACTOR
    assert len(state["log_volume_runs"]) == 12 + (cap - 12) // EFFORT_FACTOR


def test_an_answer_that_moves_with_effort_warns_and_keeps_only_the_longer_runs():
    # the bias halves the shortfall per doubling of the steps, like a chain still drifting
    more, calls = _sampler(lambda steps: -0.2 / steps)
    with pytest.warns(RuntimeWarning, match="moved when its moves per temperature went from 10 to 40"):
        state = tempered_runs(more, 8, 10.0, PARTICLES, 10, check_effort=True)
    assert not state["effort"]["converged"]
    assert state["effort"]["mcmc_steps"] == 10 * EFFORT_FACTOR
    assert all(steps == 10 * EFFORT_FACTOR for _, steps in calls[1:])  # runs added at the longer steps
    assert state["rb"] == pytest.approx(0.05 - 0.2 / 40, abs=0.002)  # the longer runs' answer only
    # what each phase spent, the first runs included though their answer was dropped: every call
    phases = state["effort"]["phases"]
    assert [phases[k]["runs"] for k in ("first", "check")] == [8, 4]
    assert phases["added"]["runs"] == sum(count for count, _ in calls[2:])
    spent = sum(count * steps * PARTICLES for count, steps in calls)  # a fake run's evaluations
    assert sum(p["evaluations"] for p in phases.values()) == spent


def test_without_the_check_nothing_else_runs():
    more, calls = _sampler(lambda steps: -0.2 / steps)
    state = tempered_runs(more, 8, 10.0, PARTICLES, 10)
    assert calls == [(8, 10)]
    phases = {"first": {"runs": 8, "evaluations": 8 * 10 * PARTICLES}, "added": {"runs": 0, "evaluations": 0}}
    assert state["effort"] == {"mcmc_steps": 10, "checks": [], "converged": True, "phases": phases}


def test_runs_are_pooled_by_their_normalizing_constants():
    """Runs that found more of the mass (a larger ``Z_r``) weigh more: ``log V = log mean Z_r``, the
    posterior mean ``sum Z_r m_r / sum Z_r``, its ESS the ratio estimator's, and the draws
    resampled to the same weights (systematic: each run's count within one of its share)."""
    rng = np.random.default_rng(3)
    log_volumes = np.array([1.0, 2.5, 0.0, 1.7])
    runs = []
    for index, log_volume in enumerate(log_volumes):
        rb = torch.from_numpy(0.01 * index + 0.001 * rng.standard_normal(PARTICLES))
        draws = {key: rb.clone() for key in ("W", "train", "gen", "rb")}
        draws["W"] = torch.full((PARTICLES,), float(index))  # which run a pooled draw came from
        runs.append({"draws": draws, "log_volume": log_volume, "levels": [{"acceptance": 0.3}],
                     "evaluations": 1, "distinct": PARTICLES})  # fmt: skip
    state = tempered_runs(lambda count, steps: runs[:count], 4, 1e-9, PARTICLES, 10,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    z = np.exp(log_volumes)
    weights = z / z.sum()
    means = np.array([float(r["draws"]["rb"].mean()) for r in runs])
    assert state["log_volume"] == pytest.approx(math.log(z.mean()), rel=1e-12)
    assert state["log_volume_se"] == pytest.approx(z.std(ddof=1) / 2 / z.mean(), rel=1e-12)
    assert state["rb"] == pytest.approx(float((weights * means).sum()), rel=1e-12)
    np.testing.assert_allclose(state["run_weights"], weights, rtol=1e-12)
    counts = np.bincount(state["draws"]["W"].long().numpy(), minlength=4)
    assert counts.sum() == 4 * PARTICLES and np.all(np.abs(counts - weights * 4 * PARTICLES) <= 1)
    spread = 4 / 3 * float((weights**2 * (means - (weights * means).sum()) ** 2).sum())
    within = float(sum(w * r["draws"]["rb"].var() for w, r in zip(weights, runs, strict=True)))
    groups = [r["draws"]["rb"] for r in runs]
    plain = effective_sample_size(groups, PARTICLES)  # runs * within / between, equal weights
    share = 1 / (weights**2).sum() / 4  # Kish's share of the four runs the weights leave
    assert state["ess"] == pytest.approx(min(within / spread, plain * share), rel=1e-10)
    # equal weights: the plain formula
    assert effective_sample_size(groups, PARTICLES, np.full(4, 0.25)) == pytest.approx(plain, rel=1e-12)
    # one run carrying everything: no spread for the delta method to see, worth one run
    lopsided = np.array([1 - 3e-9, 1e-9, 1e-9, 1e-9])
    assert effective_sample_size(groups, PARTICLES, lopsided) == pytest.approx(plain / 4, rel=1e-6)


def test_singular_value_moves_keep_their_target_and_reach_it():
    # Target: standard normal latents times w^beta with log w = -lam ||u||^2 (exactly
    # N(0, 1 / (1 + 2 lam)) per entry), from the prior's N(0, 1): only singular values differ
    # between the two laws, so the moves alone must get there. Then a weight that also sees a
    # direction (log w = -lam u_00^2, exactly u_00 ~ N(0, 1 / (1 + 2 lam))), started in its law:
    # the moves must keep it (their Jacobian and prior terms are what is tested).
    generator = torch.Generator().manual_seed(0)
    count, lam = 2000, 0.7

    def draw(shape, sd=1.0):
        return sd * torch.randn(count, *shape, generator=generator, dtype=torch.float64)

    def run(latent, log_weight_of, moves):
        # one SingularCache over all the moves, as a block of tempered SMC's moves shares one
        value, spread, cache = log_weight_of(latent, None), 1.0, SingularCache()
        for _ in range(moves):
            latent, value, spread, rate = singular_value_moves(
                latent, value, log_weight_of, Power(1.0), spread, 0.3, generator, cache=cache
            )
        assert 0.1 < rate < 0.6
        return latent

    sd = 1 / math.sqrt(1 + 2 * lam)

    def shrink(latent, _):
        return -lam * sum(u.square().sum((1, 2)) for u in latent)

    latent = run([draw((4, 3)), draw((3, 3))], shrink, 80)
    for u in latent:
        ours, exact = torch.linalg.svdvals(u), torch.linalg.svdvals(draw(u.shape[1:], sd))
        for column in range(ours.shape[1]):
            assert stats.ks_2samp(ours[:, column], exact[:, column]).pvalue > 1e-3
    start = [draw((4, 3)), draw((3, 3))]
    start[0][:, 0, 0] *= sd
    (first, _) = run(start, lambda L, _: -lam * L[0][:, 0, 0].square(), 30)
    assert stats.kstest(first[:, 0, 0].numpy() / sd, "norm").pvalue > 1e-3
    assert stats.kstest(first[:, 1, 2].numpy(), "norm").pvalue > 1e-3
    # ``layers``: only the first latents move, the others (the normalized sampler's directions) stay
    held = draw((5,))
    moved, kept = singular_value_moves(
        [start[0], held],
        torch.zeros(count),
        lambda L, _: torch.zeros(count),
        Power(1.0),
        1.0,
        0.3,
        generator,
        1,
    )[0]
    assert torch.equal(kept, held) and not torch.equal(moved, start[0])


@pytest.mark.parametrize("shape", [(5, 5), (7, 3), (3, 7)])
def test_thin_svd_is_that_of_the_construction(shape):
    """``U diag(s) V^T`` with known, separated singular values (in half the matrices one of them is
    1e-7 of the largest, below ``SINGULAR_RTOL``: the SVD's path): every value, and every pair's
    rank-one product ``l r^T`` (free of the pair's sign), against the construction. A squared
    value carries an absolute error of eps times the largest squared, a vector eps times the
    largest over the smaller of its value and its gap to the others: 100 times that bounds both."""
    generator = torch.Generator().manual_seed(0)
    count, (rows, cols) = 400, shape
    q = min(rows, cols)
    exact = torch.tensor([4.0, 2.0, 1.0, 0.5][: q - 1] + [0.25], dtype=torch.float64).repeat(count, 1)
    exact[::2, -1] = 1e-7
    gap = torch.tensor([2.0, 1.0, 0.5, 0.25][: q - 1] + [0.25], dtype=torch.float64).repeat(count, 1)
    gap[::2, -1] = 1e-7  # the tiny value's gap (and the one above it keeps its own)
    gap = torch.minimum(gap, exact)

    def orthonormal(size):
        return torch.linalg.qr(torch.randn(count, size, q, generator=generator, dtype=torch.float64))[0]

    U, V = orthonormal(rows), orthonormal(cols)
    u = U @ torch.diag_embed(exact) @ V.transpose(1, 2)
    sv, left, right = thin_svd(u)
    eps = torch.finfo(torch.float64).eps
    assert (sv.square() - exact.square()).abs().max() <= 100 * eps * 4.0**2  # what the move uses
    for j in range(q):
        want = U[:, :, j, None] * V[:, None, :, j]
        got = left[:, :, j, None] * right[:, None, :, j]
        # the tiny value's vectors come from the SVD: eps times the largest over its gap
        assert ((got - want).abs().amax((1, 2)) <= 100 * eps * 4.0 / gap[:, j]).all()


def test_singular_cache_follows_the_moves():
    """Through a block of moves whose accepted changes rescale one value each, the cache's
    decompositions stay those of the current latents: they rebuild each matrix to rounding and
    their values are its singular values (the cache never decomposes a matrix twice, so a missed
    update would leave the old value). Width-5 and width-160-like shapes, two layers."""
    generator = torch.Generator().manual_seed(1)
    count = 300
    latent = [
        torch.randn(count, *shape, generator=generator, dtype=torch.float64) for shape in ((5, 5), (16, 3))
    ]
    target = torch.randn(count, 5, 5, generator=generator, dtype=torch.float64)

    def log_weight_of(latent, _):
        return -((latent[0] - target).square().sum((1, 2)) + latent[1].square().sum((1, 2)))

    value, spread, cache, rates = log_weight_of(latent, None), 1.0, SingularCache(), []
    for _ in range(20):
        latent, value, spread, rate = singular_value_moves(
            latent, value, log_weight_of, Power(1.0), spread, 0.3, generator, cache=cache
        )
        rates.append(rate)
    assert 0.05 < np.mean(rates) < 0.9  # moves were accepted and rejected
    eps = torch.finfo(torch.float64).eps
    everyone = torch.arange(count)
    for index, u in enumerate(latent):
        sv, left, right = cache.triples(index, u, everyone)
        largest = torch.linalg.svdvals(u)
        rebuilt = left @ torch.diag_embed(sv) @ right.transpose(1, 2)
        # 20 rank-one updates, each exact to a few eps of the largest value
        assert ((rebuilt - u).abs().amax((1, 2)) <= 1e3 * eps * largest[:, 0]).all()
        assert torch.allclose(
            sv.sort(1, descending=True).values, largest, rtol=0, atol=1e3 * eps * float(largest.max())
        )


@pytest.mark.parametrize("fraction", [0.5, 0.8])
@pytest.mark.parametrize("scale", [0.3, 0.01, 1e-4])
def test_expected_temperatures_follow_the_exact_schedule_of_a_gaussian_weight(scale, fraction):
    """Prior ``N(0, 1)`` and ``log w = -x^2 / (2 scale^2)``: the tempered target at ``beta`` is
    ``N(0, 1 / a)``, ``a = 1 + beta / scale^2``, and the increment ``w^d`` keeps the ESS fraction
    ``a sqrt(a + 2e) / ((a + e) sqrt(a))``, ``e = d / scale^2``, in closed form. The schedule that
    keeps ``fraction`` at every step, by bisection on that, against the estimate from 200,000 prior
    draws: the same count (a temperature more or fewer where the last step falls near 1)."""
    from factorkit.fit.weights import expected_temperatures

    def kept(beta, step):
        a, e = 1 + beta / scale**2, step / scale**2
        return a * math.sqrt(a + 2 * e) / ((a + e) * math.sqrt(a))

    beta, exact = 0.0, 0
    while beta < 1.0:
        exact += 1
        if kept(beta, 1 - beta) >= fraction:
            break
        low, high = 0.0, 1 - beta
        for _ in range(80):
            middle = (low + high) / 2
            low, high = (middle, high) if kept(beta, middle) >= fraction else (low, middle)
        beta += low
    x = np.random.default_rng(0).standard_normal(200_000)
    estimate = expected_temperatures(-(x**2) / (2 * scale**2), None if fraction == 0.5 else fraction)
    assert exact >= 1 and abs(estimate - exact) <= 1
    assert expected_temperatures(np.full(5, -np.inf)) == 0


@pytest.mark.parametrize("path", ["capped", "power", "excess"])
def test_every_path_reaches_a_pole_with_its_normalizing_constant(path):
    """Prior ``x ~ N(0, 1)`` and ``w = |x|^-q``, ``q = 0.75``: under the prior ``P(w > t) =
    P(|x| < t^(-1/q))`` falls as ``t^(-4/3)``, a tail index below 1.5 like the deep cells' (infinite
    variance, a posterior at the pole). Exactly, ``Z = E|x|^-q = 2^(-q/2) Gamma((1 - q)/2) /
    sqrt(pi)`` and under the posterior ``x^2 ~ Gamma((1 - q)/2, scale 2)``: mean ``1 - q`` and
    ``P(x^2 < 1e-4)`` 0.31, the pole's share. Sixteen runs of 400 particles pooled by their
    constants (:func:`tempered_runs`' estimator): ``log Z`` within 4 standard errors of the runs'
    spread, and both posterior figures within 4 of the ratio estimator's.

    ``'excess'``: the capped path told the tail index, so it ends with :class:`Excess` levels
    (their steps within the bound :data:`EXCESS_TAIL` sets, the last at ``beta = 1`` on the last
    cap), with ``x`` a ``1 x 1`` matrix latent so that half the moves scale ``|x|``
    (:func:`singular_value_moves`), as on the hidden layers: the excess's targets sit in the pole,
    where pCN alone does not reach in one dimension. Over the seeds 0-39 of this test (``python
    benchmarks/bench_excess_end.py pole``) its standardized error of ``log Z`` had the mean +0.36
    and the range -2.5 to +2.0, of the pole's share -0.44 and -3.1 to +2.1. ``'capped'`` (ending
    with the jump) and ``'power'`` keep the pCN moves of the first version of this test: there
    (and with the scale moves) both fall 1.3-2.4 standard errors low in ``log Z`` and 1.4-3.4 in
    the pole's share on average at this population, the jump's infinite-variance increment and
    tempering's, so for them this seed checks the machinery, not the population bias."""
    q, runs, particles = 0.75, 16, 400
    excess = path == "excess"
    tail_alpha = 1 / q if excess else None
    exact_log_z = -q / 2 * math.log(2) + math.lgamma((1 - q) / 2) - 0.5 * math.log(math.pi)
    shape = (1 - q) / 2
    exact = {"mean": 1 - q, "pole": float(stats.gamma.cdf(1e-4, shape, scale=2))}
    generator = torch.Generator().manual_seed(11)
    log_volumes, figures = [], {"mean": [], "pole": []}
    for _ in range(runs):
        start = [torch.randn(particles, 1, 1, generator=generator, dtype=torch.float64)]
        if not excess:
            start = [start[0][:, :, 0]]  # a vector latent: pCN moves only
        latent, value, log_volume, levels, _ = temper(
            lambda L, _f: -q * L[0].flatten(1)[:, 0].abs().log(), start, particles, 10, 0.3, generator,
            nothing="none", screen=False, matrices=int(excess), path="power" if path == "power" else "capped",
            tail_alpha=tail_alpha,
        )  # fmt: skip
        key = "cap" if path == "capped" else "beta"
        assert levels[-1][key] == (math.inf if path == "capped" else 1.0)
        if excess:
            betas = [0.0] + [level["beta"] for level in levels if "beta" in level]
            assert math.isfinite(levels[-1]["cap"]) and len(betas) >= 6  # 5 steps at least (alpha 4/3)
            assert all(
                b - a <= (1 / q - a) / EXCESS_TAIL + 1e-12 for a, b in zip(betas[:-1], betas[1:], strict=True)
            )
            assert {level["cap"] for level in levels if "beta" in level} == {levels[-1]["cap"]}
        x = latent[0].flatten(1)[:, 0]
        assert torch.equal(value, -q * x.abs().log())  # the values are the uncapped log w
        squares = x.square()
        log_volumes.append(log_volume)
        figures["mean"].append(float(squares.mean()))
        figures["pole"].append(float((squares < 1e-4).double().mean()))
    log_volumes = np.array(log_volumes)
    share = np.exp(log_volumes - log_volumes.max())
    share /= share.sum()
    spread = np.exp(log_volumes - log_mean_exp(log_volumes))
    log_z_se = float(spread.std(ddof=1) / math.sqrt(runs))
    assert abs(log_mean_exp(log_volumes) - exact_log_z) < 4 * log_z_se
    assert log_z_se < 0.1  # the check has power: a constant off by 10% is seen
    for name, values in figures.items():
        values = np.array(values)
        pooled = float((share * values).sum())
        se = math.sqrt(float((share**2 * (values - pooled) ** 2).sum()))
        assert abs(pooled - exact[name]) < 4 * se + 0.01 * exact[name], (name, pooled, exact[name], se)


def test_the_levels_accept_as_their_targets_say():
    """The Metropolis log ratio of each level against its target written out, and the floor a
    screened proposal must pass: a proposal at or below it is exactly one the test rejects."""
    current = torch.tensor([0.0, 2.0, 5.0, 1.0], dtype=torch.float64)
    proposed = torch.tensor([1.0, 6.0, -math.inf, 0.5], dtype=torch.float64)
    capped = Capped(3.0)
    expected = torch.minimum(proposed, torch.tensor(3.0)) - torch.minimum(current, torch.tensor(3.0))
    assert torch.equal(capped.log_ratio(proposed, current)[:2], expected[:2])
    assert capped.log_ratio(proposed, current)[2] == -math.inf
    assert float(capped.log_ratio(proposed, current)[3]) == -0.5
    power = Power(0.25)
    assert torch.allclose(power.log_ratio(proposed[[0, 1, 3]], current[[0, 1, 3]]),
                          0.25 * (proposed - current)[[0, 1, 3]], rtol=1e-15, atol=0)  # fmt: skip
    excess = Excess(3.0, 0.5, 4 / 3)  # log target min(l, 3) + 0.5 max(l - 3, 0)
    inside = [proposed[0] - current[0], 3.0 + 1.5 - 2.0, -math.inf, proposed[3] - current[3]]
    assert torch.allclose(excess.log_ratio(proposed, current), torch.tensor(inside, dtype=torch.float64),
                          rtol=1e-15, atol=0)  # fmt: skip
    uncapped = Excess(-math.inf, 0.5, 4 / 3)  # no cap: log target 0.5 l, the power path's
    assert torch.equal(uncapped.log_ratio(proposed, current), Power(0.5).log_ratio(proposed, current))
    log_u = torch.tensor([-0.1, -1.0, -2.0, -0.3], dtype=torch.float64)
    for level in (capped, power, excess, uncapped):
        floor = level.floor(current, log_u)
        tiny = 1e-9
        assert bool((log_u < level.log_ratio(floor + tiny, current)).all())
        assert not bool((log_u < level.log_ratio(floor - tiny, current)).any())
    # the first capped level starts from the prior: its increments are the capped weights themselves
    ell = np.array([-1.0, 0.5, 2.0, -np.inf])
    assert np.array_equal(Capped(-math.inf).increment(ell, Capped(0.0)), [-1.0, 0.0, 0.0, -np.inf])
    assert np.array_equal(Capped(0.0).increment(ell, Capped(math.inf)), [0.0, 0.5, 2.0, -np.inf])
    # toward the excess levels: the excess's power, the same from the cap as from its beta = 0
    assert np.array_equal(Capped(0.0, 1.2).increment(ell, Excess(0.0, 0.25, 1.2)), [0.0, 0.125, 0.5, -np.inf])
    assert np.array_equal(
        Excess(0.0, 0.25, 1.2).increment(ell, Excess(0.0, 0.5, 1.2)), [0.0, 0.125, 0.5, -np.inf]
    )
    # from the prior, the power path's increments
    assert np.array_equal(Capped(-math.inf, 1.2).increment(ell, Excess(-math.inf, 0.25, 1.2)),
                          [-0.25, 0.125, 0.5, -np.inf])  # fmt: skip
    with pytest.raises(ValueError, match="alpha"):
        Capped(0.0, 1.0)  # no proper posterior: E[w] is infinite


def test_a_capped_path_told_the_tail_index_ends_with_the_excess_levels_where_it_would_jump():
    """A capped level that would step to the uncapped weight steps to an :class:`Excess` level at
    its own cap instead, when it knows ``alpha`` (and :data:`EXCESS_END` is on), at most the step
    ``alpha / EXCESS_TAIL`` from ``beta = 0``; from the prior (``cap = -inf``) that is the power
    path in the same bounded steps."""
    from factorkit.fit import weights

    ell = np.random.default_rng(1).standard_normal(2000)
    assert Capped(-math.inf, 1.2).following(0.1 * ell, 0.5) == Excess(-math.inf, 1.2 / EXCESS_TAIL, 1.2)
    assert Capped(-math.inf).following(0.1 * ell, 0.5) == Capped(math.inf)
    level = Capped(1.0, 1.2).following(ell, 0.5)
    assert level == Excess(1.0, 1.2 / EXCESS_TAIL, 1.2)  # light excess: the bound binds
    assert Capped(1.0).following(ell, 0.5) == Capped(math.inf)
    weights.EXCESS_END = False
    try:
        assert Capped(1.0, 1.2).following(ell, 0.5) == Capped(math.inf, 1.2)
    finally:
        weights.EXCESS_END = True


@pytest.mark.parametrize("alpha", [None, 1.5])
@pytest.mark.parametrize("fraction", [0.5, 0.8])
@pytest.mark.parametrize("sigma", [1.0, 1.5])
def test_expected_caps_follow_the_exact_schedule_of_a_lognormal_weight(sigma, fraction, alpha):
    """``log w ~ N(0, sigma^2)`` under the prior: the capped target at ``C = e^c`` weighs by
    ``a = min(w, C)``, and the increment ``b / a`` (``b = min(w, C')``) keeps the ESS fraction
    ``(E b)^2 / (E a E[b^2 / a])``, every term in closed form by ``E[w^p; w <= C] = e^(p^2 sigma^2
    / 2) Phi((c - p sigma^2) / sigma)``: ``E[b^2 / a] = E[w; w <= C] + E[w^2; C < w <= C'] / C +
    C'^2 P(w > C') / C``. The schedule that keeps ``fraction`` at every level, by bisection on
    that, against the estimate from 200,000 draws: within one level. (Where ``w``'s tail index
    is 2 or less, the uncapped increment has infinite variance under every capped target, so an
    exact schedule never ends and a population's ends where its largest weights are: no count to
    test against.) With ``alpha`` (a bound the lognormal's own infinite tail index does not need,
    imposed to test it), the levels after the last cap are the excess's: at ``beta`` the target
    weighs by ``a = w`` below ``C`` and ``C^(1 - beta) w^beta`` above, and the increment to
    ``beta + d`` is ``(w / C)^d`` above ``C``, every mean in closed form by ``E[w^p; w > C]``;
    each step the largest that keeps the fraction, at most ``(alpha - beta) / EXCESS_TAIL``."""
    phi = stats.norm.cdf

    def below(c, p):  # E[w^p; w <= e^c]
        return math.exp(p * p * sigma**2 / 2) * phi((c - p * sigma**2) / sigma)

    def above(c):  # P(w > e^c)
        return 1 - phi(c / sigma)

    def mean_min(c):
        return below(c, 1) + math.exp(c) * above(c)

    def kept(c, following):  # c None: from the prior (a = 1); following inf: uncapped
        if following == math.inf:
            mean_b, square = below(math.inf, 1), below(math.inf, 2)
            if c is None:
                return mean_b**2 / square
            return mean_b**2 / (mean_min(c) * (below(c, 1) + (square - below(c, 2)) / math.exp(c)))
        mean_b = mean_min(following)
        if c is None:
            return mean_b**2 / (below(following, 2) + math.exp(2 * following) * above(following))
        second = below(c, 1) + (below(following, 2) - below(c, 2) + math.exp(2 * following)
                                * above(following)) / math.exp(c)  # fmt: skip
        return mean_b**2 / (mean_min(c) * second)

    c, exact = None, 0
    while True:
        exact += 1
        if kept(c, math.inf) >= fraction:
            break
        low, high = (-10 * sigma if c is None else c), 10 * sigma
        for _ in range(100):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if kept(c, middle) >= fraction else (low, middle)
        c = low
    if alpha is not None:  # the excess's levels replace the jump's

        def excess_mean(beta, power):  # E[a (w / C)^power] at the level beta
            upper = math.exp((beta + power) ** 2 * sigma**2 / 2) * (
                1 - phi((c - (beta + power) * sigma**2) / sigma)
            )
            return below(c, 1) + math.exp(c * (1 - beta - power)) * upper

        def excess_kept(beta, step):
            return excess_mean(beta, step) ** 2 / (excess_mean(beta, 0) * excess_mean(beta, 2 * step))

        exact, beta = exact - 1, 0.0
        while beta < 1:
            exact += 1
            top = min(beta + (alpha - beta) / EXCESS_TAIL, 1.0)
            if excess_kept(beta, top - beta) >= fraction:
                beta = top
                continue
            low, high = 0.0, top - beta
            for _ in range(100):
                middle = 0.5 * (low + high)
                low, high = (middle, high) if excess_kept(beta, middle) >= fraction else (low, middle)
            beta += low
    log_weight = sigma * np.random.default_rng(0).standard_normal(200_000)
    estimate = expected_caps(log_weight, None if fraction == 0.5 else fraction, alpha)
    assert exact >= 2 and abs(estimate - exact) <= 1, (estimate, exact)
    assert expected_caps(np.full(5, -np.inf)) == 0


# ---------------------------------------------------------------- the Pareto shape of the weights
@pytest.mark.parametrize("alpha", [1.0, 2.0, 4.0])
def test_pareto_k_recovers_the_tail_index_of_planted_weights(alpha):
    """Weights with ``P(w > t) = t^-alpha`` have the shape ``1 / alpha``: the fit's mean over five
    samples of 20,000 is within 0.1 of it (its standard error there is about (1 + k) / sqrt(M) / sqrt(5)
    ~ 0.03-0.04 with M = 424 tail points; the PSIS prior pulls it a little towards 1/2)."""
    from factorkit.fit.weights import pareto_k

    fits = [pareto_k(np.log1p(np.random.default_rng(seed).pareto(alpha, 20_000))) for seed in range(5)]
    assert np.mean(fits) == pytest.approx(1 / alpha, abs=0.1)


def test_pareto_k_of_light_and_bounded_weights_and_its_invariances():
    """Bounded weights have a negative shape, log-normal ones (all moments finite) a small one; the
    shape is that of the weights' law, so adding a constant to every log-weight (a common scale)
    changes nothing but rounding; too few finite weights give ``nan``."""
    from factorkit.fit.weights import pareto_k

    rng = np.random.default_rng(0)
    assert pareto_k(np.log(rng.random(10_000))) < -0.5
    lognormal = rng.standard_normal(20_000)
    assert 0 < pareto_k(lognormal) < 0.3
    assert pareto_k(lognormal + 700.0) == pytest.approx(pareto_k(lognormal), abs=1e-9)
    assert math.isnan(pareto_k(np.r_[np.zeros(19), np.full(100, -np.inf)]))


def test_heavy_tail_check_hands_over_or_warns_above_the_limit():
    """Up to ``PARETO_K_LIMIT`` (and at ``nan``) an importance run stands silently; above it,
    ``auto`` (give_up) hands it over and an explicit importance run warns and stands."""
    from factorkit.fit.weights import PARETO_K_LIMIT, heavy_tail_checked

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert heavy_tail_checked(PARETO_K_LIMIT, True, 100) and heavy_tail_checked(math.nan, False, 100)
        assert not heavy_tail_checked(PARETO_K_LIMIT + 0.01, True, 100)
    with pytest.warns(RuntimeWarning, match="Pareto shape 0.80"):
        assert heavy_tail_checked(0.8, False, 100)


def test_importance_sampling_reports_the_pareto_shape_of_its_weights():
    """The marginal sampler's importance runs report ``pareto_k``: small where the counted tail
    index of the eps = 0 weight is large (width 20, rank 1, n = 15: alpha = 8; 0.27-0.30 over three
    seeds of 20,000 draws), above the limit where it is 8/7 (``width_rank2``'s width-5 cell: infinite
    variance; 1.09-1.56 over four seeds), with the warning of an explicit importance run. Tempered SMC
    runs carry nan."""
    from factorkit.fit.marginal_sampler import marginal_sample
    from factorkit.models.deep import DeepFactorization
    from factorkit.problems import make_sensing_problem

    light = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the ESS target is not the point here
        run = marginal_sample(light, DeepFactorization(5, 5, 20, 2, "linear"), eps=0.0, method="importance",
                              hidden_draws=8192, target_ess=10**6, seed=0, keep_samples=False)  # fmt: skip
    assert run.extra["method"] == "importance" and run.extra["pareto_k"] < 0.5
    heavy = make_sensing_problem(5, 5, rank=2, n=22, seed=0, dtype="float64")
    model = DeepFactorization(5, 5, 5, 2, "linear")
    with pytest.warns(RuntimeWarning, match="Pareto shape"):
        run = marginal_sample(heavy, model, eps=0.0, method="importance", hidden_draws=20_000,
                              target_ess=10**6, seed=0, keep_samples=False)  # fmt: skip
    assert run.extra["pareto_k"] > 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        run = marginal_sample(heavy, model, eps=0.0, method="smc", runs=2, n_particles=100, target_ess=10,
                              check_effort=False, seed=0, keep_samples=False)  # fmt: skip
    assert math.isnan(run.extra["pareto_k"])
