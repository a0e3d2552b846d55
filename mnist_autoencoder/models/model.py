"""The seed's shallow autoencoder and a fast way to train it.

Why not ``model.fit``: for a model this small, Keras' per-step Python and
data-adapter overhead dominates (1.2-1.7 s/epoch on 2 cores for 12.5 GFLOP of
work; Keras runs it as a plain graph, since ``jit_compile="auto"`` is off on
machines without an accelerator). Here the data stays in memory as one tensor,
each step is an XLA-compiled function, and a whole epoch (shuffle, gather,
steps) runs inside one ``tf.function``, so Python is entered once per epoch.
The math is what ``fit`` does: the same layers, Adam, binary cross-entropy
averaged per batch, batches of ``batch_size`` in a fresh order each epoch with
a smaller last batch, the epoch loss as the sample-weighted mean of batch
losses, validation loss after each epoch, and EarlyStopping on the training
loss (``min_delta``/``patience`` as in ``keras.callbacks.EarlyStopping``). The
models remain ordinary Keras models, saved and loaded with
``keras.models.load_model``.

This module imports TensorFlow; only code that trains imports it, when it trains.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Level 3 also hides "failed call to cuInit" on machines without a GPU; Python
# exceptions are unaffected. Set TF_CPP_MIN_LOG_LEVEL yourself to see more.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mnist_autoencoder.storage import atomic_path  # noqa: E402


class _NoRetracingNotice(logging.Filter):
    """Drop TensorFlow's "triggered tf.function retracing" warning.

    Every training run compiles its own epoch function once, by design; after a few
    runs in one process (sweep trials in threads) TensorFlow mistakes that for
    accidental retracing and says so on each new run.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_NoRetracingNotice())


def build_autoencoder(input_dim: int, latent_dim: int, learning_rate: float,
                      seed: int) -> tuple[keras.Model, keras.Model, keras.Model]:
    """Return (autoencoder, encoder, decoder): Dense(latent, relu) -> Dense(input, sigmoid)."""
    encoder = keras.Sequential(
        [keras.Input((input_dim,)),
         keras.layers.Dense(latent_dim, activation="relu",
                            kernel_initializer=keras.initializers.GlorotUniform(seed=seed))],
        name="encoder")
    decoder = keras.Sequential(
        [keras.Input((latent_dim,)),
         keras.layers.Dense(input_dim, activation="sigmoid",
                            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1))],
        name="decoder")
    inputs = keras.Input((input_dim,), name="pixels")
    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="autoencoder")
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")
    return autoencoder, encoder, decoder


