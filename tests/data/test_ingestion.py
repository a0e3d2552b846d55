"""Snapshots that grow by ingested batches: exact duplicates, stable splits, crashes, full disks."""

import errno
import multiprocessing
import os
import shutil
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
from mnist_autoencoder.data.ingestion import DigestIndex, first_occurrences
from mnist_autoencoder.data.inputs import open_input
from mnist_autoencoder.data.pixels import InputError
from mnist_autoencoder.data.preprocessing import base_shard, build_view
from mnist_autoencoder.data.shards import FILES, Shard, ShardWriter, image_digests
from mnist_autoencoder.data.splits import load_splits
from mnist_autoencoder.errors import UserError
from mnist_autoencoder.paths import location
from mnist_autoencoder.storage import sha256_bytes, write_outputs
from tests import helpers
from tests.helpers import PROJECT, write_idx

DATASET = "synthetic-ingest"


def base_of(root):
    return base_shard(root / "data", DATASET, root / "raw", get_dataset(DATASET).file_names(),
                      {"raw": "v1"})[0]


@pytest.fixture
def base(tmp_path):
    helpers.write_dataset(tmp_path / "raw", n_train=300, n_test=60, seed=0)
    helpers.register(tmp_path / "raw", DATASET)
    return tmp_path, base_of(tmp_path)


def batch(seed, n=40):
    return helpers.make_digits(n, seed=seed)


def chunked(images, labels, size):
    for start in range(0, len(images), size):
        yield images[start:start + size].reshape(-1, 784), labels[start:start + size]


def ingest(root, known, images, labels, source="batch", chunk=16):
    return ingestion.ingest(root / "data", DATASET, chunked(images, labels, chunk), [known],
                            source, {})


def splits_of(root, snapshot_id, seed=0):
    snapshot = snapshots.resolve(root / "data", DATASET, snapshot_id).describe()
    out = root / "splits" / snapshot_id
    write_outputs(out, build_view(root / "data", DATASET, root / "raw",
                                  get_dataset(DATASET).file_names(), 50, seed, {"raw": "v1"},
                                  snapshot=snapshot))
    return load_splits(out, names=("train", "val", "test", "recent"))


def digests_of(images) -> set[bytes]:
    return {bytes(d) for d in image_digests(np.asarray(images, np.uint8).reshape(-1, 784))}


def hashes_of(split):
    return digests_of(np.round(split.x * 255).astype(np.uint8))


def batch_dir(root):
    return snapshots.batch_path(root / "data", DATASET, "x").parent


def test_a_batch_makes_a_snapshot_and_the_same_batch_again_changes_nothing(base):
    root, known = base
    first = ingest(root, known, *batch(11))
    assert first.created and first.new == 40 and first.duplicates == 0
    again = ingest(root, known, *batch(11))
    assert not again.created and again.new == 0 and again.duplicates == 40
    assert again.snapshot == first.snapshot
    ids = snapshots.snapshot_ids(root / "data", DATASET)
    assert ids == [snapshots.base_id(DATASET), first.snapshot]
    assert [p.name for p in batch_dir(root).iterdir()] == [first.batch]  # nothing else left


def test_duplicates_within_a_batch_are_exact_in_one_chunk_and_across_chunks(base):
    root, known = base
    images, labels = batch(12, n=30)
    # repeats: of row 0 in the same chunk (rows < 16), of rows 1 and 17 in later chunks
    repeats = [0, 1, 17, 0]
    offered = np.concatenate([images, images[repeats]])
    offered_labels = np.concatenate([labels, (labels[repeats] + 1) % 10])  # labels ignored
    order = np.array([0, 30, *range(1, 30), 31, 32, 33])
    result = ingest(root, known, offered[order], offered_labels[order], chunk=16)
    assert (result.offered, result.new, result.duplicates) == (34, 30, 4)
    shard = Shard(snapshots.batch_path(root / "data", DATASET, result.batch))
    np.testing.assert_array_equal(shard.images(), images.reshape(30, 784))  # first occurrences
    np.testing.assert_array_equal(shard.labels(), labels)  # with their own labels
    np.testing.assert_array_equal(shard.hashes(), image_digests(images))
    assert result.batch == sha256_bytes(image_digests(images).tobytes())[:16]


def test_duplicates_across_batches_are_dropped_and_the_rest_kept_in_order(base):
    root, known = base
    a_images, a_labels = batch(13, n=50)
    first = ingest(root, known, a_images, a_labels)
    b_images, b_labels = batch(14, n=50)
    mixed = np.concatenate([a_images[::5], b_images])  # 10 of the first batch, then 50 new
    second = ingest(root, known, mixed, np.concatenate([a_labels[::5], b_labels]))
    assert (second.offered, second.new, second.duplicates) == (60, 50, 10)
    shard = Shard(snapshots.batch_path(root / "data", DATASET, second.batch))
    np.testing.assert_array_equal(shard.images(), b_images.reshape(50, 784))
    snapshot = snapshots.resolve(root / "data", DATASET)
    assert snapshot.ancestors == (snapshots.base_id(DATASET), first.snapshot)
    assert [b.count for b in snapshot.batches] == [50, 50]


