"""Every prox against its definition: a fine 1-D grid per entry, and scipy.optimize on vectors."""

import numpy as np
import pytest
import scipy.optimize
import torch

from factorkit.prox import (
    nuclear_norm,
    penalty_cel0,
    penalty_elastic_binary,
    penalty_elastic_net,
    penalty_group_l2,
    penalty_l1,
    penalty_log,
    penalty_lq,
    penalty_mcp,
    penalty_scad,
    prox_box,
    prox_cel0,
    prox_elastic_binary,
    prox_elastic_net,
    prox_group_l2,
    prox_l0,
    prox_l1,
    prox_l_half,
    prox_log,
    prox_lq,
    prox_mcp,
    prox_nonnegative,
    prox_nuclear,
    prox_scad,
)

GRID = torch.linspace(-3, 4, 700_001, dtype=torch.float64)  # spacing 1e-5
STEP, L1, L2 = 0.3, 0.4, 0.7


def elastic_binary_entry(z):
    return torch.minimum(L1 * z.abs() + L2 * z.square(), L1 * (z - 1).abs() + L2 * (z - 1).square())


ENTRYWISE = {
    "l1": (lambda x: prox_l1(x, STEP * L1), lambda z: L1 * z.abs(), None),
    "elastic_net": (
        lambda x: prox_elastic_net(x, L1, L2, STEP),
        lambda z: L1 * z.abs() + L2 * z.square(),
        None,
    ),
    "nonnegative": (prox_nonnegative, lambda z: torch.zeros_like(z), (0.0, None)),
    "box": (prox_box, lambda z: torch.zeros_like(z), (0.0, 1.0)),
    "elastic_binary": (lambda x: prox_elastic_binary(x, L1, L2, STEP), elastic_binary_entry, None),
    "elastic_binary_nonnegative": (
        lambda x: prox_elastic_binary(x, L1, L2, STEP, "nonnegative"),
        elastic_binary_entry,
        (0.0, None),
    ),
    "elastic_binary_box": (
        lambda x: prox_elastic_binary(x, L1, L2, STEP, "box"),
        elastic_binary_entry,
        (0.0, 1.0),
    ),
}


@pytest.mark.parametrize("name", list(ENTRYWISE))
def test_entrywise_prox_matches_grid_search(name):
    prox, penalty, bounds = ENTRYWISE[name]
    scale = 1.0 if name in ("nonnegative", "box") else STEP
    grid = GRID
    if bounds is not None:
        low, high = bounds
        grid = grid[grid >= low] if high is None else grid[(grid >= low) & (grid <= high)]
    values = penalty(grid)
    x = torch.cat([torch.linspace(-1.5, 2.5, 81, dtype=torch.float64), torch.tensor([0.5, 0.0, 1.0])])
    z = prox(x)
    for xi, zi in zip(x, z, strict=True):
        objective = 0.5 * (grid - xi).square() + scale * values
        best = float(objective.min())
        mine = float(0.5 * (zi - xi) ** 2 + scale * penalty(zi.reshape(1)))
        assert mine <= best + 1e-9, f"{name} at x={float(xi)}: {mine} > grid {best}"


def test_elastic_binary_prox_of_vectors_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.uniform(-1, 2, size=4)

        def objective(z, x=x):
            return 0.5 * np.sum((z - x) ** 2) + STEP * float(
                penalty_elastic_binary(torch.from_numpy(z), L1, L2)
            )

        mine = prox_elastic_binary(torch.from_numpy(x), L1, L2, STEP).numpy()
        # multistart Nelder-Mead (the objective is non-convex and non-smooth)
        best = min(
            (
                scipy.optimize.minimize(
                    objective,
                    start,
                    method="Nelder-Mead",
                    options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000},
                )
                for start in (x, np.zeros(4), np.ones(4), np.clip(x, 0, 1))
            ),
            key=lambda r: r.fun,
        )
        assert objective(mine) <= best.fun + 1e-9


