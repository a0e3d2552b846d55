"""Snapshots that grow by ingested batches: duplicates, stable splits, crashes, concurrency."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from mnist_autoencoder.data import ingestion, snapshots
from mnist_autoencoder.data.catalog import get_dataset
from mnist_autoencoder.data.idx import read_idx_gz
from mnist_autoencoder.data.inputs import open_input
from mnist_autoencoder.data.preprocessing import split_files
from mnist_autoencoder.data.splits import load_splits
from mnist_autoencoder.errors import UserError
from mnist_autoencoder.paths import location
from mnist_autoencoder.storage import write_outputs
from tests import helpers
from tests.helpers import PROJECT, write_idx

DATASET = "synthetic-ingest"


@pytest.fixture
def base(tmp_path):
    helpers.write_dataset(tmp_path / "raw", n_train=300, n_test=60, seed=0)
    helpers.register(tmp_path / "raw", DATASET)
    known = ingestion.base_hashes(tmp_path / "raw", get_dataset(DATASET).file_names())
    return tmp_path, known


def batch(seed, n=40):
    images, labels = helpers.make_digits(n, seed=seed)
    return images, labels


def ingest(root, known, images, labels, source="batch"):
    return ingestion.ingest(root / "data", DATASET, images, labels, known, source, {})


def splits_of(root, snapshot_id, seed=0):
    snapshot = snapshots.resolve(root / "data", DATASET, snapshot_id).describe()
    out = root / "splits" / snapshot_id
    write_outputs(out, split_files(root / "raw", get_dataset(DATASET).file_names(), 50, seed,
                                   {}, snapshot=snapshot))
    return load_splits(out, names=("train", "val", "test", "recent"))


def hashes_of(split):
    return set(snapshots.image_hashes(np.round(split.x * 255).astype(np.uint8)))


def test_a_batch_makes_a_snapshot_and_the_same_batch_again_changes_nothing(base):
    root, known = base
    first = ingest(root, known, *batch(11))
    assert first.created and first.new == 40 and first.duplicates == 0
    again = ingest(root, known, *batch(11))
    assert not again.created and again.new == 0 and again.duplicates == 40
    assert again.snapshot == first.snapshot
    ids = snapshots.snapshot_ids(root / "data", DATASET)
    assert ids == [snapshots.base_id(DATASET), first.snapshot]


def test_test_images_in_a_batch_are_skipped_and_never_reach_train(base):
    root, known = base
    test_images = read_idx_gz(root / "raw" / "t10k-images-idx3-ubyte.gz")[:25]
    new_images, new_labels = batch(12, n=15)
    images = np.concatenate([test_images, new_images])
    labels = np.concatenate([np.zeros(25, np.uint8), new_labels])
    result = ingest(root, known, images, labels)
    assert (result.new, result.duplicates) == (15, 25)
    splits = splits_of(root, result.snapshot)
    test_hashes = set(snapshots.image_hashes(read_idx_gz(root / "raw" /
                                                         "t10k-images-idx3-ubyte.gz")))
    for name in ("train", "val", "recent"):
        assert not hashes_of(splits[name]) & test_hashes, name


def test_adding_a_batch_never_moves_an_image_between_splits(base):
    root, known = base
    first = ingest(root, known, *batch(13, n=200))
    second = ingest(root, known, *batch(14, n=200))
    before, after = splits_of(root, first.snapshot), splits_of(root, second.snapshot)
    for name in ("train", "val", "recent"):
        assert hashes_of(before[name]) <= hashes_of(after[name]), name
    np.testing.assert_array_equal(before["test"].x, after["test"].x)  # the fixed test split
    counts = {name: len(after[name].y) - len(before[name].y) for name in ("train", "val",
                                                                          "recent")}
    assert sum(counts.values()) == 200 and counts["recent"] > 0 and counts["val"] > 0


def test_an_old_snapshot_id_reproduces_its_data_and_unknown_ids_are_refused(base):
    root, known = base
    first = ingest(root, known, *batch(15))
    ingest(root, known, *batch(16))
    old = splits_of(root, first.snapshot)
    assert len(old["train"].y) + len(old["val"].y) + len(old["recent"].y) == 300 + 40
    with pytest.raises(snapshots.SnapshotError, match="no snapshot 'synthetic-ingest-nope'"):
        snapshots.resolve(root / "data", DATASET, "synthetic-ingest-nope")


def test_a_batch_file_changed_after_ingest_is_detected_and_refused(base):
    root, known = base
    result = ingest(root, known, *batch(17))
    (path,) = snapshots.batch_path(root / "data", DATASET, "x").parent.iterdir()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped in the middle of the images
    path.write_bytes(bytes(data))
    with pytest.raises(snapshots.SnapshotError, match="changed since it was ingested"):
        snapshots.resolve(root / "data", DATASET, result.snapshot)


def test_a_batch_without_labels_is_refused(tmp_path):
    images, _ = batch(18)
    write_idx(tmp_path / "unlabelled", images)
    with pytest.raises(ValueError, match="a batch to ingest needs a label"):
        ingestion.read_labelled(open_input(tmp_path / "unlabelled"))


def _ingest_in_process(root, known, seed):
    ingest(root, known, *batch(seed, n=300))


def test_two_ingests_at_once_both_land(base):
    root, known = base
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_ingest_in_process, args=(root, known, seed))
             for seed in (21, 22)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    manifest = snapshots.read_manifest(root / "data", DATASET)
    assert len(manifest) == 2 and list(manifest["new"]) == [300, 300]
    assert len(snapshots.resolve(root / "data", DATASET).batches) == 2


KILLED = """
import sys
from pathlib import Path
from mnist_autoencoder.data import ingestion, snapshots
from tests import helpers
root, seed = Path(sys.argv[1]), int(sys.argv[2])
images, labels = helpers.make_digits(20000, seed=seed)
print("ready", flush=True)
ingestion.ingest(root / "data", "synthetic-ingest", images, labels, set(), "b", {})
"""


def test_an_ingest_killed_at_any_point_leaves_the_old_or_the_new_snapshot(base):
    root, _ = base
    rng = np.random.default_rng(0)
    seen_states = set()
    for attempt in range(8):
        proc = subprocess.Popen([sys.executable, "-c", KILLED, str(root), str(100 + attempt)],
                                cwd=PROJECT, stdout=subprocess.PIPE, text=True,
                                env=os.environ | {"PYTHONPATH": str(PROJECT)})
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        before = len(seen_states)
        snapshot = snapshots.resolve(root / "data", DATASET)  # readable, every batch intact
        seen_states.add((snapshot.id, len(snapshot.batches)))
        assert len(seen_states) >= before
    manifest = snapshots.read_manifest(root / "data", DATASET)
    assert len(manifest) == len(snapshots.resolve(root / "data", DATASET).batches)
    if len(manifest):  # every kill may have come before the manifest changed
        assert pd.Series(manifest["new"]).eq(20000).all()  # no batch is ever half visible


def test_a_truncated_manifest_is_refused_in_one_line_that_names_it(tmp_path):
    path = location("manifest", tmp_path, dataset="mnist")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 not a whole file")
    with pytest.raises(snapshots.SnapshotError) as refused:
        snapshots.resolve(tmp_path, "mnist")
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    assert isinstance(refused.value, UserError)
