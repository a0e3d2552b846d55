"""The corruptions of the anomaly benchmark keep their contract: shape, dtype, range, seeding."""

import numpy as np
import pytest

from mnist_autoencoder.data.splits import normalize
from mnist_autoencoder.evaluation.corruptions import (
    CORRUPTIONS,
    MILD,
    blur,
    corrupt,
    corrupted_images,
    invert,
    rotate,
    shift,
)
from tests.helpers import make_digits

RANDOM = ("shift3", "shot_noise_c60", "gaussian_noise_s0.18", "impulse_noise_0.09", "fog_0.5")


@pytest.fixture(scope="module")
def x():
    return normalize(make_digits(16, seed=0)[0])


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_shape_dtype_and_range_are_kept(x, name):
    out = corrupt(x, name, seed=0)

    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert not np.array_equal(out, x)  # it did change something
    assert np.array_equal(x, normalize(make_digits(16, seed=0)[0]))  # the input is untouched


@pytest.mark.parametrize("name", RANDOM)
def test_random_corruptions_follow_the_seed(x, name):
    assert np.array_equal(corrupt(x, name, seed=3), corrupt(x, name, seed=3))
    assert not np.array_equal(corrupt(x, name, seed=3), corrupt(x, name, seed=4))


@pytest.mark.parametrize("name", sorted(set(CORRUPTIONS) - set(RANDOM)))
def test_deterministic_corruptions_ignore_the_seed(x, name):
    assert np.array_equal(corrupt(x, name, seed=3), corrupt(x, name, seed=4))


def test_the_mild_four_are_corruptions():
    assert set(MILD) <= set(CORRUPTIONS) and len(MILD) == 4


def test_inversion_twice_is_the_identity(x):
    np.testing.assert_allclose(invert(invert(x)), x, atol=1e-6)


def test_rotation_and_shift_by_zero_are_the_identity(x):
    np.testing.assert_allclose(rotate(x, 0), x, atol=1e-6)
    np.testing.assert_array_equal(shift(x, 0, np.random.default_rng(0)), x)


def test_rotation_by_a_full_turn_is_the_identity(x):
    np.testing.assert_allclose(rotate(x, 360), x, atol=1e-5)


def test_shift_moves_the_ink_without_resampling(x):
    images = x.reshape(-1, 28, 28).copy()
    images[:, :3], images[:, -3:], images[:, :, :3], images[:, :, -3:] = 0, 0, 0, 0
    inner = images.reshape(len(x), -1)

    moved = shift(inner, 3, np.random.default_rng(0))

    # with a clean 3-px frame nothing falls off: the same pixel values, elsewhere
    np.testing.assert_array_equal(np.sort(moved, axis=1), np.sort(inner, axis=1))
    assert not np.array_equal(moved, inner)


def test_blur_keeps_the_ink_and_lowers_the_peaks(x):
    images = x.reshape(-1, 28, 28).copy()
    images[:, :5], images[:, -5:], images[:, :, :5], images[:, :, -5:] = 0, 0, 0, 0
    inner = images.reshape(len(x), -1)  # away from the border no ink leaks out

    blurred = blur(inner, 1.0)

    np.testing.assert_allclose(blurred.sum(axis=1), inner.sum(axis=1), rtol=0.02)
    assert (blurred.max(axis=1) < inner.max(axis=1)).all()


def test_unknown_name_names_the_allowed_ones(x):
    with pytest.raises(ValueError, match="unknown corruption 'snow'") as error:
        corrupt(x, "snow", seed=0)
    assert all(name in str(error.value) for name in CORRUPTIONS)


def test_images_must_be_flat_and_square():
    with pytest.raises(ValueError, match="flat square images"):
        rotate(np.zeros((2, 28, 28), np.float32), 10)
    with pytest.raises(ValueError, match="flat square images"):
        rotate(np.zeros((2, 780), np.float32), 10)


def test_the_stored_corruptions_are_the_corruptions_as_8_bit_images(x):
    images = corrupted_images(x, seed=0)
    assert list(images) == list(CORRUPTIONS)
    for name, stored in images.items():
        assert stored.dtype == np.uint8 and stored.shape == x.shape
        np.testing.assert_allclose(stored / 255, corrupt(x, name, seed=0), atol=0.5 / 255 + 1e-6)
