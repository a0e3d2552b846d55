"""Reconstruction metrics, plain NumPy: per-image BCE and MSE, per-digit losses, argmax matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd

EPSILON = 1e-7  # Keras clips probabilities to [eps, 1 - eps] in binary cross-entropy


def per_sample_bce(x: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Binary cross-entropy of each row, averaged over pixels, as Keras computes it.

    Clipping happens in float32 as in Keras (1 - 1e-7 rounds to 1 - 2**-23 there),
    so a saturated sigmoid output costs the same here as in ``model.evaluate``.
    """
    p = np.clip(reconstruction.astype(np.float32), np.float32(EPSILON),
                np.float32(1 - EPSILON)).astype(np.float64)
    return -np.mean(x * np.log(p) + (1 - x) * np.log(1 - p), axis=1)


def per_sample_mse(x: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    return np.mean((x.astype(np.float64) - reconstruction) ** 2, axis=1)


def reconstruction_errors(x: np.ndarray, reconstruction: np.ndarray) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Per-image (BCE, MSE) of any reconstruction.

    Reconstructions that leave [0, 1] (PCA's) are clipped for BCE, which needs
    probabilities; a sigmoid decoder's are unchanged by it.
    """
    return (per_sample_bce(x, np.clip(reconstruction, 0, 1)),
            per_sample_mse(x, reconstruction))


def mean_errors(x: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
    """Mean test BCE and MSE of a reconstruction."""
    bce, mse = reconstruction_errors(x, reconstruction)
    return {"test_bce": float(bce.mean()), "test_mse": float(mse.mean())}


def loss_by_digit(labels: np.ndarray, bce: np.ndarray, mse: np.ndarray) -> pd.DataFrame:
    """Mean BCE and MSE per label, with counts."""
    frame = pd.DataFrame({"digit": labels.astype(int), "bce": bce, "mse": mse})
    return (frame.groupby("digit").agg(n=("bce", "size"), bce=("bce", "mean"), mse=("mse", "mean"))
            .reset_index())


def argmax_pixel_confusion(x: np.ndarray, reconstruction: np.ndarray) -> pd.DataFrame:
    """The seed's exploratory matrix: brightest pixel of each original vs of its reconstruction.

    Rows are the original's argmax pixel index, columns the reconstruction's, over
    every index that occurs on either side. It says whether the reconstruction
    keeps the brightest stroke in place; it is not a classification result.
    """
    from sklearn.metrics import confusion_matrix  # imported here: 1.4 s that cached runs skip

    original, rebuilt = x.argmax(axis=1), reconstruction.argmax(axis=1)
    labels = np.union1d(original, rebuilt)
    matrix = confusion_matrix(original, rebuilt, labels=labels)
    return pd.DataFrame(matrix, index=pd.Index(labels, name="original_argmax"),
                        columns=pd.Index(labels, name="reconstruction_argmax"))
