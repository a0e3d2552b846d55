import numpy as np
import pandas as pd
import pytest

from mnist_autoencoder.evaluation.metrics import (
    argmax_pixel_confusion,
    loss_by_digit,
    per_sample_bce,
    per_sample_mse,
)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    x = rng.random((6, 5)).astype(np.float32)
    return x, np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)


def test_bce_matches_the_formula_and_keras(pair):
    x, r = pair
    p = np.clip(r, np.float32(1e-7), np.float32(1 - 1e-7)).astype(np.float64)
    oracle = np.mean(-(x * np.log(p) + (1 - x) * np.log(1 - p)), axis=1)
    np.testing.assert_allclose(per_sample_bce(x, r), oracle, rtol=1e-12)
    keras = pytest.importorskip("keras")
    reference = float(keras.losses.BinaryCrossentropy()(x, r))
    assert per_sample_bce(x, r).mean() == pytest.approx(reference, rel=1e-5)


def test_bce_of_a_binary_image_reconstructed_exactly_is_near_zero():
    x = np.array([[0.0, 1.0, 1.0]], np.float32)
    assert per_sample_bce(x, x)[0] < 1e-6


def test_mse(pair):
    x, r = pair
    np.testing.assert_allclose(per_sample_mse(x, r), ((x - r) ** 2).mean(axis=1), rtol=1e-6)


def test_loss_by_digit_groups_and_averages():
    frame = loss_by_digit(np.array([1, 1, 3]), np.array([0.2, 0.4, 1.0]), np.array([1, 3, 5.0]))
    expected = pd.DataFrame({"digit": [1, 3], "n": [2, 1], "bce": [0.3, 1.0], "mse": [2.0, 5.0]})
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False)


def test_argmax_confusion_counts_brightest_pixel_pairs():
    x = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], np.float32)
    r = np.array([[0, .9, 0], [0, .2, .1], [0, 0, .8]], np.float32)
    matrix = argmax_pixel_confusion(x, r)
    assert list(matrix.index) == [0, 1, 2]
    assert matrix.to_numpy().sum() == 3 and np.trace(matrix.to_numpy()) == 2
    assert matrix.loc[0, 1] == 1  # original's brightest pixel 0 came back at pixel 1
