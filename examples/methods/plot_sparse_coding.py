"""
Sparse coding: atoms of natural images, and the bars found by binary sparse coding
==================================================================================

Left: 64 atoms learned from 2,000 whitened 8x8 patches of scikit-learn's sample photographs with the
CEL0 penalty (the continuous exact l0 relaxation), shown by `atoms_grid`: localized, oriented edges.
Right: `BinarySparseCoding` on the bars benchmark (5x5 images, 10 bars, each present with probability
0.2, noise sigma 2) recovers the ten bars and the prior and noise that generated them.
"""

import matplotlib.pyplot as plt

from factorkit.methods import BinarySparseCoding, DictionaryLearning
from factorkit.problems.bars import bars
from factorkit.problems.patches import atoms_grid, natural_patches

patches = natural_patches(8, 2_000, seed=0)
dictionary = DictionaryLearning(64, penalty="cel0", alpha=0.5, random_state=0).fit(patches)
codes = dictionary.transform(patches)
print(f"CEL0: {(codes != 0).sum(1).mean():.1f} active atoms per patch on average")

X, W, _ = bars(5, 1_000, seed=0)
bsc = BinarySparseCoding(10, random_state=0).fit(X)
print(f"BSC: prior {bsc.prior_:.3f} (true 0.2), noise {bsc.noise_:.2f} (true 2)")

fig, axes = plt.subplots(1, 2, figsize=(9, 4))
axes[0].imshow(atoms_grid(dictionary.components_), cmap="gray", vmin=0, vmax=1)
axes[0].set_title("64 CEL0 atoms, whitened 8x8 patches")
axes[1].imshow(atoms_grid(bsc.components_), cmap="gray", vmin=0, vmax=1)
axes[1].set_title("BSC on bars: the 10 learned causes")
for axis in axes:
    axis.set_axis_off()
fig.tight_layout()
plt.show()
