"""The provable alternating NMF of Li, Liang & Risteski (NeurIPS 2016, Algorithm 1, "Purification"):
decode with a thresholded ReLU, update the features by the pair-difference covariance. The maths is
in :mod:`factorkit.methods.nmf`'s docstring.
"""

from __future__ import annotations

import time

import torch

from factorkit.methods._nmf_data import EPS, NMFData


def alternating_updates(
    data: NMFData,
    A: torch.Tensor,
    *,
    step: float,
    r: float | None,
    alpha: float | None,
    decode: str,
    project: bool,
    max_iter: int,
    tol: float,
    callback=None,
):
    """Algorithm 1 of Li, Liang & Risteski on the rows of ``X`` (dense).

    Returns ``(A, alpha, iterations, history)``: the features ``A`` (D x k) and the decoding
    threshold used (``alpha=None``: a quarter of the mean positive entry of ``A_0^+ y``)."""
    Y = data.X
    Yc = Y - Y.mean(0)
    start = time.perf_counter()
    history = []
    if alpha is None:
        Z = Y @ torch.linalg.pinv(A).T
        positive = Z[Z > 0]
        alpha = 0.25 * float(positive.mean()) if positive.numel() else 0.0
    eta = step
    iterations = 0
    for iteration in range(1, max_iter + 1):
        iterations = iteration
        decoded = decode_weights(Y, A, alpha, decode)
        centred = decoded - decoded.mean(0)
        covariance = 2 * Yc.T @ centred / Y.shape[0]
        if r is None:
            variance = float(centred.square().mean(0).mean())
            if variance <= 0:
                raise ValueError(
                    "every decoded weight is below the threshold alpha: lower alpha or change init"
                )
            r = 1 / (2 * variance)
        updated = (1 - eta) * A + r * eta * covariance
        if project:
            updated = updated.clamp(min=0)
        change = float((updated - A).norm() / A.norm().clamp(min=EPS))
        A = updated
        W = decode_weights(Y, A, alpha, decode)
        error = float((Y - W @ A.T).norm())
        history.append({"error": error, "time": time.perf_counter() - start, "change": change})
        if callback is not None:
            callback(iteration, A.T.cpu().numpy())
        if change < tol:
            break
    return A, alpha, iterations, history


def decode_weights(Y: torch.Tensor, A: torch.Tensor, alpha: float, decode: str) -> torch.Tensor:
    """``phi_alpha(A^+ y)`` for each row ``y`` of ``Y``: ``'soft'`` the ReLU with bias, ``'hard'``
    ``z 1[z >= alpha]``."""
    Z = Y @ torch.linalg.pinv(A).T
    if decode == "soft":
        return (Z - alpha).clamp(min=0)
    return Z * (Z >= alpha)