def test_base_images_train_and_test_are_duplicates_and_never_reach_train(base):
    root, known = base
    raw = root / "raw"
    test_images = read_idx_gz(raw / "t10k-images-idx3-ubyte.gz")
    train_images = read_idx_gz(raw / "train-images-idx3-ubyte.gz")
    new_images, new_labels = batch(15, n=15)
    images = np.concatenate([test_images[:25], new_images, train_images[:5]])
    labels = np.concatenate([np.zeros(25, np.uint8), new_labels, np.zeros(5, np.uint8)])
    result = ingest(root, known, images, labels)
    assert (result.new, result.duplicates) == (15, 30)
    splits = splits_of(root, result.snapshot)
    for name in ("train", "val", "recent"):
        assert not hashes_of(splits[name]) & digests_of(test_images), name
    assert digests_of(new_images) <= set().union(*(hashes_of(splits[n])
                                                   for n in ("train", "val", "recent")))


def test_adding_a_batch_never_moves_an_image_between_splits(base):
    root, known = base
    first = ingest(root, known, *batch(16, n=200), chunk=64)
    second = ingest(root, known, *batch(17, n=200), chunk=64)
    before, after = splits_of(root, first.snapshot), splits_of(root, second.snapshot)
    for name in ("train", "val", "recent"):
        assert hashes_of(before[name]) <= hashes_of(after[name]), name
    np.testing.assert_array_equal(before["test"].x, after["test"].x)  # the fixed test split
    counts = {name: len(after[name].y) - len(before[name].y) for name in ("train", "val",
                                                                          "recent")}
    assert sum(counts.values()) == 200 and counts["recent"] > 0 and counts["val"] > 0


def test_an_old_snapshot_id_reproduces_its_data_and_unknown_ids_are_refused(base):
    root, known = base
    first = ingest(root, known, *batch(18))
    ingest(root, known, *batch(19))
    old = splits_of(root, first.snapshot)
    assert len(old["train"].y) + len(old["val"].y) + len(old["recent"].y) == 300 + 40
    with pytest.raises(snapshots.SnapshotError, match="no snapshot 'synthetic-ingest-nope'"):
        snapshots.resolve(root / "data", DATASET, "synthetic-ingest-nope")


def test_the_same_images_as_idx_or_parquet_make_the_same_batch(base, tmp_path):
    root, known = base
    images, labels = batch(20, n=30)
    write_idx(tmp_path / "idx", images, labels)
    pd.DataFrame({"pixels": list(images.reshape(30, -1)), "label": labels}).to_parquet(
        tmp_path / "u8.parquet")
    pd.DataFrame({"pixels": list(images.reshape(30, -1) / 255.0), "label": labels}).to_parquet(
        tmp_path / "float.parquet")
    results = [ingestion.ingest(root / "data", DATASET,
                                ingestion.labelled_chunks(open_input(path), chunk=7), [known],
                                str(path), {})
               for path in (tmp_path / "idx", tmp_path / "u8.parquet", tmp_path / "float.parquet")]
    assert results[0].created and results[0].new == 30
    assert [r.duplicates for r in results[1:]] == [30, 30]  # float pixels: the same 256 levels


def test_labelled_chunks_pass_uint8_through_and_refuse_missing_labels(tmp_path):
    images, labels = batch(21)
    write_idx(tmp_path / "labelled", images, labels)
    chunks = list(ingestion.labelled_chunks(open_input(tmp_path / "labelled"), chunk=16))
    assert [len(c[0]) for c in chunks] == [16, 16, 8]
    assert all(c[0].dtype == np.uint8 and c[1].dtype == np.uint8 for c in chunks)
    np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), images.reshape(40, -1))
    write_idx(tmp_path / "unlabelled", images)
    with pytest.raises(InputError, match="a batch to ingest needs a label"):
        next(ingestion.labelled_chunks(open_input(tmp_path / "unlabelled")))


def test_first_occurrences_and_the_index_are_exact_when_8_bytes_collide():
    rng = np.random.default_rng(0)
    digests = rng.integers(0, 256, (6, 32), dtype=np.uint8)
    digests[1, :8] = digests[3, :8] = digests[0, :8]  # same sort key, different digests
    digests[4] = digests[3]  # a true duplicate, after a colliding one in between
    digests[5] = digests[0]
    assert first_occurrences(digests).tolist() == [True, True, True, True, False, False]
    index = DigestIndex()
    index.add(digests[[1, 2]])
    index.add(digests[[3]])
    probe = np.stack([digests[0], digests[1], digests[3], digests[2],
                      rng.integers(0, 256, 32, dtype=np.uint8)])
    assert index.contains(probe).tolist() == [False, True, True, True, False]
    assert len(index) == 3


