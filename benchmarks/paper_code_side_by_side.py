"""factorkit side by side with the paper's own code on the same seeded problems (issue 16).

The paper's code (github.com/YoniSlutzky98/nn-gd-gen-mf, commit 056dcb8, the last that runs) is
checked out beside the project, never installed or copied: ``git archive 056dcb8 | tar -x -C DIR``,
then ``python benchmarks/paper_code_side_by_side.py --authors DIR``.

For each problem seed, the problem is made by the paper's ``generate_data`` after
``torch.manual_seed``; its ``W*`` is recovered exactly from the train and test measurements (a
25 x 25 linear system) and handed to factorkit as ``SensingProblem.from_measurements``. Then:

* G&C: the paper's ``train_gnc`` (its acceptances counted by wrapping its loss function) against
  factorkit's ``guess_and_check`` with the default prior (the paper's fan-out scales, in the
  model's orientation ``W_d s(W_1)``) and with the paper's code's orientation (``W^T``, run on
  ``problem.transposed()``): acceptance rate with its 95% Clopper-Pearson interval, posterior mean
  L_gen with its 95% t interval, and z-scores of the differences.
* GD: the paper's ``train_gd`` against ``train_gd(init='torch_linear', optimizer='group_rmsprop')``
  from the same seed (the same initial weights, exactly): final L_gen of both.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch
from scipy import stats

from factorkit.fit.gd import train_gd
from factorkit.fit.guess_check import guess_and_check
from factorkit.models import DeepFactorization
from factorkit.problems import SensingProblem

ACTIVATION = {"linear": "Linear", "tanh": "Tanh", "leaky_relu": "Leaky ReLU"}


def authors_modules(path: str):
    sys.path.insert(0, path)
    import common.training as training
    import common.utils.matrix_utils as matrix_utils

    # the paper's activation_factory (common/utils/utils.py, which also imports GPUtil) maps these names
    # to the torch.nn classes below
    classes = {"Linear": torch.nn.Identity, "Tanh": torch.nn.Tanh, "Leaky ReLU": torch.nn.LeakyReLU}
    return training, matrix_utils, classes.__getitem__


def paper_problem(matrix_utils, seed: int, rank: int, n: int):
    """The paper's problem for ``seed`` and its factorkit twin (float32, as the paper's code)."""
    torch.manual_seed(seed)
    A_train, b_train, A_test, b_test = matrix_utils.generate_data(5, 5, rank, 1.0, n, torch.device("cpu"))
    operator = torch.cat([A_train, A_test]).reshape(-1, 25).double()
    W_star = torch.linalg.solve(operator, torch.cat([b_train, b_test]).double()).reshape(5, 5)
    problem = SensingProblem.from_measurements(A_train.double(), W_star).to(dtype=torch.float32)
    return (A_train, b_train, A_test, b_test), problem


def authors_gc(training, data, seed, width, depth, activation, eps, draws, batch, normalize):
    """The paper's train_gnc, with its acceptances counted: (accepted, mean L_gen, prior mean, seconds)."""
    A_train, b_train, A_test, b_test = data
    counted = {"accepted": 0}
    original = training.gnc_sensing_loss

    def counting(Y, A, b):
        losses = original(Y, A, b)
        if A is A_train:
            counted["accepted"] += int((losses < eps).sum())
        return losses

    training.gnc_sensing_loss = counting
    try:
        start = time.perf_counter()
        prior_mean, gc_mean = training.train_gnc(
            seed, 5, 5, width, depth, activation, torch.device("cpu"), A_train, b_train, A_test, b_test,
            eps, draws, batch, "gauss", normalize,
        )  # fmt: skip
        seconds = time.perf_counter() - start
    finally:
        training.gnc_sensing_loss = original
    return counted["accepted"], gc_mean, prior_mean, seconds


def interval(accepted: int, draws: int) -> tuple[float, float]:
    low = 0.0 if accepted == 0 else stats.beta.ppf(0.025, accepted, draws - accepted + 1)
    high = 1.0 if accepted == draws else stats.beta.ppf(0.975, accepted + 1, draws - accepted)
    return low, high


