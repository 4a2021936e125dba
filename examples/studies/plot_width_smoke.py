"""
G&C vs GD as width grows (smoke scale)
======================================

The `width` preset at its smoke scale (4 seeds, widths 5, 20, 80, linear): G&C's generalization
loss rises towards random guessing as the net widens, GD's stays near zero. `factorkit study width`
runs the default scale; `factorkit study paper` the paper's thresholds.
"""

import tempfile

import matplotlib.pyplot as plt

from factorkit.experiments import preset, run_study
from factorkit.experiments.summary import aggregate, study_rows

folder = tempfile.mkdtemp()
run_study(preset("width", "smoke"), folder, workers=1, progress=False)
records = aggregate(study_rows(folder))

fig, axis = plt.subplots(figsize=(5, 3.5))
for method, label in (("gc", "G&C"), ("gd", "GD")):
    points = sorted((r for r in records if r["method"] == method), key=lambda r: r["x"])
    axis.plot([r["x"] for r in points], [r["median"] for r in points], "o-", label=label)
prior = [r["prior_gen_loss"] for r in records if r["method"] == "gc"]
axis.axhline(sum(prior) / len(prior), color="gray", linestyle="--", label="random guess")
axis.set_xscale("log")
axis.set_xlabel("width")
axis.set_ylabel("generalization loss (median over seeds)")
axis.legend()
fig.tight_layout()
plt.show()
