"""Dictionary learning and sparse coding against scikit-learn, side by side on the same patches.

    python benchmarks/bench_dictionary.py [--patches 100000] [--atoms 128] [--alpha 1.0]

1. Learning: ``MiniBatchDictionaryLearning`` (scikit-learn's defaults, and tuned: 1024-sample
   batches) and factorkit's ``DictionaryLearning`` (defaults; and one epoch) on whitened 8x8
   patches of scikit-learn's sample images. Every dictionary is scored by the same l1 objective
   ``mean 0.5 ||x - z D||^2 + alpha ||z||_1`` with exact codes (FISTA to 1e-7 in float64) on a
   fixed 20,000-patch subset, so the objectives compare the dictionaries, not the coders.
2. Coding in a fixed dictionary (scikit-learn's learned one), 20,000 patches: scikit-learn's
   ``SparseCoder`` with ``lasso_lars``, ``lasso_cd``, ``omp`` and ``threshold`` against
   factorkit's FISTA (l1) and batched OMP, at the same alpha and the same number of atoms.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.decomposition import MiniBatchDictionaryLearning
from sklearn.decomposition import SparseCoder as SkSparseCoder

from factorkit.methods.sparse_coding import DictionaryLearning, Penalty, objective, sparse_encode
from factorkit.problems.patches import natural_patches


def score(X_eval: np.ndarray, D: np.ndarray, alpha: float) -> float:
    D = np.asarray(D, dtype=np.float64)
    Z = sparse_encode(X_eval, D, alpha=alpha, max_iter=5000, tol=1e-7)
    return objective(*(torch.from_numpy(a) for a in (X_eval, Z, D)), Penalty.make("l1", alpha))


def timed(make):
    start = time.perf_counter()
    out = make()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patches", type=int, default=100_000)
    parser.add_argument("--atoms", type=int, default=128)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--coding-patches", type=int, default=20_000)
    args = parser.parse_args()
    X = natural_patches(8, args.patches, seed=0)
    X_eval = X[: min(20_000, len(X))].astype(np.float64)
    alpha, K = args.alpha, args.atoms
    print(
        f"# {args.patches} whitened 8x8 patches, {K} atoms, alpha {alpha}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print("| learner | seconds | epochs | objective (exact l1 codes, 20k patches) |")
    print("|---|---:|---:|---:|")
    rows = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = {
            "scikit-learn MiniBatchDictionaryLearning (defaults)": lambda: MiniBatchDictionaryLearning(
                K, alpha=alpha, random_state=0
            ),
            "scikit-learn MiniBatchDictionaryLearning (batch_size=1024)": lambda: MiniBatchDictionaryLearning(
                K, alpha=alpha, batch_size=1024, random_state=0
            ),
            "factorkit DictionaryLearning (defaults)": lambda: DictionaryLearning(
                K, alpha=alpha, random_state=0
            ),
            "factorkit DictionaryLearning (max_iter=1: one epoch)": lambda: DictionaryLearning(
                K, alpha=alpha, max_iter=1, random_state=0
            ),
        }
        for name, make in runs.items():
            model, seconds = timed(lambda make=make: make().fit(X))
            value = score(X_eval, model.components_, alpha)
            rows[name] = (seconds, value, model)
            print(f"| {name} | {seconds:.1f} | {model.n_iter_} | {value:.4f} |", flush=True)
    baseline_seconds, baseline_value, baseline = rows["scikit-learn MiniBatchDictionaryLearning (defaults)"]
    for name, (seconds, value, _) in rows.items():
        if name.startswith("factorkit"):
            verdict = "at or below" if value <= baseline_value else "above"
            print(
                f"{name}: {baseline_seconds / seconds:.1f}x faster than scikit-learn's defaults, "
                f"objective {verdict} theirs"
            )

    # ----- coding in a fixed dictionary
    D = baseline.components_.astype(np.float32)
    Xc = X[: args.coding_patches]
    n_nonzero = 8
    print(
        f"\n# coding {len(Xc)} patches in scikit-learn's dictionary ({K} atoms); OMP with {n_nonzero} atoms"
    )
    print("| coder | seconds | objective (l1) or residual (OMP) | mean non-zeros |")
    print("|---|---:|---:|---:|")
    penalty = Penalty.make("l1", alpha)
    Xt, Dt = torch.from_numpy(Xc.astype(np.float64)), torch.from_numpy(D.astype(np.float64))
    coders = {
        "scikit-learn lasso_lars": lambda: SkSparseCoder(
            D, transform_algorithm="lasso_lars", transform_alpha=alpha
        ).transform(Xc),
        "scikit-learn lasso_cd": lambda: SkSparseCoder(
            D, transform_algorithm="lasso_cd", transform_alpha=alpha
        ).transform(Xc),
        "factorkit FISTA l1 (SparseCoder defaults)": lambda: sparse_encode(Xc, D, alpha=alpha),
        "scikit-learn omp": lambda: SkSparseCoder(
            D, transform_algorithm="omp", transform_n_nonzero_coefs=n_nonzero
        ).transform(Xc),
        "factorkit OMP": lambda: sparse_encode(Xc, D, algorithm="omp", n_nonzero_coefs=n_nonzero),
        "scikit-learn threshold": lambda: SkSparseCoder(
            D, transform_algorithm="threshold", transform_alpha=alpha
        ).transform(Xc),
    }
    times = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, run in coders.items():
            Z, seconds = timed(run)
            times[name] = seconds
            Zt = torch.from_numpy(np.asarray(Z, dtype=np.float64))
            if "omp" in name.lower():
                quality = float((Xt - Zt @ Dt).square().sum(1).mean())
            else:
                quality = objective(Xt, Zt, Dt, penalty)
            nonzeros = float((Zt != 0).sum(1).double().mean())
            print(f"| {name} | {seconds:.2f} | {quality:.4f} | {nonzeros:.1f} |", flush=True)
    fista = times["factorkit FISTA l1 (SparseCoder defaults)"]
    print(
        f"OMP: factorkit {times['scikit-learn omp'] / times['factorkit OMP']:.1f}x scikit-learn's speed; "
        f"l1: {times['scikit-learn lasso_lars'] / fista:.1f}x lasso_lars, "
        f"{times['scikit-learn lasso_cd'] / fista:.1f}x lasso_cd"
    )


if __name__ == "__main__":
    main()
