import numpy as np
import pytest

from mnist_autoencoder.analysis import extremes, unit_statistics
from mnist_autoencoder.baselines import fit_pca
from mnist_autoencoder.probes import linear_probe


def test_probe_is_perfect_on_a_linearly_separable_toy_set():
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 10
    labels = rng.integers(0, 3, 300)
    x = centres[labels] + rng.normal(0, 0.5, (300, 3))
    accuracy, confusion = linear_probe(x[:200], labels[:200], x[200:], labels[200:], seed=0)
    assert accuracy == 1.0
    assert confusion.shape == (3, 3) and np.trace(confusion) == 100


def test_probe_is_at_chance_on_noise():
    rng = np.random.default_rng(1)
    x, labels = rng.normal(size=(2000, 5)), rng.integers(0, 2, 2000)
    accuracy, _ = linear_probe(x[:1000], labels[:1000], x[1000:], labels[1000:], seed=0)
    assert 0.45 < accuracy < 0.56


def test_unit_statistics_counts_dead_relu_units():
    codes = np.array([[0.0, 1.0, 0.0], [0.0, 3.0, 2.0]])
    units = unit_statistics(codes)
    assert list(units["dead"]) == [True, False, False]
    assert list(units["active_fraction"]) == [0.0, 1.0, 0.5]
    np.testing.assert_allclose(units["mean"], [0, 2, 1])


def test_extremes_orders_worst_and_best():
    worst, best = extremes(np.array([0.5, 0.1, 0.9, 0.3]), k=2)
    assert list(worst) == [2, 0] and list(best) == [1, 3]


def test_pca_reconstruction_matches_a_numpy_svd_oracle():
    rng = np.random.default_rng(0)
    x = rng.random((100, 8))
    pca = fit_pca(x, 3, seed=0)
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    oracle = centred @ vt[:3].T @ vt[:3] + x.mean(axis=0)
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(x)), oracle, atol=1e-8)
    assert pytest.approx(np.mean((x - oracle) ** 2)) == np.mean(
        (x - pca.inverse_transform(pca.transform(x))) ** 2)
