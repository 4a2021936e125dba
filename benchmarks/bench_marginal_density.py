"""The marginal sampler's eps = 0 weight: ``log N(y; 0, Sigma_gg)`` by a Cholesky factor against
the eigen-decomposition route, on the paper's width-5 problems (rank 1, n = 15; rank 2, n = 22),
500 hidden-layer draws of a tanh net of depth 2 per call, both in this process on one thread,
best of 20; the largest relative difference of the two log densities is printed (at the
worst-conditioned draw, condition number ~1e7 at n = 22: about ten times that times float64's eps).
A second table times the weight without ``Sigma`` (:class:`factorkit.fit.marginal.KroneckerDensity`:
one ``m' x m'`` Cholesky factor of ``F^T F`` and one ``k x k``) against ``Sigma``'s route with its
covariances (what a tempered SMC evaluation costs each way), interleaved, best of five rounds of
20, on the same problems (``k = 10`` and 3 complement coordinates; the marginal sampler takes it
where ``2 k <= n``), and the largest difference of the two relative to ``1 + |log density|``.
The last table times the covariances themselves (every draw's ``C``, ``N x N``): one product of
``G``'s upper triangle with a precomputed basis against the two products used where that basis
would be too large, and prints their largest relative difference.

Run: ``python benchmarks/bench_marginal_density.py``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit import marginal
from factorkit.fit.ball import log_gaussian_density
from factorkit.fit.hidden import HiddenLayers
from factorkit.fit.marginal import KroneckerDensity, OutputLayerIntegral, eigen


def best(function, repeats: int = 20) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def eigen_route(integral: OutputLayerIntegral, cov: torch.Tensor) -> np.ndarray:
    n = integral.n
    values, _, centre = eigen(cov[:, :n, :n], integral.y)
    return log_gaussian_density(values, centre)


def compare(figure: str) -> str:
    cell = paper_cell(figure, width=5, activation="tanh", eps=0)
    problem, model, prior = gc_setup(cell.params, 0, "cpu")
    integral = OutputLayerIntegral(problem.to(dtype=torch.float64), model, prior, 0.0)
    hidden = HiddenLayers(model, prior)
    gram = hidden.gram(hidden.draw(500, torch.Generator().manual_seed(0)), 500).double()
    analysis = integral.analyse(gram, log_weight=np.zeros(500))  # the covariances only
    eigen = eigen_route(integral, analysis.cov)
    cholesky = integral._density(analysis, route="sigma")
    relative = float((np.abs(eigen - cholesky) / np.abs(eigen)).max())
    t_eigen = best(lambda: eigen_route(integral, analysis.cov))
    t_cholesky = best(lambda: integral._density(analysis, route="sigma"))
    times = f"{t_eigen:.2f} | {t_cholesky:.2f} | {t_eigen / t_cholesky:.1f}x"
    return f"| {figure} | {integral.n} | {times} | {relative:.1e} |"


def covariances(figure: str, draws: int) -> str:
    cell = paper_cell(figure, width=5, activation="tanh", eps=0)
    problem, model, prior = gc_setup(cell.params, 0, "cpu")
    problem = problem.to(dtype=torch.float64)
    hidden = HiddenLayers(model, prior)
    gram = hidden.gram(hidden.draw(draws, torch.Generator().manual_seed(0)), draws).double()
    one = OutputLayerIntegral(problem, model, prior, 0.0)
    limit, marginal.COVARIANCE_BASIS_LIMIT = marginal.COVARIANCE_BASIS_LIMIT, 0
    try:
        two = OutputLayerIntegral(problem, model, prior, 0.0)
        t_two = best(lambda: two.covariance(gram))
        reference = two.covariance(gram)
    finally:
        marginal.COVARIANCE_BASIS_LIMIT = limit
    t_one = best(lambda: one.covariance(gram))
    relative = float((one.covariance(gram) - reference).abs().max() / reference.abs().max())
    times = f"{t_two:.2f} | {t_one:.2f} | {t_two / t_one:.1f}x"
    return f"| {figure} | {one.functionals.shape[0]} | {draws} | {times} | {relative:.1e} |"


def without_sigma(figure: str) -> str:
    cell = paper_cell(figure, width=5, activation="tanh", eps=0)
    problem, model, prior = gc_setup(cell.params, 0, "cpu")
    integral = OutputLayerIntegral(problem.to(dtype=torch.float64), model, prior, 0.0)
    kronecker = KroneckerDensity(integral.functionals, integral.y, integral.scale)
    hidden = HiddenLayers(model, prior)
    gram = hidden.gram(hidden.draw(500, torch.Generator().manual_seed(0)), 500).double()

    def by_sigma():
        return integral._density(integral.analyse(gram, log_weight=np.zeros(500)), route="sigma")

    reference, fast = by_sigma(), kronecker.log_density(gram)[0]
    relative = float((np.abs(fast - reference) / (1 + np.abs(reference))).max())
    t_sigma, t_fast = math.inf, math.inf
    for _ in range(5):
        t_sigma, t_fast = min(t_sigma, best(by_sigma)), min(t_fast, best(lambda: kronecker.log_density(gram)))
    taken = "yes" if integral.kronecker is not None else "no"
    times = f"{t_sigma:.2f} | {t_fast:.2f} | {t_sigma / t_fast:.1f}x"
    return f"| {figure} | {integral.n} | {kronecker.k} | {times} | {taken} | {relative:.1e} |"


def main() -> None:
    torch.set_num_threads(1)
    print("| figure | n | eigen route ms | Cholesky route ms | speed-up | max relative difference |")
    print("|---|---|---|---|---|---|")
    for figure in ("width", "width_rank2"):
        print(compare(figure))
    print()
    print("| figure | n | k | Sigma's route ms | without Sigma ms | speed-up | taken | max difference |")
    print("|---|---|---|---|---|---|---|---|")
    for figure in ("width", "width_rank2"):
        print(without_sigma(figure))
    print()
    print("| figure | N | draws | two products ms | one product ms | speed-up | max relative difference |")
    print("|---|---|---|---|---|---|---|")
    for figure in ("width", "width_rank2"):
        for draws in (500, 2000):
            print(covariances(figure, draws))


if __name__ == "__main__":
    main()