class EarlyStopping:
    """Keras' EarlyStopping rule on a monitored value that should decrease."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience, self.min_delta = patience, min_delta
        self.best, self.wait = math.inf, 0

    def should_stop(self, value: float) -> bool:
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
            return False
        self.wait += 1
        return self.wait >= self.patience


def scaled(batch: tf.Tensor) -> tf.Tensor:
    """Pixels as the model takes them: uint8 rows (the shards' bytes) scaled to [0, 1] here,
    inside the compiled step; float rows as they are."""
    return tf.cast(batch, tf.float32) / 255.0 if batch.dtype == tf.uint8 else batch


def make_epoch_functions(autoencoder: keras.Model, batch_size: int, jit_compile: bool = True):
    """Compile a one-epoch training function and a full-set loss function for ``autoencoder``.

    ``train_epoch(x, order)`` runs one pass over the rows of ``x`` (uint8 or float, in
    memory) in ``order`` and returns the mean loss; ``mean_loss(x)`` is the loss on
    ``x``. Each distinct shape of ``x`` compiles once: in memory, one; streamed in
    chunks (``fit_autoencoder``), two (a full chunk and the last).
    ``jit_compile=False`` builds the same loop as a plain TensorFlow graph, for
    models whose ops XLA runs slowly on CPU (convolutions, see ``models.variants``).

    The epoch is a single XLA program: a while loop over the full batches plus one
    step for the remainder. Measured on 2 cores: 0.22-0.3 s/epoch, against 0.35 s
    with an XLA step called from a ``tf.function`` loop, 0.48-0.72 s for this loop
    as a plain graph, and 1.3-1.7 s with ``model.fit``. Measured and not faster:
    each batch split in two halves for the two cores, a hand-written loss
    gradient, and the XLA CPU flags listed in the README.
    """
    loss_fn = keras.losses.BinaryCrossentropy()
    optimizer = autoencoder.optimizer
    variables = autoencoder.trainable_variables

    def total_loss(batch, training):
        batch = scaled(batch)
        loss = loss_fn(batch, autoencoder(batch, training=training))
        # Layer losses (activity penalties, a VAE's KL term), as ``fit`` adds them.
        return loss + tf.add_n(autoencoder.losses) if autoencoder.losses else loss

    def train_step(batch):
        with tf.GradientTape() as tape:
            loss = total_loss(batch, training=True)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function(jit_compile=jit_compile)
    def train_epoch(x, order):
        n_samples = int(x.shape[0])
        n_full, remainder = divmod(n_samples, batch_size)

        def body(step, total):
            batch = tf.gather(x, tf.slice(order, [step * batch_size], [batch_size]))
            return step + 1, total + train_step(batch) * batch_size

        _, total = tf.while_loop(lambda step, _: step < n_full, body,
                                 (tf.constant(0), tf.constant(0.0)))
        if remainder:
            total += train_step(tf.gather(x, order[n_full * batch_size:])) * remainder
        return total / n_samples

    @tf.function(jit_compile=jit_compile)
    def mean_loss(x):
        return total_loss(x, training=False)

    return train_epoch, mean_loss


def save_checkpoint(path: Path, autoencoder: keras.Model, state: dict[str, Any]) -> None:
    """Write weights, optimizer state and loop state atomically (a few ms for this model)."""
    arrays = {f"weight_{i}": v.numpy() for i, v in enumerate(autoencoder.weights)}
    arrays |= {f"optimizer_{i}": v.numpy() for i, v in enumerate(autoencoder.optimizer.variables)}
    arrays["state"] = np.array(json.dumps(state))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def restore_checkpoint(path: Path, autoencoder: keras.Model) -> dict[str, Any] | None:
    """Load a checkpoint written by ``save_checkpoint`` into ``autoencoder``; return its state.

    Checkpoints are keyed by the training stage's cache key, which includes this
    module's source, so the variables line up one to one.
    """
    if not path.is_file():
        return None
    autoencoder.optimizer.build(autoencoder.trainable_variables)
    with np.load(path, allow_pickle=False) as archive:
        for prefix, variables in (("weight", autoencoder.weights),
                                  ("optimizer", autoencoder.optimizer.variables)):
            for i, variable in enumerate(variables):
                variable.assign(archive[f"{prefix}_{i}"])
        return json.loads(str(archive["state"]))


def fit_autoencoder(
    autoencoder: keras.Model,
    x_train: np.ndarray | Any,
    x_val: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    patience: int,
    seed: int,
    min_delta: float = 0.0,
    checkpoint: Path | None = None,
    jit_compile: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train in place; return one ``{epoch, loss, val_loss, seconds}`` row per epoch run.

    ``x_train``: the rows in memory (uint8 or float), or a source too large for it
    with ``len()`` and ``epoch(rng)``, which yields each epoch's rows as chunks in a
    fresh random partition (``data.splits.Rows``); each chunk is trained in a fresh
    order, and the next one is read while this one trains.

    With ``checkpoint``, the state after every epoch is saved there, and a run that
    finds one resumes after its last epoch: a killed run loses at most one epoch.
    The batch order's random state is restored too, so a resumed run follows the
    same trajectory as an uninterrupted one.
    """
    train_epoch, mean_loss = make_epoch_functions(autoencoder, batch_size, jit_compile)
    val_tensor = tf.constant(x_val)
    in_memory = isinstance(x_train, np.ndarray)
    train_tensor = tf.constant(x_train) if in_memory else None
    rng = np.random.default_rng(seed)
    stopper = EarlyStopping(patience, min_delta)
    history: list[dict[str, Any]] = []
    resumed = restore_checkpoint(checkpoint, autoencoder) if checkpoint else None
    if resumed:
        history = resumed["history"]
        rng.bit_generator.state = resumed["rng"]
        stopper.best, stopper.wait = resumed["best"], resumed["wait"]
        if resumed["stopped"]:
            return history
    for epoch in range(len(history), epochs):
        started = time.perf_counter()
        if in_memory:
            order = tf.constant(rng.permutation(len(x_train)).astype(np.int32))
            loss = float(train_epoch(train_tensor, order))
        else:
            loss = _streamed_epoch(train_epoch, x_train, rng)
        row = {"epoch": epoch + 1, "loss": loss, "val_loss": float(mean_loss(val_tensor)),
               "seconds": time.perf_counter() - started}
        history.append(row)
        stop = stopper.should_stop(loss)
        if checkpoint:
            save_checkpoint(checkpoint, autoencoder, {
                "history": history, "rng": rng.bit_generator.state, "best": stopper.best,
                "wait": stopper.wait, "stopped": stop})
        if on_epoch_end:
            on_epoch_end(epoch + 1, row)
        if stop:
            break
    return history


def _streamed_epoch(train_epoch, source, rng: np.random.Generator) -> float:
    """One epoch over ``source``'s chunks, each read in a thread while the previous trains."""
    from concurrent.futures import ThreadPoolExecutor

    total, count = 0.0, 0
    chunks = source.epoch(rng)
    with ThreadPoolExecutor(1) as reader:
        upcoming = reader.submit(next, chunks, None)
        while (chunk := upcoming.result()) is not None:
            upcoming = reader.submit(next, chunks, None)
            order = tf.constant(rng.permutation(len(chunk)).astype(np.int32))
            total += float(train_epoch(tf.constant(chunk), order)) * len(chunk)
            count += len(chunk)
    return total / count
