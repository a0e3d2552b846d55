"""The model variants a sweep compares, as Keras models over flat 784-pixel rows.

Each builder returns ``(autoencoder, encoder, decoder)``: the autoencoder is
compiled with Adam and binary cross-entropy like the seed model, the encoder
maps pixels to the code that is evaluated and probed, the decoder maps codes
back to pixels. All of them train with ``model.fit_autoencoder``; extra
loss terms (the sparse model's L1 penalty, the VAE's KL divergence) reach it
through Keras' ``model.losses``, as they would reach ``model.fit``.

- ``shallow``: the seed, Dense(latent, relu) -> Dense(784, sigmoid).
- ``sparse``: the seed with an L1 activity penalty on the code
  (``SPARSITY_L1`` per unit, averaged over the batch).
- ``deep``: 784-128-64-latent encoder and its mirror image as the decoder.
- ``conv``: two stride-2 3x3 convolutions (16, 32 filters) to a dense code;
  two transposed convolutions back. Needs square images with a side divisible by 4.
- ``vae``: a variational autoencoder with a Gaussian code (128-unit hidden layers);
  the code is the posterior mean. Its loss is the negative ELBO per pixel: the
  pixel-mean BCE plus the KL divergence divided by the number of pixels.

This module imports TensorFlow; it is only imported when a trial trains.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import ops

from mnist_autoencoder.errors import ParameterError
from mnist_autoencoder.models.model import build_autoencoder

SPARSITY_L1 = 1e-4
DEEP_HIDDEN = (128, 64)
VAE_HIDDEN = 128
CONV_FILTERS = (16, 32)


def _init(seed: int, offset: int) -> keras.initializers.Initializer:
    return keras.initializers.GlorotUniform(seed=seed + offset)


def _dense_stack(widths, activation: str, seed: int, offset: int) -> list[keras.layers.Layer]:
    return [keras.layers.Dense(width, activation=activation,
                               kernel_initializer=_init(seed, offset + i))
            for i, width in enumerate(widths)]


def _compile(inputs, encoder, decoder, learning_rate: float, code=None):
    autoencoder = keras.Model(inputs, decoder(code if code is not None else encoder(inputs)),
                              name="autoencoder")
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate),
                        loss="binary_crossentropy")
    return autoencoder, encoder, decoder


def build_sparse(input_dim: int, latent_dim: int, learning_rate: float, seed: int):
    encoder = keras.Sequential(
        [keras.Input((input_dim,)),
         keras.layers.Dense(latent_dim, activation="relu", kernel_initializer=_init(seed, 0),
                            activity_regularizer=keras.regularizers.L1(SPARSITY_L1))],
        name="encoder")
    decoder = keras.Sequential(
        [keras.Input((latent_dim,)),
         keras.layers.Dense(input_dim, activation="sigmoid", kernel_initializer=_init(seed, 1))],
        name="decoder")
    return _compile(keras.Input((input_dim,), name="pixels"), encoder, decoder, learning_rate)


def build_deep(input_dim: int, latent_dim: int, learning_rate: float, seed: int):
    encoder = keras.Sequential(
        [keras.Input((input_dim,)), *_dense_stack((*DEEP_HIDDEN, latent_dim), "relu", seed, 0)],
        name="encoder")
    decoder = keras.Sequential(
        [keras.Input((latent_dim,)), *_dense_stack(DEEP_HIDDEN[::-1], "relu", seed, 10),
         keras.layers.Dense(input_dim, activation="sigmoid", kernel_initializer=_init(seed, 20))],
        name="decoder")
    return _compile(keras.Input((input_dim,), name="pixels"), encoder, decoder, learning_rate)


def image_side(input_dim: int) -> int:
    side = math.isqrt(input_dim)
    if side * side != input_dim or side % 4:
        raise ParameterError(f"the conv variant needs square images with a side divisible by 4; "
                         f"{input_dim} pixels per image are not")
    return side


def build_conv(input_dim: int, latent_dim: int, learning_rate: float, seed: int):
    side = image_side(input_dim)
    small, (f1, f2) = side // 4, CONV_FILTERS
    conv = {"kernel_size": 3, "strides": 2, "padding": "same"}
    encoder = keras.Sequential(
        [keras.Input((input_dim,)), keras.layers.Reshape((side, side, 1)),
         keras.layers.Conv2D(f1, activation="relu", kernel_initializer=_init(seed, 0), **conv),
         keras.layers.Conv2D(f2, activation="relu", kernel_initializer=_init(seed, 1), **conv),
         keras.layers.Flatten(),
         keras.layers.Dense(latent_dim, activation="relu", kernel_initializer=_init(seed, 2))],
        name="encoder")
    decoder = keras.Sequential(
        [keras.Input((latent_dim,)),
         keras.layers.Dense(small * small * f2, activation="relu",
                            kernel_initializer=_init(seed, 10)),
         keras.layers.Reshape((small, small, f2)),
         keras.layers.Conv2DTranspose(f1, activation="relu", kernel_initializer=_init(seed, 11),
                                      **conv),
         keras.layers.Conv2DTranspose(1, activation="sigmoid",
                                      kernel_initializer=_init(seed, 12), **conv),
         keras.layers.Reshape((input_dim,))],
        name="decoder")
    return _compile(keras.Input((input_dim,), name="pixels"), encoder, decoder, learning_rate)


@keras.saving.register_keras_serializable(package="mnist_autoencoder")
class GaussianCode(keras.layers.Layer):
    """Samples ``mean + exp(log_var / 2) * noise`` while training, returns ``mean`` otherwise.

    Adds the KL divergence from the standard normal prior (mean over the batch,
    times ``kl_weight``) as a layer loss.
    """

    def __init__(self, kl_weight: float = 1.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.kl_weight, self.seed = kl_weight, seed
        self.noise = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        mean, log_var = inputs
        kl = -0.5 * ops.sum(1 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1)
        self.add_loss(self.kl_weight * ops.mean(kl))
        if not training:
            return mean
        # Philox via TensorFlow directly: keras.random.normal drawing from the same seed
        # generator made an epoch (real MNIST, code 32) take 1.45 s instead of 0.67 s.
        seed = tf.cast(self.noise.next(), tf.int32)
        noise = tf.random.stateless_normal(tf.shape(mean), seed=seed, alg="philox")
        return mean + ops.exp(0.5 * log_var) * noise

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return super().get_config() | {"kl_weight": self.kl_weight, "seed": self.seed}


def build_vae(input_dim: int, latent_dim: int, learning_rate: float, seed: int):
    pixels = keras.Input((input_dim,), name="pixels")
    hidden = keras.layers.Dense(VAE_HIDDEN, activation="relu",
                                kernel_initializer=_init(seed, 0))(pixels)
    mean = keras.layers.Dense(latent_dim, name="code_mean",
                              kernel_initializer=_init(seed, 1))(hidden)
    # Zero-initialised: every code starts with unit variance, the prior's.
    log_var = keras.layers.Dense(latent_dim, name="code_log_var",
                                 kernel_initializer="zeros")(hidden)
    encoder = keras.Model(pixels, mean, name="encoder")
    code = GaussianCode(kl_weight=1 / input_dim, seed=seed, name="gaussian_code")([mean, log_var])
    decoder = keras.Sequential(
        [keras.Input((latent_dim,)), *_dense_stack((VAE_HIDDEN,), "relu", seed, 10),
         keras.layers.Dense(input_dim, activation="sigmoid", kernel_initializer=_init(seed, 20))],
        name="decoder")
    return _compile(pixels, encoder, decoder, learning_rate, code=code)


# Whether a variant's epoch is compiled with XLA. XLA's CPU convolutions (and their
# gradients) are slow: measured on real MNIST, 2 cores, the conv variant took 97 s
# per epoch with XLA and 5.2 s as a plain TensorFlow graph (oneDNN kernels). The
# dense variants are faster with XLA (shallow 0.29 s per epoch).
JIT_COMPILE = {"conv": False}

BUILDERS = {
    "shallow": build_autoencoder,
    "sparse": build_sparse,
    "deep": build_deep,
    "conv": build_conv,
    "vae": build_vae,
}


def build_variant(variant: str, input_dim: int, latent_dim: int, learning_rate: float,
                  seed: int):
    """Return ``(autoencoder, encoder, decoder)`` of ``variant`` (one of ``BUILDERS``)."""
    try:
        builder = BUILDERS[variant]
    except KeyError:
        raise ParameterError(f"unknown variant {variant!r}; choose one of {list(BUILDERS)}"
                             ) from None
    return builder(input_dim, latent_dim, learning_rate, seed)
