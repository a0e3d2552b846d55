"""The fast training path against plain Keras: same math, loss going down, early stopping."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from mnist_autoencoder.data.splits import normalize  # noqa: E402
from mnist_autoencoder.models.model import (  # noqa: E402
    EarlyStopping,
    build_autoencoder,
    fit_autoencoder,
    make_epoch_functions,
)
from tests.helpers import make_digits  # noqa: E402


@pytest.fixture(scope="module")
def data():
    images, _ = make_digits(300, seed=0)
    x = normalize(images)
    return x[:250], x[250:]


def test_architecture_matches_the_seed():
    autoencoder, encoder, decoder = build_autoencoder(784, 32, 1e-3, seed=0)
    assert autoencoder.input_shape == (None, 784) and autoencoder.output_shape == (None, 784)
    assert encoder.output_shape == (None, 32)
    assert encoder.layers[-1].activation.__name__ == "relu"
    assert decoder.layers[-1].activation.__name__ == "sigmoid"
    assert autoencoder.count_params() == 784 * 32 + 32 + 32 * 784 + 784
    assert isinstance(autoencoder.optimizer, keras.optimizers.Adam)


def test_one_epoch_equals_model_fit_on_the_same_batches(data):
    """Same initial weights and batch order: our XLA epoch and ``fit`` reach the same weights."""
    x_train, _ = data
    ours, _, _ = build_autoencoder(784, 32, 1e-3, seed=5)
    reference, _, _ = build_autoencoder(784, 32, 1e-3, seed=5)
    train_epoch, _ = make_epoch_functions(ours, batch_size=64)  # 3 full + 58
    loss = float(train_epoch(tf.constant(x_train), tf.range(len(x_train), dtype=tf.int32)))
    history = reference.fit(x_train, x_train, batch_size=64, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, atol=2e-5)
    assert loss == pytest.approx(history.history["loss"][0], rel=1e-4)


def test_fit_lowers_the_loss_and_records_every_epoch(data):
    x_train, x_val = data
    autoencoder, _, _ = build_autoencoder(784, 16, 1e-2, seed=0)
    seen = []
    history = fit_autoencoder(autoencoder, x_train, x_val, epochs=6, batch_size=32, patience=10,
                              seed=0, on_epoch_end=lambda epoch, row: seen.append(epoch))
    assert [row["epoch"] for row in history] == seen == [1, 2, 3, 4, 5, 6]
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert all(np.isfinite(row["val_loss"]) for row in history)


def test_early_stopping_follows_keras_rule():
    stopper = EarlyStopping(patience=2)
    decisions = [stopper.should_stop(v) for v in [1.0, 0.9, 0.95, 0.91, 0.8]]
    assert decisions == [False, False, False, True, False]


def test_fit_stops_early_when_the_loss_stalls(data):
    x_train, x_val = data
    autoencoder, _, _ = build_autoencoder(784, 8, learning_rate=0.0, seed=0)  # loss cannot fall
    history = fit_autoencoder(autoencoder, x_train, x_val, epochs=20, batch_size=50, patience=2,
                              seed=0, min_delta=1e-4)  # batch order alone moves the loss ~1e-7
    assert len(history) == 3


def test_resuming_from_a_checkpoint_follows_the_uninterrupted_trajectory(data, tmp_path):
    x_train, x_val = data
    options = {"epochs": 4, "batch_size": 50, "patience": 10, "seed": 3}
    straight, _, _ = build_autoencoder(784, 8, 1e-2, seed=0)
    full = fit_autoencoder(straight, x_train, x_val, **options)

    checkpoint = tmp_path / "ckpt.npz"
    first, _, _ = build_autoencoder(784, 8, 1e-2, seed=0)
    fit_autoencoder(first, x_train, x_val, **options | {"epochs": 2}, checkpoint=checkpoint)
    resumed_model, _, _ = build_autoencoder(784, 8, 1e-2, seed=0)  # a fresh process would
    seen = []
    resumed = fit_autoencoder(resumed_model, x_train, x_val, **options, checkpoint=checkpoint,
                              on_epoch_end=lambda epoch, row: seen.append(epoch))
    assert seen == [3, 4]  # epochs 1-2 came from the checkpoint
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(resumed, full):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    for a, b in zip(resumed_model.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
