"""G&C at eps = 0 with a normalized Gaussian prior (the depth figures' prior), on the paper's problem.

    python benchmarks/bench_normalized.py

The paper's sensing problem (m = m' = 5, rank 1, n = 15, seed 0, float64), width 5: depth 1 (the
closed form, against the coarea formula), then the interpolating posterior by
:func:`factorkit.fit.normalized.normalized_zero_sample` at its defaults but for the effort
check (``auto``: importance sampling, handed to tempered SMC when its first batch projects less
than an ESS of 200; ``check_effort=False``) for linear and tanh at depth 2 and leaky ReLU at
depth 4, and importance sampling alone at depth 2 (linear, up to 2^19 hidden draws, stopping at
an ESS of 200). Prints log p(h = y), the ESS, the
posterior mean of L_gen beside the prior's, and seconds. First, the weight itself: the Kronecker
route of ``NormalizedInterpolation.log_weights`` against ``dense_log_weights`` (``K`` formed whole,
the previous route) on the same 4096 draws, one thread.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from factorkit.fit.hidden import HiddenLayers
from factorkit.fit.normalized import (
    NormalizedInterpolation,
    dense_log_weights,
    depth_one_log_density,
    normalized_zero_sample,
)
from factorkit.fit.prior import resolve_prior
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem


def _best_of(function, repeats: int = 5) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def weight_routes(problem, prior) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    print("| model | dense K (ms) | Kronecker (ms) | ratio |")
    print("|---|---|---|---|")
    for depth, activation in [(2, "tanh"), (6, "leaky_relu")]:
        model = DeepFactorization(5, 5, 5, depth, activation)
        target = NormalizedInterpolation(problem, model, prior)
        hidden = HiddenLayers(model, dataclasses.replace(prior, normalize=False))
        generator = torch.Generator().manual_seed(1)
        gram = hidden.gram(hidden.draw(4096, generator), 4096)
        xi = torch.randn(4096, target.k, generator=generator, dtype=torch.float64)
        dense = _best_of(lambda: dense_log_weights(target, gram, xi))  # noqa: B023
        fast = _best_of(lambda: target.log_weights(gram, xi))  # noqa: B023
        print(f"| depth {depth} {activation} | {dense * 1e3:.1f} | {fast * 1e3:.1f} | {dense / fast:.1f}x |")
    torch.set_num_threads(threads)


def main() -> None:
    problem = make_sensing_problem(5, 5, rank=1, n=15, seed=0, dtype="float64")
    prior = resolve_prior("normalized_gaussian", problem)
    weight_routes(problem, prior)
    generator = torch.Generator().manual_seed(0)
    print("| model | method | log p(h = y) | ESS | L_gen (posterior) | L_gen (prior) | seconds |")
    print("|---|---|---|---|---|---|---|")
    cases = [
        (DeepFactorization(5, 5, 5, 1), {}),
        (DeepFactorization(5, 5, 5, 2, "linear"), {}),
        (DeepFactorization(5, 5, 5, 2, "tanh"), {}),
        (DeepFactorization(5, 5, 5, 4, "leaky_relu"), {}),
        (DeepFactorization(5, 5, 5, 2, "linear"), {"method": "importance", "hidden_draws": 2**19}),
    ]
    for model, options in cases:
        start = time.perf_counter()
        # without the effort check (added after these figures were recorded; bench_effort.py
        # measures what more pCN steps change): the sampler's 10-step runs as they were
        state = normalized_zero_sample(
            problem, model, prior, generator=generator, check_effort=False, **options
        )
        seconds = time.perf_counter() - start
        name = f"depth {model.depth} {model.activation if model.depth > 1 else ''}".strip()
        ess = state.get("kish_ess", state["ess"])
        print(
            f"| {name} | {state['method']} | {state['log_volume']:.3f} +- {state['log_volume_se']:.3f} | "
            f"{ess:.0f} | {state['rb']:.4f} +- {state['rb_se']:.4f} | {state['prior_gen'][0]:.4f} | "
            f"{seconds:.1f} |",
            flush=True,
        )
    print(f"depth 1 by the coarea formula: {depth_one_log_density(problem, prior.target_norm):.6f}")


if __name__ == "__main__":
    main()
