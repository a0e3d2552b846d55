import numpy as np
import pytest

from mnist_autoencoder.data.catalog import BUILT_IN
from mnist_autoencoder.data.preprocessing import (
    build_splits,
    normalize,
    split_files,
    split_train_val,
)
from mnist_autoencoder.data.splits import FILE_NAMES, load_splits, read_metadata
from mnist_autoencoder.storage import sha256_file, write_outputs
from tests import helpers


def test_normalize_flattens_to_float32_unit_range():
    images = np.array([[[0, 255], [128, 1]]], dtype=np.uint8)
    x = normalize(images)
    assert x.dtype == np.float32 and x.shape == (1, 4)
    np.testing.assert_allclose(x, [[0, 1, 128 / 255, 1 / 255]], rtol=1e-6)


def test_split_is_seeded_disjoint_and_complete():
    train, val = split_train_val(100, 10, seed=3)
    assert len(train) == 90 and len(val) == 10
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(100))
    again_train, again_val = split_train_val(100, 10, seed=3)
    np.testing.assert_array_equal(val, again_val)
    assert not np.array_equal(val, split_train_val(100, 10, seed=4)[1])


@pytest.mark.parametrize("val_size", [0, 100, 150])
def test_split_rejects_val_size_leaving_no_training_data(val_size):
    with pytest.raises(ValueError, match="val_size"):
        split_train_val(100, val_size, seed=0)


def test_build_splits_keeps_labels_aligned_with_source_index():
    train_images, train_labels = helpers.make_digits(50, seed=0)
    test_images, test_labels = helpers.make_digits(8, seed=1)
    splits = build_splits(train_images, train_labels, test_images, test_labels, 10, seed=0)
    assert len(splits["recent"].y) == 0  # only ingested batches feed it
    for name in ("train", "val", "test"):
        assert splits[name].x.min() >= 0 and splits[name].x.max() <= 1
    np.testing.assert_array_equal(splits["train"].y, train_labels[splits["train"].index])
    np.testing.assert_array_equal(splits["val"].x, normalize(train_images)[splits["val"].index])
    assert len(splits["test"].y) == 8


@pytest.fixture
def written(tmp_path):
    spec = helpers.write_dataset(tmp_path / "raw", n_train=60, n_test=12)
    files = spec.file_names()
    out = tmp_path / "processed"
    result = write_outputs(out, split_files(tmp_path / "raw", files, val_size=10, seed=1,
                                            source_hashes={"x": "y"}))
    return tmp_path, files, out, result


def test_npz_and_parquet_hold_identical_splits(written):
    _, _, out, result = written
    assert read_metadata(out)["counts"] == {"train": 50, "val": 10, "test": 12, "recent": 0}
    npz, parquet = load_splits(out, "npz"), load_splits(out, "parquet")
    for name in ("train", "val", "test"):
        for a, b in zip(npz[name], parquet[name]):
            np.testing.assert_array_equal(a, b)
        assert npz[name].x.dtype == np.float32 and npz[name].x.shape[1] == 784
    for fmt in FILE_NAMES:
        meta = read_metadata(out, fmt)
        assert meta["val_size"] == 10 and meta["seed"] == 1 and meta["source_sha256"] == {"x": "y"}


def test_rebuilding_gives_byte_identical_files(written):
    tmp_path, files, out, result = written
    again = write_outputs(tmp_path / "again", split_files(tmp_path / "raw", files, val_size=10,
                                                          seed=1, source_hashes={"x": "y"}))
    assert again["files"] == result["files"]
    assert sha256_file(out / FILE_NAMES["npz"]) == result["files"]["splits.npz"]


def test_mnist_registry_pins_all_four_files():
    for spec in BUILT_IN.values():
        assert len(spec.files) == 4 and spec.train_size == 60_000
        assert all(len(digest) == 64 for _, digest in spec.files.values())


def test_train_subset_shrinks_only_the_training_split():
    train_images, train_labels = helpers.make_digits(50, seed=0)
    test_images, test_labels = helpers.make_digits(8, seed=1)
    full = build_splits(train_images, train_labels, test_images, test_labels, 10, seed=0)
    small = build_splits(train_images, train_labels, test_images, test_labels, 10, seed=0,
                         train_subset=15)
    assert len(small["train"].y) == 15 and set(small["train"].index) < set(full["train"].index)
    np.testing.assert_array_equal(small["val"].index, full["val"].index)
    assert len(small["test"].y) == 8
