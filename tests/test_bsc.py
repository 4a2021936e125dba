"""Binary sparse coding: exact EM step for step at full truncation (against a brute-force EM written
here, state by state), the truncated free energy as a lower bound of the exact likelihood, and
the bars benchmark (every bar found, prior and noise learned)."""

import itertools
import math

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp

from factorkit.methods.bsc import BinarySparseCoding
from factorkit.problems.bars import bars


def brute_force_em(X, W, prior, noise, steps):
    """Exact EM for BSC by enumerating all 2^H states for each sample, one at a time."""
    N, D = X.shape
    H = W.shape[0]
    states = np.array(list(itertools.product([0, 1], repeat=H)), dtype=float)
    trace = []
    for _ in range(steps):
        ss, xs, active, free_energy, posteriors = np.zeros((H, H)), np.zeros((H, D)), 0.0, 0.0, []
        for x in X:
            log_joint = np.array(
                [
                    s.sum() * math.log(prior)
                    + (H - s.sum()) * math.log(1 - prior)
                    - np.sum((x - s @ W) ** 2) / (2 * noise**2)
                    - D / 2 * math.log(2 * math.pi * noise**2)
                    for s in states
                ]
            )
            free_energy += logsumexp(log_joint)
            q = np.exp(log_joint - logsumexp(log_joint))
            posteriors.append(q)
            mean = q @ states
            ss += (states.T * q) @ states
            xs += np.outer(mean, x)
            active += mean.sum()
        W = np.linalg.solve(ss, xs)
        energy = sum(
            weight * np.sum((x - s @ W) ** 2)
            for x, q in zip(X, posteriors, strict=True)
            for s, weight in zip(states, q, strict=True)
        )
        noise = math.sqrt(energy / (N * D))
        prior = active / (N * H)
        trace.append((W.copy(), prior, noise, free_energy / N))
    return trace


def test_full_truncation_is_exact_em_step_for_step():
    rng = np.random.default_rng(0)
    H, D, N = 4, 6, 60
    W_true = rng.normal(size=(H, D)) * 2
    X = (rng.random((N, H)) < 0.3) @ W_true + 0.5 * rng.normal(size=(N, D))
    W0, prior0, noise0 = rng.normal(size=(H, D)), 0.25, 1.0
    expected = brute_force_em(X, W0, prior0, noise0, steps=4)
    model = BinarySparseCoding(H, n_preselect=H, max_active=H, max_iter=4, tol=0.0, anneal_iterations=0)
    model.fit_transform(X, W=W0, prior=prior0, noise=noise0)
    for entry, (_, prior, noise, free_energy) in zip(model.history_, expected, strict=True):
        assert entry["prior"] == pytest.approx(prior, rel=1e-10)
        assert entry["noise"] == pytest.approx(noise, rel=1e-10)
        assert entry["free_energy"] == pytest.approx(free_energy, rel=1e-10)
    np.testing.assert_allclose(model.components_, expected[-1][0], rtol=1e-9, atol=1e-10)


def test_truncated_free_energy_is_a_lower_bound_that_tightens_with_the_truncation():
    X, _, _ = bars(4, 300, seed=1)
    model = BinarySparseCoding(8, n_preselect=5, max_active=2, random_state=0).fit(X)

    def free_energy(selected, active):  # one E-step at the fitted parameters
        probe = BinarySparseCoding(8, n_preselect=selected, max_active=active, max_iter=1, tol=0.0,
                                   anneal_iterations=0)  # fmt: skip
        probe.fit_transform(X, W=model.components_, prior=model.prior_, noise=model.noise_)
        return probe.history_[0]["free_energy"]

    values = [free_energy(5, 2), free_energy(6, 4), free_energy(8, 8)]  # the last: the exact likelihood
    assert values[0] < values[1] < values[2]


