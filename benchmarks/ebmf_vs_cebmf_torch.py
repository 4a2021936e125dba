"""factorkit's EBMF / cEBMF side by side with the authors' PyTorch package cebmf_torch (not a test).

cebmf_torch (Denault et al., github.com/william-denault/cebmf_torch) is not on the package
registry and not a dependency: install it by hand to run its half
(``pip install --no-deps git+https://github.com/william-denault/cebmf_torch``); without it only
factorkit's rows are printed.

Simulations (truth ``L F^T``, rank 3 or 2, Gaussian noise; RMSE of the fitted ``L F^T`` to the
truth, components kept in brackets, wall seconds):

* ``logistic``: the paper's size, 1000 x 200, rank 3, noise std 2; row i is active in factor k with
  probability ``sigmoid(3 (z_ik - 1))`` (see ``ebmf_simulation.py``);
* ``band``: 1000 x 200, rank 2, noise std 4; factor k is active only where ``|z_ik| < 0.6``,
  an effect no linear predictor of the covariates captures.

Methods: factorkit ``EBMF`` (point-normal), ``CovariateEBMF`` (logistic null weight) and
``CovariateEBMF(covariate_model='mlp')``; cebmf_torch ``cEBMF`` with ``prior_L`` = ``norm`` (no
covariates), ``cash`` (network mixture weights over an ash grid) and ``cgb`` (network spike-and-slab
weight), ``prior_F='norm'``, 50 iterations (its default), K = 8, float32 on the CPU.

Run: ``python benchmarks/ebmf_vs_cebmf_torch.py [--sims logistic band] [--seeds 0]`` (about 10
minutes per simulation and seed with cebmf_torch, 30 s without).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import numpy as np

from factorkit.methods.ebmf import EBMF, CovariateEBMF


def logistic(seed: int, n: int = 1000, p: int = 200, rank: int = 3):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, rank))
    active = rng.random((n, rank)) < 1 / (1 + np.exp(-3 * (Z - 1)))
    truth = (rng.standard_normal((n, rank)) * active) @ rng.standard_normal((p, rank)).T
    return truth, truth + 2 * rng.standard_normal((n, p)), Z


def band(seed: int, n: int = 1000, p: int = 200, rank: int = 2):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, rank))
    truth = (rng.standard_normal((n, rank)) * (np.abs(Z) < 0.6)) @ rng.standard_normal((p, rank)).T
    return truth, truth + 4 * rng.standard_normal((n, p)), Z


SIMULATIONS = {"logistic": logistic, "band": band}


def factorkit_fits(X, Z):
    yield "factorkit EBMF", lambda: EBMF(8, tol=1e-4).fit(X)
    yield "factorkit cEBMF (logistic)", lambda: CovariateEBMF(8, tol=1e-4).fit(X, row_covariates=Z)
    yield (
        "factorkit cEBMF (MLP)",
        lambda: CovariateEBMF(8, tol=1e-4, covariate_model="mlp").fit(X, row_covariates=Z),
    )


def cebmf_torch_fits(X, Z, seed):
    try:
        import torch
        from cebmf_torch import cEBMF
    except ImportError:
        return
    for prior in ("norm", "cash", "cgb"):

        def fit(prior=prior):
            torch.manual_seed(seed)
            model = cEBMF(
                torch.tensor(X, dtype=torch.float32),
                K=8,
                prior_L=prior,
                prior_F="norm",
                X_l=None if prior == "norm" else torch.tensor(Z, dtype=torch.float32),
                device=torch.device("cpu"),
            )
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                result = model.fit(maxit=50)
            return result.L.double().numpy(), result.F.double().numpy()

        yield f"cebmf_torch {prior}", fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", nargs="+", choices=tuple(SIMULATIONS), default=list(SIMULATIONS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    print("| simulation | seed | method | RMSE (components) | seconds |")
    print("|---|---|---|---|---|")
    for name in args.sims:
        for seed in args.seeds:
            truth, X, Z = SIMULATIONS[name](seed)
            for method, fit in [*factorkit_fits(X, Z), *cebmf_torch_fits(X, Z, seed)]:
                start = time.perf_counter()
                result = fit()
                seconds = time.perf_counter() - start
                if isinstance(result, tuple):
                    L, F = result
                    estimate, kept = L @ F.T, int((np.abs(L).sum(0) > 0).sum())
                else:
                    estimate, kept = result.fitted(), result.n_components_
                rmse = float(np.sqrt(np.mean((estimate - truth) ** 2)))
                print(f"| {name} | {seed} | {method} | {rmse:.4f} ({kept}) | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
