"""Whitened natural-image patches from the photographs that ship with scikit-learn (nothing downloaded).

The images (``sklearn.datasets.load_sample_images``: ``china.jpg`` and ``flower.jpg``, 427 x 640)
are turned to grey levels, whitened by the filter of Olshausen & Field ("Sparse coding with an
overcomplete basis set: a strategy employed by V1?", Vision Research 1997): in the frequency
domain ``R(f) = |f| exp(-(|f| / f0)^4)`` with ``f0 = 0.4`` cycles per pixel (their 200 cycles
per 512-pixel picture), which
flattens the ``1/f`` amplitude spectrum of natural images and removes the highest frequencies,
and each image is scaled to unit variance. Patches are drawn at random positions (seeded), their
mean (the DC component) is removed, and the whole set is scaled to unit variance per pixel.
"""

from __future__ import annotations

import math

import numpy as np

from factorkit._validation import check_float, check_int


def whiten_image(image: np.ndarray, cutoff: float = 0.4) -> np.ndarray:
    """The Olshausen-Field whitening of a grey image (2-D array), scaled to unit variance;
    ``cutoff``: ``f0`` in cycles per pixel (at most 0.5, the Nyquist frequency)."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be a 2-D grey image, got shape {image.shape}")
    cutoff = check_float("cutoff", cutoff, positive=True, upper=0.5)
    rows, cols = image.shape
    fy = np.fft.fftfreq(rows)[:, None]
    fx = np.fft.fftfreq(cols)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    spectrum = np.fft.fft2(image - image.mean()) * radius * np.exp(-((radius / cutoff) ** 4))
    white = np.real(np.fft.ifft2(spectrum))
    return white / white.std()


def natural_patches(
    size: int = 8, n_patches: int = 100_000, *, whiten: bool = True, seed: int = 0, dtype=np.float32
) -> np.ndarray:
    """``n_patches`` random ``size x size`` patches (rows of length ``size^2``) of the two sample
    images, whitened (see the module docstring), DC removed, unit variance per pixel."""
    from sklearn.datasets import load_sample_images

    size = check_int("size", size, minimum=2)
    n_patches = check_int("n_patches", n_patches, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    images = []
    for rgb in load_sample_images().images:
        grey = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        images.append(whiten_image(grey) if whiten else (grey - grey.mean()) / grey.std())
    if any(min(image.shape) < size for image in images):
        raise ValueError(f"size must be at most the images' smaller side {min(images[0].shape)}, got {size}")
    rng = np.random.default_rng(seed)
    which = rng.integers(len(images), size=n_patches)
    patches = np.empty((n_patches, size * size))
    for index, image in enumerate(images):
        picked = np.flatnonzero(which == index)
        top = rng.integers(image.shape[0] - size + 1, size=picked.size)
        left = rng.integers(image.shape[1] - size + 1, size=picked.size)
        offsets = np.arange(size)
        rows = top[:, None, None] + offsets[None, :, None]
        cols = left[:, None, None] + offsets[None, None, :]
        patches[picked] = image[rows, cols].reshape(picked.size, -1)
    patches -= patches.mean(axis=1, keepdims=True)
    patches /= patches.std()
    return patches.astype(dtype)


def atoms_grid(components, patch_shape: tuple[int, int] | None = None, *, gap: int = 1) -> np.ndarray:
    """The atoms tiled as one grey image: each atom (a row of ``components``) reshaped to
    ``patch_shape`` (default: square), scaled to [0, 1] by its own largest magnitude (0.5 = zero),
    in a near-square grid with ``gap`` black pixels between tiles (and black in unused cells)."""
    atoms = np.asarray(components, dtype=np.float64)
    if atoms.ndim != 2:
        raise ValueError(f"components must be 2-D (atoms as rows), got shape {atoms.shape}")
    if patch_shape is None:
        side = math.isqrt(atoms.shape[1])
        if side * side != atoms.shape[1]:
            raise ValueError(f"atoms of {atoms.shape[1]} features are not square: pass patch_shape")
        patch_shape = (side, side)
    rows_p, cols_p = patch_shape
    if rows_p * cols_p != atoms.shape[1]:
        raise ValueError(f"patch_shape {patch_shape} does not hold {atoms.shape[1]} features")
    columns = math.ceil(math.sqrt(atoms.shape[0]))
    rows = math.ceil(atoms.shape[0] / columns)
    image = np.zeros((rows * (rows_p + gap) - gap, columns * (cols_p + gap) - gap))
    scale = np.abs(atoms).max(axis=1)
    for index, (atom, peak) in enumerate(zip(atoms, scale, strict=True)):
        r, c = divmod(index, columns)
        tile = 0.5 + 0.5 * atom.reshape(patch_shape) / (peak if peak > 0 else 1.0)
        image[
            r * (rows_p + gap) : r * (rows_p + gap) + rows_p, c * (cols_p + gap) : c * (cols_p + gap) + cols_p
        ] = tile
    return image


def save_atoms_image(components, path, patch_shape: tuple[int, int] | None = None, *, zoom: int = 4) -> None:
    """Write :func:`atoms_grid` as a PNG, each pixel ``zoom`` x ``zoom``."""
    import matplotlib.pyplot as plt

    image = np.kron(atoms_grid(components, patch_shape), np.ones((zoom, zoom)))
    plt.imsave(path, image, cmap="gray", vmin=0.0, vmax=1.0)