def test_bars_are_all_found_with_their_prior_and_noise():
    X, W, S = bars(5, 2000, seed=0)
    model = BinarySparseCoding(10, random_state=0).fit(X)
    correlation = np.corrcoef(np.vstack([W, model.components_]))[:10, 10:]
    rows, cols = linear_sum_assignment(-correlation)
    assert correlation[rows, cols].min() > 0.99
    assert model.prior_ == pytest.approx(0.2, abs=0.02)
    assert model.noise_ == pytest.approx(2.0, rel=0.1)
    codes = model.transform(X)
    # the posterior means decode the latents: 99% of the bits right after rounding
    assert np.mean(np.round(codes[:, cols]) == S[:, rows]) > 0.99


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_components": 0}, ValueError, "n_components must be >= 1"),
        ({"n_components": 4, "n_preselect": 5}, ValueError, "n_preselect must be <= n_components 4"),
        (
            {"n_components": 4, "n_preselect": 3, "max_active": 4},
            ValueError,
            "max_active must be <= n_preselect",
        ),
        ({"n_components": 40, "n_preselect": 30, "max_active": 15}, ValueError, "states per sample"),
        ({"anneal_temperature": 0.5}, ValueError, "anneal_temperature must be >= 1"),
        ({"n_components": 2.5}, TypeError, "n_components must be an integer"),
    ],
)
def test_bad_parameters_are_refused_by_name(kwargs, error, match):
    with pytest.raises(error, match=match):
        BinarySparseCoding(**kwargs).fit(np.random.default_rng(0).normal(size=(20, 5)))


def test_non_finite_data_is_refused():
    X = np.ones((5, 3))
    X[1, 1] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        BinarySparseCoding(2).fit(X)


def test_the_e_step_in_small_blocks_gives_the_same_statistics_and_fit(monkeypatch):
    import torch

    import factorkit.methods._bsc_em as module

    # the E-step itself, whole and in blocks of a few samples, on parameters away from any fit
    # (10 units, 8 preselected: the single-unit states outside the preselection are in play)
    X, _, _ = bars(4, 120, seed=2)
    X = torch.as_tensor(X, dtype=torch.float64)
    W = torch.randn(10, X.shape[1], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    local = module.local_states(8, 4).to(torch.float64)
    blocks = []
    candidates = module.candidate_states
    monkeypatch.setattr(
        module, "candidate_states", lambda Xc, *rest: blocks.append(len(Xc)) or candidates(Xc, *rest)
    )
    whole, whole_means = module.e_step(X, W, 0.2, 0.7, 8, local, temperature=1.5)
    assert blocks == [120]
    monkeypatch.setattr(module, "E_STEP_BYTES", 10_000)
    blocks.clear()
    blocked, blocked_means = module.e_step(X, W, 0.2, 0.7, 8, local, temperature=1.5)
    assert len(blocks) > 10 and sum(blocks) == 120  # blocks of a few samples, every sample once
    # per-sample values are computed the same way in either case; the sums over samples add
    # blocks in another order: a float64 rounding tolerance
    torch.testing.assert_close(blocked_means, whole_means, rtol=1e-12, atol=1e-13)
    for key in ("ss", "xs"):
        torch.testing.assert_close(blocked[key], whole[key], rtol=1e-12, atol=1e-10)
    for key in ("active", "free_energy"):
        assert blocked[key] == pytest.approx(whole[key], rel=1e-12)
    # and the estimator takes the blocked path: three EM steps from the same start agree
    monkeypatch.setattr(module, "E_STEP_BYTES", 2**28)
    short = {"max_iter": 3, "random_state": 0}
    whole_fit = BinarySparseCoding(8, **short).fit(X.numpy())
    monkeypatch.setattr(module, "E_STEP_BYTES", 10_000)
    blocked_fit = BinarySparseCoding(8, **short).fit(X.numpy())
    np.testing.assert_allclose(blocked_fit.components_, whole_fit.components_, atol=1e-10)
    assert blocked_fit.noise_ == pytest.approx(whole_fit.noise_, rel=1e-12)
