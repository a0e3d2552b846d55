"""Evaluation: test-set reconstruction metrics, per-digit losses and the seed's argmax matrix."""

from __future__ import annotations

from typing import Any

import numpy as np

from mnist_autoencoder.data.splits import Split
from mnist_autoencoder.evaluation.metrics import (
    argmax_pixel_confusion,
    loss_by_digit,
    mean_errors,
    reconstruction_errors,
)

N_SAMPLES_SHOWN = 10
TEST_ERRORS = "test_errors.npz"  # per-image codes and errors, reused by the analysis


def evaluate_reconstruction(test: Split, codes: np.ndarray, reconstruction: np.ndarray,
                            recent: tuple[Split, np.ndarray] | None = None
                            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (``{file name: value}`` to write, headline metrics) for one model's test set.

    ``recent`` is a grown snapshot's 'recent' holdout (images from its batches) and
    its reconstruction: ``recent_bce``, ``recent_mse`` and ``n_recent`` join the metrics.
    """
    bce, mse = reconstruction_errors(test.x, reconstruction)
    confusion = argmax_pixel_confusion(test.x, reconstruction)
    metrics = {
        "test_bce": float(bce.mean()),
        "test_mse": float(mse.mean()),
        "n_test": int(len(test.y)),
        "argmax_pixel_agreement": float(np.trace(confusion.to_numpy()) / len(test.y)),
    }
    if recent is not None and len(recent[0].y):
        errors = mean_errors(recent[0].x, recent[1])
        metrics |= {"recent_bce": errors["test_bce"], "recent_mse": errors["test_mse"],
                    "n_recent": int(len(recent[0].y))}
    shown = slice(0, N_SAMPLES_SHOWN)
    outputs = {
        "metrics.json": metrics,
        "loss_by_digit.csv": loss_by_digit(test.y, bce, mse),
        "argmax_confusion.csv": confusion.reset_index(),
        "samples.npz": {"x": test.x[shown], "codes": codes[shown],
                        "reconstruction": reconstruction[shown], "labels": test.y[shown]},
        TEST_ERRORS: {"codes": codes, "bce": bce, "mse": mse},
    }
    return outputs, metrics
