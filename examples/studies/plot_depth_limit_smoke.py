"""
The depth limit: lower thresholds generalize better
===================================================

The `depth_limit` preset at its smoke scale (one seed here, depths 2 and 8, eps 0.015 and 0.0015, SMC
where rejection cannot reach): at either depth the lower threshold gives the lower G&C
generalization loss, and the sampled matrices become rank one.
"""

import tempfile

import matplotlib.pyplot as plt

from factorkit.experiments import StudyConfig, preset, run_study
from factorkit.experiments.store import load_rows

config = preset("depth_limit", "smoke").to_dict()
config["seeds"] = 1
folder = tempfile.mkdtemp()
run_study(StudyConfig.from_dict(config), folder, workers=1, progress=False)
rows = load_rows(folder)

fig, axis = plt.subplots(figsize=(5, 3.5))
for eps in sorted({r["eps"] for r in rows}, reverse=True):
    points = sorted((r for r in rows if r["eps"] == eps), key=lambda r: r["depth"])
    depths = sorted({r["depth"] for r in points})
    losses = [next(r["gen_loss"] for r in points if r["depth"] == d) for d in depths]
    axis.plot(depths, losses, "o-", label=f"eps = {eps:g}")
    energy = min(r["rank1_energy"] for r in points)
    print(f"eps {eps:g}: smallest rank-1 energy of the sampled W {energy:.3f}")
axis.set_xlabel("depth")
axis.set_ylabel("G&C generalization loss")
axis.legend()
fig.tight_layout()
plt.show()
