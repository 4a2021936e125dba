import numpy as np
import pytest
import torch

from factorkit.prox import nuclear_norm, prox_l1, prox_nuclear


def test_prox_l1_closed_form():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.2, 2.0])
    torch.testing.assert_close(prox_l1(x, 1.0), torch.tensor([-2.0, 0.0, 0.0, 0.0, 1.0]))


def test_prox_nuclear_matches_numpy_svd_thresholding():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 6))
    u, s, vt = np.linalg.svd(X, full_matrices=False)
    expected = u @ np.diag(np.maximum(s - 0.7, 0)) @ vt
    torch.testing.assert_close(prox_nuclear(torch.from_numpy(X), 0.7), torch.from_numpy(expected))


@pytest.mark.parametrize("prox, penalty", [(prox_l1, lambda z: z.abs().sum()), (prox_nuclear, nuclear_norm)])
def test_prox_minimizes_its_objective(prox, penalty):
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


def test_negative_threshold_refused():
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        prox_l1(torch.zeros(2), -1.0)
