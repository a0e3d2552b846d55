"""Snapshots over shards: batches of the NPZ format migrated on first use; changed ones refused."""

import datetime as dt
import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from mnist_autoencoder.data import ingestion, snapshots
from mnist_autoencoder.data.catalog import get_dataset
from mnist_autoencoder.data.preprocessing import base_shard
from mnist_autoencoder.data.shards import FILES, Shard, ShardError
from mnist_autoencoder.errors import StateError
from mnist_autoencoder.paths import location
from mnist_autoencoder.storage import atomic_path, sha256_file, sha256_json, write_npz
from tests import helpers

DATASET = "synthetic-snapshots"


@pytest.fixture
def root(tmp_path):
    helpers.write_dataset(tmp_path / "raw", n_train=120, n_test=30, seed=0)
    helpers.register(tmp_path / "raw", DATASET)
    return tmp_path


def known(root):
    return base_shard(root / "data", DATASET, root / "raw", get_dataset(DATASET).file_names(),
                      {"raw": "v1"})[0]


def legacy_ingest(data_dir, images, labels):
    """A batch as ingest wrote it before shards: an NPZ of uint8 images, labels and hex
    hashes, and a manifest row with every image's hash (the code of that version)."""
    path = location("legacy_manifest", data_dir, dataset=DATASET)
    manifest = pd.read_parquet(path) if path.exists() else pd.DataFrame()
    hashes = [hashlib.sha256(row.tobytes()).hexdigest() for row in images.reshape(-1, 784)]
    batch_id = sha256_json(hashes)[:16]
    payload = location("legacy_batch", data_dir, dataset=DATASET, batch_id=batch_id)
    write_npz(payload, {"images": images, "labels": labels, "hashes": np.array(hashes)})
    ids = list(manifest["batch_id"]) if len(manifest) else []
    snapshot = snapshots.snapshot_id(DATASET, [*ids, batch_id])
    row = {"batch_id": batch_id, "snapshot_id": snapshot,
           "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "source": "old", "source_files": json.dumps({}), "offered": len(hashes),
           "new": len(hashes), "duplicates": 0, "image_sha256": hashes,
           "payload": payload.name, "payload_sha256": sha256_file(payload)}
    table = pd.concat([manifest, pd.DataFrame([row])], ignore_index=True)
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    return batch_id, snapshot, payload


def test_a_legacy_batch_is_migrated_on_first_use_with_the_same_ids(root):
    data = root / "data"
    a = helpers.make_digits(30, seed=1)
    b = helpers.make_digits(20, seed=2)
    a_id, a_snapshot, a_npz = legacy_ingest(data, *a)
    b_id, b_snapshot, b_npz = legacy_ingest(data, *b)
    snapshot = snapshots.resolve(data, DATASET, a_snapshot)  # an old id: migrates every batch
    assert snapshot.id == a_snapshot and [x.id for x in snapshot.batches] == [a_id]
    assert not a_npz.exists() and not b_npz.exists()
    latest = snapshots.resolve(data, DATASET)
    assert latest.id == b_snapshot and [x.id for x in latest.batches] == [a_id, b_id]
    assert latest.ancestors == (snapshots.base_id(DATASET), a_snapshot)
    for batch, (images, labels) in zip(latest.batches, (a, b)):
        shard = Shard(batch.path)
        assert batch.path == snapshots.batch_path(data, DATASET, batch.id) and batch.count == \
            len(images)
        np.testing.assert_array_equal(shard.images(), images.reshape(-1, 784))
        np.testing.assert_array_equal(shard.labels(), labels)
        assert [bytes(h).hex() for h in shard.hashes()] == [
            hashlib.sha256(row.tobytes()).hexdigest() for row in images.reshape(-1, 784)]
    manifest = snapshots.read_manifest(data, DATASET)
    assert "image_sha256" not in manifest and list(manifest["payload"]) == [a_id, b_id]
    assert list(manifest["snapshot_id"]) == [a_snapshot, b_snapshot]
    assert snapshots.migrate(data, DATASET) == 0  # once