def z_rates(a: int, b: int, n: int) -> float:
    pooled = (a + b) / (2 * n)
    return (a - b) / n / math.sqrt(max(2 * pooled * (1 - pooled) / n, 1e-300))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True, help="the paper's code checked out at 056dcb8")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--draws", type=int, default=2_000_000)
    parser.add_argument("--eps", type=float, default=0.05, help="width cells (the paper: 0.02)")
    parser.add_argument("--widths", type=int, nargs="+", default=[5, 40, 160])
    parser.add_argument("--gd-steps", type=int, default=3000)
    args = parser.parse_args()
    training, matrix_utils, activation_factory = authors_modules(args.authors)
    torch.set_num_threads(1)

    cells = [(a, k, 2, args.eps, False) for a in ACTIVATION for k in args.widths]
    cells.append(("linear", 5, 3, 0.015, True))  # a depth cell: normalized prior, d = 3
    print(f"G&C, {args.draws:,} draws per run, problems from the paper's generate_data (seeds 1000+)\n")
    print(
        "| activation | k | d | eps | seed | paper: accepted (rate) | factorkit: accepted (rate), z | "
        "factorkit W^T: accepted, z | paper L_gen | factorkit L_gen (95% CI) | factorkit W^T L_gen (95% CI) |"
    )
    print("|" + "---|" * 11)
    for activation, width, depth, eps, normalize in cells:
        for seed in range(args.seeds):
            data, problem = paper_problem(matrix_utils, 1000 + seed, 1, 15)
            net_activation = activation_factory(ACTIVATION[activation])
            accepted, gc_mean, _, _ = authors_gc(
                training, data, seed, width, depth, net_activation, eps, args.draws, 100_000, normalize
            )
            prior = "normalized_gaussian" if normalize else "gaussian"
            model = DeepFactorization(5, 5, width, depth, activation)
            ours = guess_and_check(
                problem, model, eps=eps, prior=prior, max_evaluations=args.draws, seed=seed
            )
            flipped = guess_and_check(
                problem.transposed(),
                model,
                eps=eps,
                prior=prior,
                max_evaluations=args.draws,
                seed=seed + 7919,
            )
            cells_text = []
            for result in (ours, flipped):
                z = z_rates(result.accepted, accepted, args.draws)
                cells_text.append(f"{result.accepted:,} ({result.acceptance_rate:.2e}), z = {z:+.1f}")
            gen = [f"{r.gen_loss_mean:.4f} [{r.gen_loss_interval()[0]:.4f}, {r.gen_loss_interval()[1]:.4f}]"
                   for r in (ours, flipped)]  # fmt: skip
            print(
                f"| {activation} | {width} | {depth} | {eps:g} | {seed} | {accepted:,} "
                f"({accepted / args.draws:.2e}) | {cells_text[0]} | {cells_text[1]} | {gc_mean:.4f} | "
                f"{gen[0]} | {gen[1]} |",
                flush=True,
            )

    print(f"\nGD, {args.gd_steps:,} GroupRMSprop steps, lr 1e-3, init scale 1e-2 (the same start, float32)\n")
    print("| activation | k | seed | paper L_gen | factorkit L_gen | relative difference |")
    print("|---|---|---|---|---|---|")
    for activation in ACTIVATION:
        for width in args.widths:
            for seed in range(args.seeds):
                data, problem = paper_problem(matrix_utils, 1000 + seed, 1, 15)
                A_train, b_train, A_test, b_test = data
                theirs = training.train_gd(
                    seed, 5, 5, width, 2, activation_factory(ACTIVATION[activation]), torch.device("cpu"),
                    A_train, b_train, A_test, b_test, 1e-2, 1e-3, args.gd_steps + 1, 1, 10**9,
                )  # fmt: skip
                # the paper's code reports the test loss logged at its last epoch, after that step
                ours = train_gd(
                    problem, DeepFactorization(5, 5, width, 2, activation), seeds=[seed], init="torch_linear",
                    init_scale=1e-2, lr=1e-3, max_steps=args.gd_steps + 1, optimizer="group_rmsprop",
                    progress=False,
                )  # fmt: skip
                mine = float(ours.gen_loss[0])
                print(
                    f"| {activation} | {width} | {seed} | {theirs:.6g} | {mine:.6g} | "
                    f"{abs(mine - theirs) / theirs:.1e} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
