"""
Robust recovery under gross outliers
====================================

A 30 x 30 rank-2 PSD matrix observed through 600 Gaussian measurements, 20% of them replaced by gross
noise: the sub-gradient method on the l1 loss recovers it, plain l2 gradient descent does not.
"""

import matplotlib.pyplot as plt

from factorkit.fit.subgradient import subgradient_method
from factorkit.problems import corrupt, make_sensing_problem

clean = make_sensing_problem(30, 30, rank=2, n=600, seed=0, dtype="float64", psd=True)
problem = corrupt(clean, outliers=0.2, seed=1)
fig, axis = plt.subplots(figsize=(5, 3.5))
# step sizes as the robust preset: m / 10 for l1, m^2 / 10 for l2 (their sub-gradients scale as 1/m, 1/m^2)
for loss, step in (("l1", 3.0), ("l2", 90.0)):
    result = subgradient_method(problem, 2, loss=loss, step=step, decay=0.998, steps=2000, init_scale=1e-8)
    axis.semilogy([10 * i for i in range(len(result.history))], result.history, label=f"{loss} loss")
    print(f"{loss}: relative error {result.rel_error:.2e}")
axis.set_xlabel("step")
axis.set_ylabel("||W - W*|| / ||W*||")
axis.legend()
fig.tight_layout()
plt.show()