def test_ingest_migrates_first_and_its_duplicates_include_the_migrated_batches(root):
    data = root / "data"
    images, labels = helpers.make_digits(30, seed=3)
    a_id, a_snapshot, npz = legacy_ingest(data, images, labels)
    fresh = helpers.make_digits(10, seed=4)
    result = ingestion.ingest(data, DATASET, [(np.concatenate([images, fresh[0]]),
                                               np.concatenate([labels, fresh[1]]))],
                              [known(root)], "new", {})
    assert not npz.exists() and (result.new, result.duplicates) == (10, 30)
    assert snapshots.resolve(data, DATASET).ancestors == (snapshots.base_id(DATASET),
                                                          a_snapshot)


def test_a_legacy_batch_changed_before_migration_is_refused_naming_it(root):
    data = root / "data"
    _, snapshot, npz = legacy_ingest(data, *helpers.make_digits(10, seed=5))
    raw = bytearray(npz.read_bytes())
    raw[-200] ^= 0xFF
    npz.write_bytes(bytes(raw))
    manifest = location("legacy_manifest", data, dataset=DATASET).read_bytes()
    with pytest.raises(snapshots.SnapshotError) as refused:
        snapshots.resolve(data, DATASET, snapshot)
    assert str(refused.value).startswith(f"{npz}: ") and "\n" not in str(refused.value)
    assert location("legacy_manifest", data, dataset=DATASET).read_bytes() == manifest
    assert npz.exists()


@pytest.fixture
def ingested(root):
    data = root / "data"
    first = ingestion.ingest(data, DATASET, [helpers.make_digits(25, seed=6)], [known(root)],
                             "a", {})
    second = ingestion.ingest(data, DATASET, [helpers.make_digits(25, seed=7)], [known(root)],
                              "b", {})
    return data, first, second


def test_a_changed_byte_in_a_batch_is_named_in_one_line_by_the_next_resolve(ingested):
    data, first, second = ingested
    target = snapshots.batch_path(data, DATASET, first.batch) / FILES["images"]
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    target.write_bytes(bytes(raw))
    snapshots.resolve(data, DATASET, snapshots.base_id(DATASET))  # the base alone: fine
    for wanted in (first.snapshot, "latest"):
        with pytest.raises(ShardError) as refused:
            snapshots.resolve(data, DATASET, wanted)
        text = str(refused.value)
        assert isinstance(refused.value, StateError) and "\n" not in text
        assert text.startswith(f"{target}: file of batch {first.batch}")


def test_a_missing_batch_is_named_in_one_line(ingested):
    data, first, second = ingested
    folder = snapshots.batch_path(data, DATASET, second.batch)
    shutil.rmtree(folder)
    snapshots.resolve(data, DATASET, first.snapshot)  # earlier snapshots do not hold it
    with pytest.raises(ShardError) as refused:
        snapshots.resolve(data, DATASET)
    text = str(refused.value)
    assert text.startswith(f"{folder}: batch {second.batch}") and "is missing" in text
    assert "\n" not in text


def test_sample_batches_draws_rows_of_every_batch_with_their_labels(ingested):
    data, first, second = ingested
    shards = [Shard(b.path) for b in snapshots.resolve(data, DATASET).batches]
    images, labels = snapshots.sample_batches(shards, limit=100)
    assert len(images) == 50  # all of them, in order, when there are no more
    np.testing.assert_array_equal(images[25:], helpers.make_digits(25, seed=7)[0].reshape(25,
                                                                                         -1))
    sample, sample_labels = snapshots.sample_batches(shards, limit=10, seed=3)
    everything = {bytes(row): label for row, label in zip(images, labels)}
    assert len(sample) == 10 and all(everything[bytes(r)] == y
                                     for r, y in zip(sample, sample_labels))