def test_elastic_binary_is_zero_exactly_on_binary_values_and_fixes_them():
    x = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    assert float(penalty_elastic_binary(x, L1, L2)) == 0.0
    torch.testing.assert_close(prox_elastic_binary(x, L1, L2, STEP), x)
    # near-binary values are soft-thresholded onto 0 and 1 (no overshoot past them)
    near = torch.tensor([0.05, -0.05, 0.95, 1.05], dtype=torch.float64)
    expected = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(prox_elastic_binary(near, L1, L2, STEP), expected)


def test_elastic_net_and_l1_closed_forms():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.2, 2.0])
    torch.testing.assert_close(prox_l1(x, 1.0), torch.tensor([-2.0, 0.0, 0.0, 0.0, 1.0]))
    torch.testing.assert_close(prox_elastic_net(x, 1.0, 0.5, 1.0), torch.tensor([-1.0, 0.0, 0.0, 0.0, 0.5]))
    assert float(penalty_l1(x, 2.0)) == pytest.approx(11.4)
    assert float(penalty_elastic_net(x, 1.0, 1.0)) == pytest.approx(5.7 + 13.29)


def test_group_l2_prox_matches_scipy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4))
    t = 0.8
    mine = prox_group_l2(torch.from_numpy(x), t).numpy()
    for row, z in zip(x, mine, strict=True):
        result = scipy.optimize.minimize(
            lambda v, row=row: 0.5 * np.sum((v - row) ** 2) + t * np.linalg.norm(v),
            row,
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-12},
        )
        assert 0.5 * np.sum((z - row) ** 2) + t * np.linalg.norm(z) <= result.fun + 1e-8
    assert float(penalty_group_l2(torch.from_numpy(x), 2.0)) == pytest.approx(
        2 * np.linalg.norm(x, axis=1).sum()
    )
    torch.testing.assert_close(prox_group_l2(torch.zeros(2, 3), 1.0), torch.zeros(2, 3))


def test_prox_nuclear_matches_numpy_svd_thresholding():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 6))
    u, s, vt = np.linalg.svd(X, full_matrices=False)
    expected = u @ np.diag(np.maximum(s - 0.7, 0)) @ vt
    torch.testing.assert_close(prox_nuclear(torch.from_numpy(X), 0.7), torch.from_numpy(expected))


@pytest.mark.parametrize("prox, penalty", [(prox_l1, lambda z: z.abs().sum()), (prox_nuclear, nuclear_norm)])
def test_prox_minimizes_its_objective_against_perturbations(prox, penalty):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, dtype=torch.float64, generator=generator)
    t = 0.5
    z = prox(x, t)

    def objective(v):
        return float(t * penalty(v) + 0.5 * (v - x).square().sum())

    best = objective(z)
    for _ in range(200):
        assert (
            objective(z + 1e-2 * torch.randn(3, 4, dtype=torch.float64, generator=generator)) >= best - 1e-12
        )


def test_bad_arguments():
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        prox_l1(torch.zeros(2), -1.0)
    with pytest.raises(ValueError, match="bounds must be one of"):
        prox_elastic_binary(torch.zeros(2), 0.1, 0.1, 1.0, bounds="unit")
    with pytest.raises(ValueError, match="step must be > 0"):
        prox_elastic_net(torch.zeros(2), 0.1, 0.1, 0.0)
    with pytest.raises(ValueError, match="lower must be <= upper"):
        prox_box(torch.zeros(2), 1.0, 0.0)


# ----- non-convex penalties: the prox is the global minimizer, found by grid search -------------

LAM = 0.5
NONCONVEX = {
    "l0": (lambda x, nn: prox_l0(x, LAM, STEP, nonnegative=nn), lambda z: LAM * (z != 0).to(z.dtype)),
    "l_half": (lambda x, nn: prox_l_half(x, LAM, STEP, nonnegative=nn), lambda z: LAM * z.abs().sqrt()),
    "mcp": (lambda x, nn: prox_mcp(x, LAM, STEP, gamma=2.0, nonnegative=nn),
            lambda z: _entries(penalty_mcp, z, LAM, 2.0)),
    "scad": (lambda x, nn: prox_scad(x, LAM, STEP, a=3.7, nonnegative=nn),
             lambda z: _entries(penalty_scad, z, LAM, 3.7)),
    "log": (lambda x, nn: prox_log(x, LAM, STEP, eps=0.1, nonnegative=nn),
            lambda z: _entries(penalty_log, z, LAM, 0.1)),
    "cel0": (lambda x, nn: prox_cel0(x, LAM, STEP, a=1.2, nonnegative=nn),
             lambda z: _entries(penalty_cel0, z, LAM, 1.2)),
    "lq_0.2": (lambda x, nn: prox_lq(x, LAM, STEP, q=0.2, nonnegative=nn),
               lambda z: _entries(penalty_lq, z, LAM, 0.2)),
    "lq_0.8": (lambda x, nn: prox_lq(x, LAM, STEP, q=0.8, nonnegative=nn),
               lambda z: _entries(penalty_lq, z, LAM, 0.8)),
}  # fmt: skip


