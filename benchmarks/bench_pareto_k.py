"""The Pareto shape of the marginal sampler's importance weights on the width figures' eps = 0
cells, against long tempered SMC runs.

    python benchmarks/bench_pareto_k.py [--seeds 4] [--steps 160]

For the width figure's depth-2 cells at ``eps = 0`` (widths 5 and 10, three activations, seeds
``0 .. seeds - 1`` of the paper's problems) this runs the importance stage as the study does
(``method='importance'``, ESS target 200) and prints the Pareto shape ``k`` of its weights
(:func:`factorkit.fit.weights.pareto_k`: the weights' tail falls like ``t^(-1/k)``), Kish's ESS,
the draws it took and its Rao-Blackwellized posterior mean of ``L_gen`` with its standard error.
Where ``k`` exceeds PSIS's 0.7 (:data:`~factorkit.fit.weights.PARETO_K_LIMIT`, above which ``auto``
hands the run over to tempered SMC) the cell is
also sampled by tempered SMC with ``--steps`` pCN steps per temperature (8 runs of 500, no effort
check), and the difference of the two means is printed in units of their combined standard error:
where the weights' tail is heavy, do the importance estimates still hold? The counted tail index
(:mod:`factorkit.fit.tail`) is 2 at width 5 and 4 at width 10 (linear count; an equal one for
tanh and leaky ReLU at depth 2). One torch thread, as in a study's worker.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import torch

from factorkit.experiments.paper import paper_cell
from factorkit.experiments.run.jobs import gc_setup
from factorkit.fit.marginal_sampler import marginal_sample
from factorkit.fit.weights import PARETO_K_LIMIT


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=160, help="pCN steps of the reference SMC runs")
    parser.add_argument("--widths", default="5,10")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", RuntimeWarning)  # the heavy cells' warnings are the table's subject
    print("| width | activation | seed | Pareto k | Kish ESS | draws | L_gen (se), importance | "
          f"L_gen (se), SMC {args.steps} steps | difference / se | s, importance / SMC |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for width in (int(w) for w in args.widths.split(",")):
        for activation in ("linear", "tanh", "leaky_relu"):
            for seed in range(args.seeds):
                cell = paper_cell("width", activation=activation, width=width, depth=2)
                problem, model, prior = gc_setup({**cell.params, "width": width, "depth": 2}, seed, "cpu")
                start = time.perf_counter()
                run = marginal_sample(problem, model, eps=0.0, prior=prior, method="importance", seed=seed,
                                      keep_samples=False)  # fmt: skip
                seconds = time.perf_counter() - start
                e = run.extra
                mean = f"{e['gen_loss_rb']:.4f} ({e['gen_loss_rb_se']:.4f})"
                row = (f"| {width} | {activation} | {seed} | {e['pareto_k']:.2f} | {e['kish_ess']:.0f} | "
                       f"{e['hidden_draws']} | {mean} |")  # fmt: skip
                if not e["pareto_k"] > PARETO_K_LIMIT:
                    print(f"{row} | | {seconds:.1f} / |", flush=True)
                    continue
                start = time.perf_counter()
                ref = marginal_sample(problem, model, eps=0.0, prior=prior, method="smc",
                                      mcmc_steps=args.steps, runs=8, target_ess=1, check_effort=False,
                                      seed=100 + seed, keep_samples=False).extra  # fmt: skip
                smc_seconds = time.perf_counter() - start
                se = math.hypot(e["gen_loss_rb_se"], ref["gen_loss_rb_se"])
                z = (e["gen_loss_rb"] - ref["gen_loss_rb"]) / se
                print(f"{row} {ref['gen_loss_rb']:.4f} ({ref['gen_loss_rb_se']:.4f}) | {z:+.1f} | "
                      f"{seconds:.1f} / {smc_seconds:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
