"""Gradient descent on the quartic word2vec loss learns one direction at a time (not a timing).

The 1000 most frequent words of gensim's bundled ``head500.noblanks.cor`` (window 5, psi = 5),
d = 10, W_0 = 1e-6 G, step 0.1 / lambda_max. Plots the squared singular values of W over time
with each direction's predicted half-way time ``ln(lambda_k / s0_k^2 - 1) / (2 lambda_k)``
(``s0_k^2 = ||v_k^T W_0||^2``) and its plateau ``lambda_k``; prints observed vs predicted times
(gradient flow, and the same with the GD step's growth rate ``ln(1 + lr lambda_k) / lr``) and the
Gram-matrix distance of the end point to the closed form.
Writes docs/figures/qwem_dynamics.png.

Run: ``python benchmarks/qwem_dynamics.py`` (about 1.2 min: every step goes through the core
trainer, ``train_gd``, with autograd; needs gensim for the corpus file).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from gensim.test.utils import datapath

from factorkit.methods.embeddings import CorpusStatistics, gradient_descent_path, switch_on_times


def main() -> None:
    stats = CorpusStatistics(min_count=5, max_vocab=1000, window=5).fit(datapath("head500.noblanks.cor"))
    M = stats.target_dense(5.0)
    d = 10
    values, vectors = np.linalg.eigh(M)
    lam, top = values[::-1][:d], vectors[:, ::-1][:, :d]
    W0 = 1e-6 * np.random.default_rng(0).standard_normal((M.shape[0], d))
    lr = 0.1 / lam[0]
    steps = int(1.3 * switch_on_times(lam[-1:], 1e-12 * d)[0] / lr) + 8000
    W, times, singular = gradient_descent_path(M, d, lr=lr, steps=steps, initial=W0, log_every=5)
    initial_sq = np.square(top.T @ W0).sum(1)
    predicted = switch_on_times(lam, initial_sq)
    discrete = switch_on_times(lam, initial_sq, lr=lr)
    observed = np.array([times[np.argmax(singular[:, k] ** 2 >= lam[k] / 2)] for k in range(d)])
    closed = top * np.sqrt(lam)
    gram_error = np.abs(W @ W.T - closed @ closed.T).max() / np.abs(closed @ closed.T).max()
    print(f"vocabulary {M.shape[0]}, steps {steps}, end-point Gram error {gram_error:.2e}")
    print(
        "| k | lambda_k | predicted t (flow) | predicted t (GD step) | observed t "
        "| ratio to flow | to GD step |"
    )
    print("|---|---|---|---|---|---|---|")
    for k in range(d):
        print(
            f"| {k + 1} | {lam[k]:.2f} | {predicted[k]:.3f} | {discrete[k]:.3f} | {observed[k]:.3f} "
            f"| {observed[k] / predicted[k]:.2f} | {observed[k] / discrete[k]:.3f} |"
        )
    fig, axis = plt.subplots(figsize=(6, 4))
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, d))
    for k in range(d):
        axis.plot(times, singular[:, k] ** 2, color=colors[k], lw=1.2)
        axis.axvline(predicted[k], color=colors[k], ls=":", lw=0.8)
        axis.axhline(lam[k], color=colors[k], ls="--", lw=0.5)
    axis.set_xlim(0, 1.6 * predicted.max())
    axis.set_xlabel("time t = step x learning rate")
    axis.set_ylabel("squared singular values of W")
    axis.set_title("QWEM gradient descent: dotted = predicted switch-on, dashed = eigenvalue", fontsize=8)
    fig.tight_layout()
    out = Path(__file__).resolve().parent.parent / "docs" / "figures" / "qwem_dynamics.png"
    fig.savefig(out, dpi=120)
    print(out)


if __name__ == "__main__":
    main()
