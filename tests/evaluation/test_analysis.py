import numpy as np
import pytest

from mnist_autoencoder.evaluation.analysis import extremes, unit_statistics
from mnist_autoencoder.evaluation.baselines import fit_pca
from mnist_autoencoder.evaluation.probes import linear_probe


def test_probe_is_perfect_on_a_linearly_separable_toy_set():
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 10
    labels = rng.integers(0, 3, 300)
    x = centres[labels] + rng.normal(0, 0.5, (300, 3))
    accuracy, confusion, _ = linear_probe(x[:200], labels[:200], x[200:], labels[200:], seed=0)
    assert accuracy == 1.0
    assert confusion.shape == (3, 3) and np.trace(confusion) == 100


def test_probe_is_at_chance_on_noise():
    rng = np.random.default_rng(1)
    x, labels = rng.normal(size=(2000, 5)), rng.integers(0, 2, 2000)
    accuracy, _, _ = linear_probe(x[:1000], labels[:1000], x[1000:], labels[1000:], seed=0)
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


def blobs(n, seed, shift=0.0, scale=1.0):
    """Ten overlapping Gaussian classes in 20 dimensions (a probe reaches ~80-90%)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    centres = np.random.default_rng(99).normal(0, 1.0, (10, 20))
    return (centres[labels] + rng.normal(0, 1.0, (n, 20))) * scale + shift, labels


def test_a_warm_probe_starts_as_the_same_function_in_the_new_standardisation():
    from mnist_autoencoder.evaluation.probes import warm_solution

    x, y = blobs(3000, 0)
    _, _, state = linear_probe(x[:2000], y[:2000], x[2000:], y[2000:], seed=0)
    moved = x * 1.5 + 2.0  # other data: another mean and scale to standardise with
    mean, scale = moved.mean(axis=0), moved.std(axis=0)
    coef, intercept = warm_solution(state, mean, scale)
    before = ((x - state["mean"]) / state["scale"]) @ state["coef"].T + state["intercept"]
    after = ((x - mean) / scale) @ coef.T + intercept
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-8)


def test_a_warm_probe_needs_few_iterations_and_reaches_the_converged_accuracy():
    from mnist_autoencoder.evaluation.probes import WARM_MAX_ITER

    x, y = blobs(6000, 1)
    test_x, test_y = blobs(2000, 2)
    first, _, state = linear_probe(x[:4000], y[:4000], test_x, test_y, seed=0)
    scratch, _, cold = linear_probe(x, y, test_x, test_y, seed=0)
    warm, _, hot = linear_probe(x, y, test_x, test_y, seed=0, warm=state)
    assert bool(hot["warm"]) and not bool(cold["warm"])
    assert int(hot["n_iter"]) <= WARM_MAX_ITER < int(cold["n_iter"])
    assert abs(warm - scratch) <= 0.005
    other, _, ignored = linear_probe(x[:, :5], y, test_x[:, :5], test_y, seed=0, warm=state)
    assert not bool(ignored["warm"])  # another number of features: from scratch


def test_a_warm_tsne_is_used_only_for_the_same_images():
    from mnist_autoencoder.evaluation.analysis import tsne_projection, warm_layout

    codes, _ = blobs(400, 3)
    sample = np.arange(0, 400, 2)
    first = tsne_projection(codes, sample, seed=0)
    assert warm_layout({"tsne_2d": first, "tsne_sample": sample}, sample) is not None
    assert warm_layout({"tsne_2d": first, "tsne_sample": sample + 1}, sample) is None
    assert warm_layout(None, sample) is None
    again = tsne_projection(codes + 0.01, sample, seed=0, layout=first)
    assert again.shape == (200, 2)
    # started from the old layout, the new one keeps its orientation: points stay close
    spread = np.linalg.norm(first - first.mean(axis=0), axis=1).mean()
    assert np.linalg.norm(again - first, axis=1).mean() < 0.5 * spread
