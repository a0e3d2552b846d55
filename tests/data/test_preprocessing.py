"""Preprocessing: the base shard, the seeded split, and a snapshot's view over shards."""

import os

import numpy as np
import pytest

from mnist_autoencoder.data import ingestion, snapshots
from mnist_autoencoder.data.catalog import BUILT_IN, get_dataset
from mnist_autoencoder.data.idx import read_idx_gz
from mnist_autoencoder.data.preprocessing import base_shard, build_view, split_train_val
from mnist_autoencoder.data.shards import FILES, ShardError, shard_sha256
from mnist_autoencoder.data.splits import VIEW_FILE, SplitView, load_splits, normalize
from mnist_autoencoder.storage import write_outputs
from tests import helpers

DATASET = "synthetic-preprocess"
SOURCE = {"x": "y"}


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


@pytest.fixture
def raw(tmp_path):
    helpers.write_dataset(tmp_path / "raw", n_train=60, n_test=12)
    helpers.register(tmp_path / "raw", DATASET)
    return tmp_path


def view(root, out="processed", snapshot=None, **changes):
    options = {"val_size": 10, "seed": 1, "train_subset": 0} | changes
    files = build_view(root / "data", DATASET, root / "raw", get_dataset(DATASET).file_names(),
                       options["val_size"], options["seed"], SOURCE, options["train_subset"],
                       snapshot)
    return write_outputs(root / out, files), root / out


def test_the_base_view_holds_the_raw_files_rows_with_their_labels_and_positions(raw):
    _, out = view(raw)
    splits = load_splits(out, names=("train", "val", "test", "recent"))
    assert SplitView(out).metadata["counts"] == {"train": 50, "val": 10, "test": 12, "recent": 0}
    train_images = read_idx_gz(raw / "raw" / "train-images-idx3-ubyte.gz").reshape(60, -1)
    train_labels = read_idx_gz(raw / "raw" / "train-labels-idx1-ubyte.gz")
    test_images = read_idx_gz(raw / "raw" / "t10k-images-idx3-ubyte.gz").reshape(12, -1)
    train, val = split_train_val(60, 10, seed=1)
    np.testing.assert_array_equal(splits["train"].index, train)
    np.testing.assert_array_equal(splits["val"].index, val)
    np.testing.assert_array_equal(splits["test"].index, np.arange(12))  # its own file's rows
    np.testing.assert_array_equal(splits["train"].y, train_labels[train])
    np.testing.assert_array_equal(splits["val"].x, normalize(train_images[val]))
    np.testing.assert_array_equal(splits["test"].x, normalize(test_images))
    assert splits["train"].x.dtype == np.float32 and len(splits["recent"].y) == 0


def test_rebuilding_gives_the_same_view_and_builds_the_base_shard_once(raw):
    first, out = view(raw)
    shard = SplitView(out).parts[0]["shard"]
    inode = os.stat(os.path.join(shard, FILES["images"])).st_ino
    again, _ = view(raw, "again")
    assert again["files"] == first["files"]
    assert os.stat(os.path.join(shard, FILES["images"])).st_ino == inode
    assert (out / VIEW_FILE).stat().st_size < 4096  # a few KB: names, not pixels


def test_a_damaged_base_shard_is_rebuilt_from_the_raw_files(raw):
    files = get_dataset(DATASET).file_names()
    shard, sha, n_train = base_shard(raw / "data", DATASET, raw / "raw", files, SOURCE)
    images = shard.path / FILES["images"]
    data = bytearray(images.read_bytes())
    data[5] ^= 0xFF
    images.write_bytes(bytes(data))
    rebuilt, rebuilt_sha, rebuilt_train = base_shard(raw / "data", DATASET, raw / "raw", files,
                                                     SOURCE)
    assert (rebuilt_sha, rebuilt_train) == (sha, n_train) == (shard_sha256(rebuilt.path), 60)
    assert images.read_bytes()[5] != data[5]


def test_a_changed_assignment_is_refused_when_the_view_is_opened(raw):
    _, out = view(raw)
    layout = SplitView(out)
    assignment = layout.parts[0]["assignment"]
    codes = bytearray(open(assignment, "rb").read())
    codes[0] = (codes[0] + 1) % 3
    with open(assignment, "wb") as handle:
        handle.write(bytes(codes))
    with pytest.raises(ShardError, match="the split assignment of base"):
        load_splits(out)


def test_train_subset_shrinks_only_the_training_split(raw):
    _, full_out = view(raw)
    _, small_out = view(raw, "small", train_subset=15)
    full, small = load_splits(full_out), load_splits(small_out)
    assert len(small["train"].y) == 15 and set(small["train"].index) < set(full["train"].index)
    np.testing.assert_array_equal(small["val"].index, full["val"].index)
    assert len(small["test"].y) == 12


def test_a_snapshots_view_adds_its_batches_rows_after_the_base(raw):
    shard, _, _ = base_shard(raw / "data", DATASET, raw / "raw",
                             get_dataset(DATASET).file_names(), SOURCE)
    images, labels = helpers.make_digits(300, seed=9)
    result = ingestion.ingest(raw / "data", DATASET, [(images, labels)], [shard], "b", {})
    snapshot = snapshots.resolve(raw / "data", DATASET).describe()
    _, out = view(raw, snapshot=snapshot)
    layout = SplitView(out)
    assert [p["id"] for p in layout.parts] == ["base", result.batch]
    counts = layout.metadata["counts"]
    assert counts["test"] == 12 and counts["train"] + counts["val"] + counts["recent"] == 360
    new = layout.ranks("train", {result.batch})
    assert len(new) == counts["train"] - 50
    batch_rows = layout.index("train", new) - 72  # after the base's 60 + 12
    np.testing.assert_array_equal(layout.pixels("train", new), images.reshape(300, -1)[batch_rows])
    np.testing.assert_array_equal(layout.labels("train", new), labels[batch_rows])


def test_mnist_registry_pins_all_four_files():
    for spec in BUILT_IN.values():
        assert len(spec.files) == 4 and spec.train_size == 60_000
        assert all(len(digest) == 64 for _, digest in spec.files.values())
