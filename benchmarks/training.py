"""One training run on real MNIST, timed per epoch: plain Keras ``model.fit`` or our path.

    python -m benchmarks.training --path keras|fast --epochs 50 --raw ../shared/data/mnist

Each run does the whole job of a plain script: parse the IDX files, normalise and
split, train, score the test set. Both paths use the same splits, model,
optimizer, loss, batch size and per-epoch shuffling, and score the test set with
the same function. Prints one JSON line.
The parent (``benchmarks.run``) measures wall time and peak RSS from outside.
"""

from __future__ import annotations

import argparse
import json
import os
import time

STARTED = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", choices=("keras", "fast"), required=True)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--raw", required=True, help="directory of the four MNIST .gz files")
    args = parser.parse_args()

    from pathlib import Path

    import keras
    import tensorflow  # noqa: F401  (timed here on purpose)

    from tasks.download import DATASETS
    from tasks.evaluate import per_sample_bce
    from tasks.idx import load_images_and_labels
    from tasks.model import build_autoencoder, fit_autoencoder
    from tasks.preprocess import build_splits

    imported = time.perf_counter()
    names = {role: Path(args.raw) / name for role, (name, _) in DATASETS["mnist"].files.items()}
    splits = build_splits(*load_images_and_labels(names["train_images"], names["train_labels"]),
                          *load_images_and_labels(names["test_images"], names["test_labels"]),
                          val_size=10_000, seed=0)
    x_train, x_val, x_test = splits["train"].x, splits["val"].x, splits["test"].x
    autoencoder, _, _ = build_autoencoder(x_train.shape[1], 32, 1e-3, seed=0)
    train_started = time.perf_counter()
    if args.path == "keras":
        epoch_seconds = []

        class EpochTimer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                epoch_seconds.append(time.perf_counter() - self.started)

        history = autoencoder.fit(
            x_train, x_train, epochs=args.epochs, batch_size=256, shuffle=True,
            validation_data=(x_val, x_val), verbose=0,
            callbacks=[keras.callbacks.EarlyStopping(monitor="loss", patience=5), EpochTimer()])
        final_loss = history.history["loss"][-1]
    else:
        rows = fit_autoencoder(autoencoder, x_train, x_val, epochs=args.epochs, batch_size=256,
                               patience=5, seed=0)
        epoch_seconds = [row["seconds"] for row in rows]
        final_loss = rows[-1]["loss"]
    train_seconds = time.perf_counter() - train_started
    test_bce = float(per_sample_bce(x_test, autoencoder.predict(x_test, batch_size=2048,
                                                                 verbose=0)).mean())
    print(json.dumps({
        "path": args.path, "epochs_run": len(epoch_seconds), "epoch_seconds": epoch_seconds,
        "train_seconds": train_seconds, "final_loss": final_loss, "test_bce": test_bce,
        "n_train": len(x_train), "import_seconds": imported - STARTED,
        "total_seconds": time.perf_counter() - STARTED,
    }))


if __name__ == "__main__":
    main()