def test_the_index_over_shards_answers_as_a_set_of_all_32_bytes_would(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (500, 784), dtype=np.uint8)
    found = []
    for i, part in enumerate((images[:200], images[200:350])):
        with ShardWriter(tmp_path) as writer:
            writer.append(part, np.zeros(len(part), np.uint8))
            found.append(Shard(writer.publish(f"s{i}")[0]))
    index = DigestIndex.of(found)
    probe_images = np.concatenate([images[::3], rng.integers(0, 256, (50, 784), np.uint8)])
    expected = [bytes(d) in digests_of(images[:350]) for d in image_digests(probe_images)]
    assert index.contains(image_digests(probe_images)).tolist() == expected
    index.close()


def test_a_folder_left_where_the_batch_goes_is_replaced(base):
    root, known = base
    images, labels = batch(22)
    leftover = snapshots.batch_path(root / "data", DATASET,
                                    sha256_bytes(image_digests(images).tobytes())[:16])
    leftover.mkdir(parents=True)
    (leftover / FILES["images"]).write_bytes(b"half of an earlier attempt")
    result = ingest(root, known, images, labels)
    assert result.created and snapshots.resolve(root / "data", DATASET).batches[0].count == 40


def test_a_changed_earlier_batch_stops_the_next_ingest_before_any_work(base):
    root, known = base
    first = ingest(root, known, *batch(23))
    images = snapshots.batch_path(root / "data", DATASET, first.batch) / FILES["images"]
    data = bytearray(images.read_bytes())
    data[100] ^= 0xFF
    images.write_bytes(bytes(data))
    manifest = location("manifest", root / "data", dataset=DATASET).read_bytes()

    def never_read():
        raise AssertionError("the batch was read")
        yield

    with pytest.raises(UserError) as refused:
        ingestion.ingest(root / "data", DATASET, never_read(), [known], "b", {})
    assert str(refused.value).startswith(f"{images}: ") and "\n" not in str(refused.value)
    assert location("manifest", root / "data", dataset=DATASET).read_bytes() == manifest


def _ingest_in_process(root, seed, shared):
    images, labels = batch(seed, n=300)
    common, common_labels = batch(99, n=100)  # in both batches
    ingest(root, base_of(root), np.concatenate([common, images]),
           np.concatenate([common_labels, labels]), chunk=64)


def test_two_ingests_at_once_both_land_and_share_no_image(base):
    root, _ = base
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_ingest_in_process, args=(root, seed, None))
             for seed in (24, 25)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    manifest = snapshots.read_manifest(root / "data", DATASET)
    assert len(manifest) == 2 and sorted(manifest["new"]) == [300, 400]
    snapshot = snapshots.resolve(root / "data", DATASET)
    stored = np.concatenate([Shard(b.path).hashes() for b in snapshot.batches])
    assert len(stored) == 700 and first_occurrences(stored).all()  # the common 100 once


# What a script run in a process of its own starts with: the base shard of ``root`` and
# ``ingest(images, labels, chunk)``, as the tests here call them.
SCRIPT = """
import sys
from pathlib import Path
from mnist_autoencoder.data import ingestion
from mnist_autoencoder.data.catalog import get_dataset
from mnist_autoencoder.data.preprocessing import base_shard
from tests import helpers
root = Path(sys.argv[1])
known = base_shard(root / "data", "synthetic-ingest", root / "raw",
                   get_dataset("synthetic-ingest").file_names(), {"raw": "v1"})[0]

def ingest(images, labels, chunk):
    parts = ((images[s:s + chunk].reshape(-1, 784), labels[s:s + chunk])
             for s in range(0, len(images), chunk))
    return ingestion.ingest(root / "data", "synthetic-ingest", parts, [known], "b", {})
"""

KILLED = SCRIPT + """
images, labels = helpers.make_digits(20000, seed=int(sys.argv[2]))
print("ready", flush=True)
ingest(images, labels, 2048)
"""


def test_an_ingest_killed_at_any_point_leaves_the_old_or_the_new_snapshot(base):
    root, _ = base
    rng = np.random.default_rng(0)
    for attempt in range(6):
        proc = subprocess.Popen([sys.executable, "-c", KILLED, str(root), str(100 + attempt)],
                                cwd=PROJECT, stdout=subprocess.PIPE, text=True,
                                env=os.environ | {"PYTHONPATH": str(PROJECT)})
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        snapshots.resolve(root / "data", DATASET)  # readable, every batch intact
    manifest = snapshots.read_manifest(root / "data", DATASET)
    assert len(manifest) == len(snapshots.resolve(root / "data", DATASET).batches)
    if len(manifest):  # every kill may have come before the manifest changed
        assert pd.Series(manifest["new"]).eq(20000).all()  # no batch is ever half visible
    # the next ingest removes what the killed ones left half-written
    result = ingest(root, base_of(root), *batch(107))
    assert sorted(p.name for p in batch_dir(root).iterdir()) == sorted(
        [*manifest["batch_id"], result.batch])


