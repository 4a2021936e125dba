"""
NMF parts of handwritten digits
===============================

`NMF` with its defaults on scikit-learn's digits (1,797 images of 8 x 8 pixels, shipped with
scikit-learn): the 10 learned components, and the relative error.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from factorkit.methods import NMF

X = load_digits().data
model = NMF(n_components=10, random_state=0)
W = model.fit_transform(X)
error = np.linalg.norm(X - W @ model.components_) / np.linalg.norm(X)
print(f"relative error {error:.4f} after {model.n_iter_} iterations")

fig, axes = plt.subplots(1, 10, figsize=(10, 1.4))
for axis, component in zip(axes, model.components_, strict=True):
    axis.imshow(component.reshape(8, 8), cmap="Greys")
    axis.set_axis_off()
plt.show()
