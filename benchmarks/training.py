"""One training run on real MNIST, timed per epoch: plain Keras ``model.fit`` or our path.

    python -m benchmarks.training --path keras|fast --epochs 50 --raw ../shared/data/mnist
        [--analyses]

Each run does the whole job of a plain script: parse the IDX files, normalise and
split, train, score the test set. Both paths use the same splits, model,
optimizer, loss, batch size and per-epoch shuffling, and score the test set with
the same function. With ``--analyses`` the script then does the rest of what the
pipeline's default run does, as plain in-memory calls of the same functions: the
PCA baseline, the three linear probes, the latent statistics and projections
(t-SNE included), the anomaly view and every report figure rendered to PNG. That
is the plain script "doing the same work" as the pipeline, which the benchmark
compares the whole pipeline with. Prints one JSON line.
The parent (``benchmarks.run``) measures wall time and peak RSS from outside.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

STARTED = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", choices=("keras", "fast"), required=True)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--raw", required=True, help="directory of the four MNIST .gz files")
    parser.add_argument("--analyses", action="store_true",
                        help="also do the pipeline's analyses and figures (the same work)")
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
    autoencoder, encoder, decoder = build_autoencoder(x_train.shape[1], 32, 1e-3, seed=0)
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
        rows = [{"epoch": i + 1, "loss": loss, "val_loss": val} for i, (loss, val) in
                enumerate(zip(history.history["loss"], history.history["val_loss"]))]
    else:
        rows = fit_autoencoder(autoencoder, x_train, x_val, epochs=args.epochs, batch_size=256,
                               patience=5, seed=0)
        epoch_seconds = [row["seconds"] for row in rows]
        final_loss = rows[-1]["loss"]
    train_seconds = time.perf_counter() - train_started
    test_bce = float(per_sample_bce(x_test, autoencoder.predict(x_test, batch_size=2048,
                                                                 verbose=0)).mean())
    tested = time.perf_counter()
    peak_after_test = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.analyses:
        same_work_as_pipeline(splits, encoder, decoder, rows)
    print(json.dumps({
        "path": args.path, "epochs_run": len(epoch_seconds), "epoch_seconds": epoch_seconds,
        "train_seconds": train_seconds, "final_loss": final_loss, "test_bce": test_bce,
        "n_train": len(x_train), "import_seconds": imported - STARTED,
        "train_test_seconds": tested - STARTED, "peak_rss_after_test_mib": peak_after_test,
        "analyses": args.analyses,
        "total_seconds": time.perf_counter() - STARTED,
    }))


def same_work_as_pipeline(splits, encoder, decoder, history_rows) -> int:
    """The default run's baselines, analyses and figures, in memory; return the PNG bytes."""
    import numpy as np
    import pandas as pd
    from sklearn.decomposition import PCA

    from tasks import figures as fg
    from tasks.analyze import (
        GALLERY_SIZE,
        TSNE_SAMPLE,
        extremes,
        linear_probe,
        tsne_projection,
        unit_statistics,
    )
    from tasks.baselines import fit_pca
    from tasks.evaluate import (
        N_SAMPLES_SHOWN,
        argmax_pixel_confusion,
        per_sample_bce,
        per_sample_mse,
    )

    train, test = splits["train"], splits["test"]
    pca = fit_pca(train.x, 32, 0)  # baselines: PCA, probes on PCA codes and raw pixels
    pca_test = pca.transform(test.x)
    pca_reconstruction = pca.inverse_transform(pca_test)
    per_sample_mse(test.x, pca_reconstruction)
    per_sample_bce(test.x, np.clip(pca_reconstruction, 0, 1))
    linear_probe(pca.transform(train.x), train.y, pca_test, test.y, 0)
    linear_probe(train.x, train.y, test.x, test.y, 0)
    codes = np.asarray(encoder.predict(test.x, batch_size=4096, verbose=0))  # evaluate, analyze
    reconstruction = np.asarray(decoder.predict(codes, batch_size=4096, verbose=0))
    train_codes = np.asarray(encoder.predict(train.x, batch_size=4096, verbose=0))
    bce = per_sample_bce(test.x, reconstruction)
    per_sample_mse(test.x, reconstruction)
    confusion = argmax_pixel_confusion(test.x, reconstruction)
    accuracy, probe_confusion = linear_probe(train_codes, train.y, codes, test.y, 0)
    units = unit_statistics(codes)
    sample = np.sort(np.random.default_rng(0).choice(
        len(test.y), min(TSNE_SAMPLE, len(test.y)), replace=False))
    tsne = tsne_projection(codes, sample, 0)
    pca_2d = PCA(n_components=2, random_state=0).fit_transform(codes)
    worst, best = extremes(bce, GALLERY_SIZE)
    shown = slice(0, N_SAMPLES_SHOWN)
    figures = [  # report: every figure, encoded as PNG
        fg.plot_loss_curves(pd.DataFrame(history_rows)),
        fg.plot_samples(test.x[shown], codes[shown], reconstruction[shown], test.y[shown]),
        fg.plot_argmax_confusion(confusion),
        fg.plot_probe_confusion(probe_confusion, accuracy),
        fg.plot_projections(pca_2d, tsne, sample, test.y),
        fg.plot_error_distribution(bce, test.y),
        fg.plot_gallery([(name, test.x[i], reconstruction[i], test.y[i], bce[i])
                         for name, i in (("worst", worst), ("best", best))]),
        fg.plot_unit_statistics(units)]
    return sum(len(fg.to_png(figure)) for figure in figures)


if __name__ == "__main__":
    main()
