"""The benchmarks must keep running, on the pipeline's own splits, as the pipeline changes.

`make bench` is not part of the suite (its time is in docs/benchmarks.md); this
runs its "same work" half on a tiny synthetic split so an API change that breaks
it fails here rather than in the next benchmark run, and checks that the splits the
benchmarks share (``benchmarks.common``) are preprocess's.
"""

import numpy as np

from benchmarks.anomaly import dataset_splits
from benchmarks.common import build_splits
from benchmarks.training import same_work_as_pipeline
from mnist_autoencoder.data.catalog import IDX_NAMES
from mnist_autoencoder.data.idx import load_images_and_labels
from mnist_autoencoder.data.preprocessing import split_train_val
from mnist_autoencoder.data.splits import normalize
from mnist_autoencoder.models.model import build_autoencoder, fit_autoencoder
from tests.helpers import write_dataset


def test_benchmark_splits_are_the_pipelines(tmp_path):
    raw = tmp_path / "raw"
    write_dataset(raw, n_train=300, n_test=50)
    splits = build_splits(raw, ("train", "val", "test", "recent"), val_size=60, seed=3)

    train_images, train_labels = load_images_and_labels(raw / IDX_NAMES["train_images"],
                                                        raw / IDX_NAMES["train_labels"])
    test_images, test_labels = load_images_and_labels(raw / IDX_NAMES["test_images"],
                                                      raw / IDX_NAMES["test_labels"])
    train_idx, val_idx = split_train_val(300, 60, 3)
    for name, rows in (("train", train_idx), ("val", val_idx)):
        assert splits[name].x.dtype == np.float32
        np.testing.assert_array_equal(splits[name].x, normalize(train_images[rows]))
        np.testing.assert_array_equal(splits[name].y, train_labels[rows])
        np.testing.assert_array_equal(splits[name].index, rows)
    np.testing.assert_array_equal(splits["test"].x, normalize(test_images))
    np.testing.assert_array_equal(splits["test"].y, test_labels)
    assert len(splits["recent"].y) == 0
    # a kept data folder: built once, read again
    kept = build_splits(raw, val_size=60, seed=3, data_dir=tmp_path / "data")
    again = build_splits(raw, val_size=60, seed=3, data_dir=tmp_path / "data")
    np.testing.assert_array_equal(kept["val"].x, again["val"].x)
    np.testing.assert_array_equal(kept["val"].x, splits["val"].x)
    assert dataset_splits(tmp_path / "nothing here") is None


def test_plain_script_does_every_analysis_and_draws_every_figure(tmp_path):
    write_dataset(tmp_path / "raw", n_train=500, n_test=120)  # make_digits(500, 0), (120, 1)
    splits = build_splits(tmp_path / "raw", val_size=100, seed=0)
    autoencoder, encoder, decoder = build_autoencoder(784, 8, 1e-3, seed=0)
    rows = fit_autoencoder(autoencoder, splits["train"].x, splits["val"].x, epochs=2,
                           batch_size=64, patience=5, seed=0)

    png_bytes = same_work_as_pipeline(splits, encoder, decoder, rows, tmp_path / "work")

    # eight figures, each a real PNG of some kilobytes
    assert png_bytes > 8 * 5_000
    assert np.isfinite([row["loss"] for row in rows]).all()
