"""The core computations on every device: the same numbers on CUDA as on the CPU.

Every test takes the ``device`` fixture (``tests/conftest.py``): it runs on the CPU and, where a
CUDA device exists, again on it; on a CPU-only machine the CUDA half is skipped with its reason
printed in pytest's summary (``-rs``). Exact-arithmetic paths (float64) must agree to rounding;
random streams differ between devices, so samplers are compared in distribution.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from factorkit._validation import resolve_device
from factorkit.experiments import StudyConfig
from factorkit.experiments.run import Job, run_job
from factorkit.fit.gd import train_gd
from factorkit.fit.guess_check import guess_and_check
from factorkit.fit.smc import subset_simulation
from factorkit.methods.boolean import BooleanMF
from factorkit.methods.nmf import NMF
from factorkit.models import DeepFactorization
from factorkit.optim import Adafactor
from factorkit.problems import make_sensing_problem


def test_losses_and_end_to_end_match_the_cpu(device):
    problem = make_sensing_problem(5, 4, rank=2, n=12, seed=3, dtype="float64")
    model = DeepFactorization(5, 4, 7, 3, "tanh")
    weights = model.init_weights(50, 0.5, torch.Generator().manual_seed(1), dtype=torch.float64)
    W = model.end_to_end(weights)
    moved = model.end_to_end([w.to(device) for w in weights])
    assert moved.device.type == device
    torch.testing.assert_close(moved.cpu(), W, rtol=1e-12, atol=1e-14)
    for cpu, other in zip(problem.losses(W), problem.to(device).losses(moved), strict=True):
        torch.testing.assert_close(other.cpu(), cpu, rtol=1e-12, atol=1e-14)


def test_gd_trajectory_matches_the_cpu(device):
    problem = make_sensing_problem(4, 4, rank=1, n=10, seed=2, dtype="float64")
    model = DeepFactorization(4, 4, 6, 3)
    options = {"seeds": [0, 1, 2], "init_scale": 0.1, "lr": 0.2, "max_steps": 400, "progress": False}
    cpu = train_gd(problem, model, **options)
    other = train_gd(problem.to(device), model, **options)
    assert float(cpu.train_loss.max()) < 2e-3  # it trained (from ~0.06)
    torch.testing.assert_close(other.W.cpu(), cpu.W, rtol=1e-9, atol=1e-11)


def test_rejection_sampler_on_device_accepts_exactly_below_eps_at_the_cpu_rate(device):
    problem = make_sensing_problem(4, 4, rank=1, n=8, seed=2)  # float32, the G&C default
    model = DeepFactorization(4, 4, 6, 2)
    runs = {
        where: guess_and_check(
            problem.to(where),
            model,
            eps=0.2,
            max_evaluations=200_000,
            chunk_size=8192,
            seed=4,
            progress=False,
        )
        for where in ("cpu", device)
    }
    result = runs[device]
    assert result.accepted_W.device.type == device and result.accepted_W.dtype == torch.float32
    train, _ = problem.to(dtype="float64").losses(result.accepted_W.cpu().double())
    assert bool((train < 0.2 + 1e-5).all())  # accepted draws are below the threshold
    table = [[r.accepted, r.evaluations - r.accepted] for r in runs.values()]
    assert min(r.accepted for r in runs.values()) > 1000
    if device != "cpu":  # the same stream on the CPU; another generator on CUDA
        assert stats.chi2_contingency(table).pvalue > 1e-3


def test_smc_volume_on_device_agrees_with_the_cpu(device):
    problem = make_sensing_problem(4, 4, rank=1, n=8, seed=2, dtype="float64")
    model = DeepFactorization(4, 4, 4, 2)
    estimates = []
    for where in ("cpu", device):
        result = subset_simulation(
            problem.to(where), model, eps=0.05, prior="gaussian", n_particles=1000, runs=4, seed=3
        )
        estimates.append(result.log_volume)
    (a, a_se), (b, b_se) = estimates
    assert math.isfinite(a) and a < math.log(0.05)  # a rare event for the prior
    assert abs(a - b) <= 4 * math.hypot(a_se, b_se) + 1e-12


def test_nmf_and_boolean_mf_on_device_match_the_cpu(device):
    rng = np.random.default_rng(0)
    X = rng.random((40, 3)) @ rng.random((3, 30))
    fits = [
        NMF(3, solver="hals", max_iter=60, tol=0, random_state=0, device=d).fit(X) for d in ("cpu", device)
    ]
    np.testing.assert_allclose(fits[1].components_, fits[0].components_, rtol=1e-8, atol=1e-10)
    B = (rng.random((30, 2)) < 0.4).astype(float) @ (rng.random((2, 25)) < 0.4).astype(float) > 0
    boolean = [
        BooleanMF(2, max_iter=200, random_state=0, device=d, dtype="float64").fit(B.astype(float))
        for d in ("cpu", device)
    ]
    np.testing.assert_allclose(boolean[1].components_, boolean[0].components_, rtol=1e-7, atol=1e-9)


def test_adafactor_steps_match_the_cpu(device):
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    target = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    finals = []
    for where in ("cpu", device):
        weight = start.clone().to(where).requires_grad_()
        optimizer = Adafactor([weight], lr=1e-2, relative_step=False)
        for _ in range(20):
            optimizer.zero_grad()
            ((weight - target.to(where)) ** 2).sum().backward()
            optimizer.step()
        finals.append(weight.detach().cpu())
    assert float((finals[0] - start).abs().max()) > 1e-2  # it moved
    torch.testing.assert_close(finals[1], finals[0], rtol=1e-10, atol=1e-12)


def test_study_jobs_run_on_device(device):
    config = StudyConfig.from_dict(
        {
            "name": "devices",
            "seeds": 2,
            "problem": {"m": 4, "m2": 4, "n": 8},
            "grid": {"width": [4], "depth": [2], "method": ["gd", "gc"]},
            "gc": {"eps": 0.15, "draws": 20_000},
            "gd": {"lr": 1e-2, "steps": 300},
        }
    )
    for cell in config.cells():
        rows = {where: run_job(Job(cell, (0, 1)), "devices", where) for where in ("cpu", device)}
        for cpu, other in zip(rows["cpu"], rows[device], strict=True):
            assert cpu["key"] == other["key"] and other["status"] == "ok"
            if cell.method == "gd":  # float64 GD: the same trajectory
                assert other["gen_loss"] == pytest.approx(cpu["gen_loss"], rel=1e-8, abs=1e-12)


def test_asking_for_cuda_without_it_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the missing-CUDA error cannot be triggered")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        NMF(2, device="cuda").fit(np.ones((4, 4)))
    assert resolve_device("auto").type == "cpu"


def test_marginal_sampler_takes_a_problem_on_any_device_and_returns_its_draws_there(device):
    from factorkit.fit.marginal_sampler import marginal_sample

    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    model = DeepFactorization(5, 5, 8, 2, "tanh")
    options = {"eps": 0.05, "target_ess": 50, "n_samples": 100, "hidden_draws": 4096, "seed": 3}
    cpu = marginal_sample(problem, model, **options)
    other = marginal_sample(problem.to(device), model, **options)
    # the sampler works in float64 on the CPU whatever the problem's device: the same numbers
    assert other.accepted_W.device.type == device
    torch.testing.assert_close(other.accepted_W.cpu(), cpu.accepted_W)
    assert other.extra["log_volume"] == cpu.extra["log_volume"]
