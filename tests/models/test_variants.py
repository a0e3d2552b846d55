"""The sweep's model variants: shapes, extra loss terms, training, saving and loading."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mnist_autoencoder.data.splits import normalize  # noqa: E402
from mnist_autoencoder.models.model import fit_autoencoder  # noqa: E402
from mnist_autoencoder.models.trial import VARIANTS  # noqa: E402
from mnist_autoencoder.models.variants import BUILDERS, JIT_COMPILE, build_variant, image_side  # noqa: E402
from tests.helpers import make_digits  # noqa: E402


@pytest.fixture(scope="module")
def data():
    images, _ = make_digits(600, seed=0)
    x = normalize(images)
    return x[:500], x[500:]


def test_every_variant_the_sweep_names_has_a_builder():
    assert set(BUILDERS) == set(VARIANTS)
    with pytest.raises(ValueError, match="unknown variant 'mlp'"):
        build_variant("mlp", 784, 4, 1e-3, seed=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_trains_and_round_trips_through_keras_files(variant, data, tmp_path):
    x_train, x_val = data
    autoencoder, encoder, decoder = build_variant(variant, 784, 4, 3e-3, seed=0)
    assert autoencoder.output_shape == (None, 784) and encoder.output_shape == (None, 4)
    history = fit_autoencoder(autoencoder, x_train, x_val, epochs=3, batch_size=64, patience=5,
                              seed=0, jit_compile=JIT_COMPILE.get(variant, True))
    losses = [row["loss"] for row in history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    codes = np.asarray(encoder(x_val, training=False))
    rebuilt = np.asarray(decoder(codes, training=False))
    assert codes.shape == (len(x_val), 4) and rebuilt.shape == x_val.shape
    assert rebuilt.min() >= 0 and rebuilt.max() <= 1
    for name, model in (("encoder", encoder), ("decoder", decoder), ("autoencoder", autoencoder)):
        model.save(tmp_path / f"{name}.keras")
    loaded = keras.models.load_model(tmp_path / "encoder.keras")
    np.testing.assert_allclose(np.asarray(loaded(x_val, training=False)), codes, atol=1e-6)
    keras.models.load_model(tmp_path / "autoencoder.keras")  # custom layers are registered


def test_sparse_and_vae_add_their_loss_terms(data):
    x_train, _ = data
    sparse, _, _ = build_variant("sparse", 784, 8, 1e-3, seed=0)
    sparse(x_train[:64], training=True)
    assert len(sparse.losses) == 1 and float(sparse.losses[0]) > 0  # L1 on active codes
    vae, encoder, _ = build_variant("vae", 784, 8, 1e-3, seed=0)
    vae(x_train[:64], training=True)
    assert len(vae.losses) == 1 and float(vae.losses[0]) >= 0  # KL to the prior
    one, two = (np.asarray(vae(x_train[:8], training=True)) for _ in range(2))
    assert not np.allclose(one, two)  # training samples the code
    np.testing.assert_allclose(np.asarray(encoder(x_train[:8])), np.asarray(encoder(x_train[:8])))


def test_conv_variant_needs_square_images_with_side_divisible_by_4():
    assert image_side(784) == 28
    for bad in (100, 785):
        with pytest.raises(ValueError, match="square images"):
            image_side(bad)