def _entries(penalty, z, *args):
    """A summed penalty evaluated entry by entry (its terms), vectorized over a 1-D tensor."""
    return torch.vmap(lambda v: penalty(v.reshape(1), *args))(z)


@pytest.mark.parametrize("nonnegative", [False, True])
@pytest.mark.parametrize("name", list(NONCONVEX))
def test_nonconvex_prox_is_the_global_minimizer_on_a_grid(name, nonnegative):
    prox, penalty = NONCONVEX[name]
    grid = GRID[::10]  # spacing 1e-4
    if nonnegative:
        grid = grid[grid >= 0]
    values = penalty(grid)
    x = torch.cat([torch.linspace(-2.5, 3.0, 56, dtype=torch.float64), torch.tensor([0.0, 0.3873, -0.3873])])
    z = prox(x, nonnegative)
    if nonnegative:
        assert bool((z >= 0).all())
    for xi, zi in zip(x, z, strict=True):
        best = float((0.5 * (grid - xi).square() + STEP * values).min())
        mine = float(0.5 * (zi - xi) ** 2 + STEP * penalty(zi.reshape(1)).sum())
        # the grid's own spacing bounds how far its best can sit above the true minimum
        assert mine <= best + 1e-7, f"{name} at x={float(xi)}: {mine} > grid {best}"


def test_nonconvex_penalties_are_zero_at_zero_and_their_proxes_threshold_small_inputs():
    small = torch.tensor([0.05, -0.05], dtype=torch.float64)
    for name, (prox, penalty) in NONCONVEX.items():
        assert float(penalty(torch.zeros(1, dtype=torch.float64)).sum()) == 0.0, name
        if name != "log":  # the log penalty's slope at 0 is lam / eps: also a threshold, but a larger input
            assert torch.equal(prox(small, False), torch.zeros_like(small)), name


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: prox_mcp(torch.ones(2), 1.0, step=1.0, gamma=1.0), "gamma must be > step"),
        (lambda: prox_scad(torch.ones(2), 1.0, step=1.0, a=2.0), "a must be > 1 \\+ step"),
        (lambda: prox_cel0(torch.ones(2), 1.0, step=1.0, a=1.0), "a\\^2 \\* step must be < 1"),
        (lambda: prox_l0(torch.ones(2), -1.0), "lam must be >= 0"),
        (lambda: prox_l_half(torch.ones(2), 1.0, step=0.0), "step must be > 0"),
        (lambda: prox_log(torch.ones(2), 1.0, eps=0.0), "eps must be > 0"),
        (lambda: prox_lq(torch.ones(2), 1.0, q=1.0), "q must be in \\[0, 1\\)"),
        (lambda: prox_lq(torch.ones(2), 1.0, q=-0.1), "q must be >= 0"),
    ],
)
def test_nonconvex_prox_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_lq_prox_agrees_with_the_closed_forms_at_q_0_and_one_half():
    """The Newton-based l_q prox against the two closed forms it generalizes (independent code)."""
    x = torch.linspace(-3, 3, 1201, dtype=torch.float64)
    torch.testing.assert_close(prox_lq(x, 0.7, 0.4, q=0.5), prox_l_half(x, 0.7, 0.4), rtol=1e-12, atol=1e-12)
    assert torch.equal(prox_lq(x, 0.7, 0.4, q=0.0), prox_l0(x, 0.7, 0.4))
    assert float(penalty_lq(torch.tensor([0.0, 2.0, -1.0]), 1.0, q=0.0)) == 2.0
