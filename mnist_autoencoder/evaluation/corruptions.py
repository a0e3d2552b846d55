"""MNIST-C-style corruptions of digit images, with numpy and scipy.ndimage only.

Every corruption takes flat images ``x`` of shape (n, 784), float in [0, 1], and
returns the same shape as float32 clipped to [0, 1]; the work is done in float64
so the clipping is the only rounding that matters. ``CORRUPTIONS`` holds the
fixed strengths of the anomaly benchmark (``benchmarks/anomaly.py``), named after
their parameter; the parametrised functions behind them (``rotate``, ``shift``,
``blur``, ``add_noise``, ...) serve any other strength, e.g. for drift tests.

The corruption types are those of MNIST-C (Mu & Gilmer, 2019), at the strengths
of the measurements that chose ``scoring.DEFAULT_SCORE``. ``MILD`` names the four
that keep the digit readable: the hard cases for an anomaly score.

Randomness is always an argument: a ``np.random.Generator`` for the functions,
a ``seed`` for ``corrupt``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from mnist_autoencoder.errors import ParameterError

Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# (rows, cols) steps of one pixel: right, left, down, up (the score study's order, so the
# same generator state moves the same images the same way)
_DIRECTIONS = np.array([(0, 1), (0, -1), (1, 0), (-1, 0)])


def _images(x: np.ndarray) -> np.ndarray:
    """Flat (n, side * side) images as (n, side, side) float64."""
    x = np.asarray(x)
    side = math.isqrt(x.shape[1]) if x.ndim == 2 else 0
    if x.ndim != 2 or side * side != x.shape[1]:
        raise ValueError(f"expected flat square images of shape (n, side * side), got {x.shape}")
    return x.reshape(len(x), side, side).astype(np.float64)


def _flat(images: np.ndarray) -> np.ndarray:
    """(n, side, side) images back to flat float32, clipped to [0, 1]."""
    return np.clip(images, 0, 1).reshape(len(images), -1).astype(np.float32)


def rotate(x: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate each image by ``degrees`` counter-clockwise about its centre (bilinear, zero fill)."""
    # axes=(2, 1): the plane of (cols, rows), so positive angles turn counter-clockwise
    return _flat(ndimage.rotate(_images(x), degrees, axes=(2, 1), reshape=False, order=1,
                                mode="constant"))


def shift(x: np.ndarray, pixels: int, rng: np.random.Generator) -> np.ndarray:
    """Move each image ``pixels`` px up, down, left or right (one direction drawn per image).

    Whole-pixel moves (order 0) with zero fill: the ink is moved, never resampled.
    """
    images = _images(x)
    out = np.empty_like(images)
    picks = rng.integers(0, len(_DIRECTIONS), len(images))
    for k, (rows, cols) in enumerate(_DIRECTIONS * pixels):
        chosen = picks == k
        out[chosen] = ndimage.shift(images[chosen], (0, rows, cols), order=0, mode="constant")
    return _flat(out)


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each image with ``sigma`` px (zero beyond the border)."""
    return _flat(ndimage.gaussian_filter(_images(x), sigma=(0, sigma, sigma), mode="constant"))


def add_noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add independent Gaussian noise of standard deviation ``sigma`` to every pixel."""
    images = _images(x)
    return _flat(images + rng.normal(0.0, sigma, images.shape))


def shot_noise(x: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson noise: each pixel becomes Poisson(x * photons) / photons (fewer photons: noisier)."""
    return _flat(rng.poisson(_images(x) * photons) / photons)


def impulse_noise(x: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper: a share ``amount`` of the pixels, half set to 0 and half to 1."""
    images = _images(x)
    draw = rng.random(images.shape)
    images[draw < amount / 2] = 0.0
    images[(draw >= amount / 2) & (draw < amount)] = 1.0
    return _flat(images)


def invert(x: np.ndarray) -> np.ndarray:
    """White digits on black become black digits on white: 1 - x."""
    return _flat(1.0 - _images(x))


def stripes(x: np.ndarray, lines: tuple[int, ...] = (9, 18)) -> np.ndarray:
    """Set the rows and the columns numbered ``lines`` to full intensity (a grid over the digit)."""
    images = _images(x)
    images[:, list(lines), :] = 1.0
    images[:, :, list(lines)] = 1.0
    return _flat(images)


def brightness(x: np.ndarray, delta: float) -> np.ndarray:
    """Add ``delta`` to every pixel (then clip): a grey background."""
    return _flat(_images(x) + delta)


def fog(x: np.ndarray, strength: float, rng: np.random.Generator,
        sigma: float = 3.0) -> np.ndarray:
    """Add a smooth random field: uniform noise blurred with ``sigma``, scaled to [0, strength].

    Each image gets its own field, rescaled to span exactly [0, 1] before scaling,
    so every image is fogged equally hard.
    """
    images = _images(x)
    field = ndimage.gaussian_filter(rng.random(images.shape), sigma=(0, sigma, sigma))
    field -= field.min(axis=(1, 2), keepdims=True)
    field /= field.max(axis=(1, 2), keepdims=True)
    return _flat(images + strength * field)


# name -> corruption at the benchmark's strength; the name carries the parameter
CORRUPTIONS: dict[str, Corruption] = {
    "rotate23": lambda x, rng: rotate(x, 23),
    "shift3": lambda x, rng: shift(x, 3, rng),
    "gaussian_blur_s1": lambda x, rng: blur(x, 1.0),
    "shot_noise_c60": lambda x, rng: shot_noise(x, 60, rng),
    "gaussian_noise_s0.18": lambda x, rng: add_noise(x, 0.18, rng),
    "impulse_noise_0.09": lambda x, rng: impulse_noise(x, 0.09, rng),
    "inversion": lambda x, rng: invert(x),
    "stripes": lambda x, rng: stripes(x),
    "brightness_+0.3": lambda x, rng: brightness(x, 0.3),
    "fog_0.5": lambda x, rng: fog(x, 0.5, rng),
}
# the corruptions that leave the digit readable: hard to tell from clean digits
MILD = ("rotate23", "shift3", "gaussian_blur_s1", "shot_noise_c60")


def corrupt(x: np.ndarray, name: str, seed: int) -> np.ndarray:
    """Apply the corruption ``name`` of ``CORRUPTIONS`` with a generator seeded by ``seed``."""
    if name not in CORRUPTIONS:
        raise ParameterError(f"unknown corruption {name!r}; choose one of {sorted(CORRUPTIONS)}")
    return CORRUPTIONS[name](x, np.random.default_rng(seed))


def corrupted_images(x: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Every corruption of ``CORRUPTIONS`` applied to ``x``, as 8-bit images (n, 784) uint8.

    Rounded to whole grey levels, as MNIST-C stores its images and as any image file
    holds them: a tenth of the float size, so a test split's corruptions can be kept
    and reused by every model that is scored on them.
    """
    return {name: np.round(corrupt(x, name, seed) * 255).astype(np.uint8)
            for name in CORRUPTIONS}
