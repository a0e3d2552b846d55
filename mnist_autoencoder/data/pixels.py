"""Pixels and labels as the models take them: checked, then float32 in [0, 1]."""

from __future__ import annotations

import numpy as np

from mnist_autoencoder.errors import DataError

SIDE = 28
N_PIXELS = SIDE * SIDE


class InputError(DataError):
    """Input images that cannot be used; the message names the file and the problem."""


def as_unit_pixels(values: np.ndarray, name: str) -> np.ndarray:
    """uint8 0-255 or float 0-1 pixels as float32 in [0, 1]; refuse NaN and out-of-range."""
    if values.dtype == np.uint8:
        return values.astype(np.float32) / np.float32(255)
    if np.issubdtype(values.dtype, np.integer):
        if values.size and (values.min() < 0 or values.max() > 255):
            raise InputError(f"{name}: integer pixels must be in 0-255, found "
                             f"{values.min()}..{values.max()}")
        return values.astype(np.float32) / np.float32(255)
    if not np.issubdtype(values.dtype, np.floating):
        raise InputError(f"{name}: pixels must be numbers, not {values.dtype}")
    if np.isnan(values).any():
        raise InputError(f"{name}: pixels contain NaN")
    if values.size and (values.min() < 0 or values.max() > 1):
        raise InputError(f"{name}: float pixels must be in [0, 1], found "
                         f"{values.min():g}..{values.max():g} (uint8 0-255 is also accepted)")
    return values.astype(np.float32)


def checked_labels(labels: np.ndarray, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.size and (not np.issubdtype(labels.dtype, np.integer)
                        or labels.min() < 0 or labels.max() > 9):
        raise InputError(f"{name}: labels must be digits 0-9, found "
                         f"{labels.min()}..{labels.max()}" if labels.size else "no labels")
    return labels.astype(np.int16)
