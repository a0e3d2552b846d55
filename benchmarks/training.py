"""One training run on real MNIST, timed per epoch: plain Keras ``model.fit`` or our path.

    python -m benchmarks.training --path keras|fast --epochs 50 --raw ../shared/data/mnist
        [--analyses]

Each run does the whole job of a plain script: parse the IDX files, split them
(with preprocess's own code, ``benchmarks.common``, into a temporary folder) and
normalise, train, score the test set. Both paths use the same splits, model,
optimizer, loss, batch size and per-epoch shuffling, and score the test set with
the same function. With ``--analyses`` the script then does the rest of what the
pipeline's default run does by calling the stages' own functions directly (no
Prefect, no cache): the PCA baseline and the three linear probes, the test-set
evaluation, the latent statistics and projections (t-SNE included), the anomaly
view and every report figure rendered to PNG. That is the plain script "doing
the same work" as the pipeline, which the benchmark compares the whole pipeline
with. Prints one JSON line.
The parent (``benchmarks.run``) measures wall time and peak RSS from outside.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

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

    import keras
    import tensorflow  # noqa: F401  (timed here on purpose)

    from benchmarks.common import build_splits
    from mnist_autoencoder.evaluation.metrics import per_sample_bce
    from mnist_autoencoder.models.model import build_autoencoder, fit_autoencoder

    imported = time.perf_counter()
    splits = build_splits(args.raw, val_size=10_000, seed=0)
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
        with tempfile.TemporaryDirectory(prefix="plain-keras-") as work_dir:
            same_work_as_pipeline(splits, encoder, decoder, rows, Path(work_dir))
    print(json.dumps({
        "path": args.path, "epochs_run": len(epoch_seconds), "epoch_seconds": epoch_seconds,
        "train_seconds": train_seconds, "final_loss": final_loss, "test_bce": test_bce,
        "n_train": len(x_train), "import_seconds": imported - STARTED,
        "train_test_seconds": tested - STARTED, "peak_rss_after_test_mib": peak_after_test,
        "analyses": args.analyses,
        "total_seconds": time.perf_counter() - STARTED,
    }))


def same_work_as_pipeline(splits, encoder, decoder, history_rows, work_dir: Path) -> int:
    """The rest of the default run, by plain calls of the core's functions; return PNG bytes.

    The baselines, the evaluation, the analysis and the report's figures run on the
    in-memory splits and models, with no Prefect and no cache; their outputs go to
    ``work_dir`` as the pipeline writes them.
    """
    import pandas as pd

    from mnist_autoencoder.evaluation.analysis import analyze_representation
    from mnist_autoencoder.evaluation.baselines import compute_baselines
    from mnist_autoencoder.evaluation.reconstruction import TEST_ERRORS, evaluate_reconstruction
    from mnist_autoencoder.models.inference import apply_in_chunks
    from mnist_autoencoder.reports.figures import to_png
    from mnist_autoencoder.reports.run import draw_figures
    from mnist_autoencoder.storage import write_outputs

    train, test = splits["train"], splits["test"]
    quiet = lambda _: None  # noqa: E731
    references, baselines = compute_baselines(train, test, encoder.output_shape[-1], 0,
                                              log=quiet)
    codes = apply_in_chunks(encoder, test.x)
    evaluation, _ = evaluate_reconstruction(test, codes, apply_in_chunks(decoder, codes))
    analysis, _ = analyze_representation(
        train, test, apply_in_chunks(encoder, train.x), evaluation[TEST_ERRORS],
        lambda c: apply_in_chunks(decoder, c), baselines, 0, log=quiet)
    for stage, outputs in (("baselines", references),
                           ("evaluate", evaluation), ("analyze", analysis)):
        write_outputs(work_dir / stage, outputs)
    confusion = evaluation["argmax_confusion.csv"].set_index("original_argmax")
    figures = draw_figures(pd.DataFrame(history_rows), evaluation["samples.npz"], confusion,
                           analysis)
    return sum(len(to_png(figure)) for figure in figures.values())


if __name__ == "__main__":
    main()