def test_a_truncated_parquet_manifest_is_refused_in_one_line_that_names_it(tmp_path):
    path = location("legacy_manifest", tmp_path, dataset="mnist")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 not a whole file")
    with pytest.raises(snapshots.SnapshotError) as refused:
        snapshots.resolve(tmp_path, "mnist")
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    assert isinstance(refused.value, UserError)


def test_read_ahead_keeps_order_raises_where_the_error_was_and_stops_when_left():
    assert list(ingestion.read_ahead(iter(range(5)))) == [0, 1, 2, 3, 4]
    produced = []

    def items():
        for i in range(100):
            produced.append(i)
            if i == 3:
                raise InputError("bad image 3")
            yield i

    got = []
    with pytest.raises(InputError, match="bad image 3"):
        for item in ingestion.read_ahead(items()):
            got.append(item)
    assert got == [0, 1, 2]
    produced.clear()
    endless = ingestion.read_ahead(iter(lambda: produced.append(1) or 1, None), depth=2)
    assert next(endless) == 1
    endless.close()  # the thread stops: nothing is produced after it
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count <= 4


def test_a_manifest_that_cannot_be_written_leaves_no_batch_behind(base, monkeypatch):
    root, known = base
    first = ingest(root, known, *batch(31))
    before = state(root)

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ingestion, "append_row", lambda *args: full(None))
    with pytest.raises(ingestion.IngestError, match="No space left on device"):
        ingest(root, known, *batch(32))
    assert state(root) == before
    assert snapshots.resolve(root / "data", DATASET).id == first.snapshot


# ---- a full disk: the snapshot untouched, nothing of the batch left, and it can come again ----

def state(root):
    """The manifest's rows and what the batches folder holds, hidden folders included."""
    manifest = snapshots.read_manifest(root / "data", DATASET)
    return (manifest.to_dict("records"), sorted(p.name for p in batch_dir(root).iterdir()))


@pytest.fixture
def small_disk(base):
    """``<data>/snapshots`` on a tmpfs of 256 KiB: room for a small batch, not for 1,000 images."""
    root, known = base
    mount = shutil.which("mount")
    target = root / "data" / "snapshots"
    target.mkdir(parents=True)
    if mount is None:
        pytest.skip("no mount command to make a small tmpfs")
    made = subprocess.run([mount, "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(target)],
                          capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip() or made.returncode})")
    try:
        yield root, known, target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_full_disk_leaves_the_snapshot_and_the_batch_can_be_ingested_again(small_disk):
    root, known, target = small_disk
    first = ingest(root, known, *batch(26, n=40))
    before = state(root)
    images, labels = batch(27, n=1000)  # 784 KB of pixels: more than the disk holds
    with pytest.raises(ingestion.IngestError) as refused:
        ingest(root, known, images, labels, chunk=128)
    text = str(refused.value)
    assert "\n" not in text and "nothing was added" in text and str(batch_dir(root)) in text
    assert isinstance(refused.value, UserError)
    assert state(root) == before  # the manifest as it was, no hidden folder left
    assert snapshots.resolve(root / "data", DATASET).id == first.snapshot
    subprocess.run(["mount", "-o", "remount,size=8m", str(target)], check=True)
    again = ingest(root, known, images, labels, chunk=128)
    assert again.created and again.new == 1000
    assert snapshots.resolve(root / "data", DATASET).id == again.snapshot


FILE_SIZE_LIMIT = SCRIPT + """
import resource, signal
images, labels = helpers.make_digits(1000, seed=28)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    ingest(images, labels, 128)
except ingestion.IngestError as error:
    print("refused:", error)
"""


def test_a_file_size_limit_reached_while_writing_is_a_full_disk_too(base):
    root, known = base
    first = ingest(root, known, *batch(29))
    before = state(root)
    proc = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT, str(root)], cwd=PROJECT,
                          capture_output=True, text=True, timeout=120,
                          env=os.environ | {"PYTHONPATH": str(PROJECT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("refused: ") and "File too large" in proc.stdout
    assert proc.stdout.count("\n") == 1
    assert state(root) == before
    assert snapshots.resolve(root / "data", DATASET).id == first.snapshot
    again = ingest(root, known, *helpers.make_digits(1000, seed=28))
    assert again.created and again.new == 1000

