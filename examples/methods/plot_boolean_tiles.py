"""
Boolean MF recovers planted tiles
=================================

A 200 x 120 binary matrix made of 4 overlapping tiles with 3% noise, factorized by `BooleanMF`
(Elbmf, then Boolean polishing): the data, the reconstruction `U o V`, and the error.
"""

import matplotlib.pyplot as plt

from factorkit.methods import BooleanMF
from factorkit.problems.boolean import planted_tiles

data = planted_tiles(200, 120, 4, density=0.1, additive=0.03, destructive=0.03, seed=0)
model = BooleanMF(n_components=4, random_state=0)
U = model.fit_transform(data.X)
reconstruction = model.inverse_transform(U)
print(f"Boolean error {model.reconstruction_err_} of {data.X.size} entries, recall {model.recall_:.3f}")

fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
for axis, image, title in zip(axes, (data.X, reconstruction), ("data", "U o V"), strict=True):
    axis.imshow(image, cmap="Greys", aspect="auto", interpolation="nearest")
    axis.set_title(title)
    axis.set_axis_off()
fig.tight_layout()
plt.show()
