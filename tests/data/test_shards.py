"""Shards: images stored once as uint8, published whole, refused when changed, trusted by stamp."""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnist_autoencoder.data import shards
from mnist_autoencoder.data.shards import (
    FILES,
    Shard,
    ShardError,
    ShardWriter,
    image_digests,
    shard_sha256,
    sweep,
    verify,
)
from mnist_autoencoder.errors import StateError
from tests.helpers import PROJECT, make_digits


def publish(parent, images, labels, name="s", **extra):
    with ShardWriter(parent) as writer:
        writer.append(images[:7], labels[:7])  # digests computed by the writer
        writer.append(images[7:], labels[7:], image_digests(images[7:]))  # or given
        writer.extra = extra
        path, sha = writer.publish(name)
    return path, sha


@pytest.fixture
def digits():
    return make_digits(20, seed=4)


def settled():
    time.sleep(shards.STAMP_MARGIN_NS / 1e9 + 0.02)  # older than the racy-stamp margin


def test_image_digests_are_the_sha256_of_each_images_784_bytes(digits):
    images, _ = digits
    digests = image_digests(images)  # (n, 28, 28) or (n, 784): the same bytes
    assert digests.shape == (20, 32) and digests.dtype == np.uint8
    for image, digest in zip(images, digests):
        assert bytes(digest) == hashlib.sha256(image.tobytes()).digest()
    np.testing.assert_array_equal(image_digests(images.reshape(20, 784)), digests)
    assert image_digests(np.empty((0, 784), np.uint8)).shape == (0, 32)


def test_a_shard_holds_its_rows_in_order_and_names_each_files_hash(tmp_path, digits):
    images, labels = digits
    path, sha = publish(tmp_path, images, labels, train_rows=12)
    shard = Shard(path)
    assert shard.count == 20 and sha == shard_sha256(path)
    np.testing.assert_array_equal(shard.images(), images.reshape(20, 784))
    np.testing.assert_array_equal(shard.images(np.array([3, 11, 19])),
                                  images.reshape(20, 784)[[3, 11, 19]])
    np.testing.assert_array_equal(shard.images(slice(5, 9)), images.reshape(20, 784)[5:9])
    np.testing.assert_array_equal(shard.labels(), labels)
    np.testing.assert_array_equal(shard.hashes(), image_digests(images))
    assert [start for start, _ in shard.chunks(rows=8)] == [0, 8, 16]
    np.testing.assert_array_equal(np.concatenate([c for _, c in shard.chunks(rows=8)]),
                                  images.reshape(20, 784))
    description = json.loads((path / "shard.json").read_text())
    assert description["train_rows"] == 12 and description["count"] == 20
    for name, digest in description["files"].items():
        assert hashlib.sha256((path / name).read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary folder left


def test_scattered_rows_are_read_one_window_at_a_time_with_the_same_pixels(
        tmp_path, digits, monkeypatch):
    images, labels = digits
    path, _ = publish(tmp_path, images, labels)
    flat, mapped = images.reshape(20, 784), []
    original = np.memmap
    monkeypatch.setattr(shards, "WINDOW_BYTES", 3 * 784)  # windows of 3 rows
    monkeypatch.setattr(shards.np, "memmap", lambda *a, **k: mapped.append(k["shape"][0])
                        or original(*a, **k))
    rows = np.array([0, 1, 2, 5, 6, 13, 19])
    np.testing.assert_array_equal(Shard(path).images(rows), flat[rows])
    assert mapped == [3, 2, 1, 1]  # [0, 3), [5, 7), [13, 14), [19, 20): never the file
    np.testing.assert_array_equal(Shard(path).images(slice(0, 20, 3)), flat[::3])
    assert Shard(path).images(np.empty(0, np.int64)).shape == (0, 784)


def test_publishing_a_name_that_exists_keeps_the_first(tmp_path, digits):
    images, labels = digits
    first, sha = publish(tmp_path, images, labels)
    inode = os.stat(first / FILES["images"]).st_ino
    again, sha_again = publish(tmp_path, images, labels)
    assert again == first and sha_again == sha
    assert os.stat(first / FILES["images"]).st_ino == inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_a_writer_left_by_an_error_leaves_nothing(tmp_path, digits):
    images, labels = digits
    with pytest.raises(RuntimeError, match="stop"), ShardWriter(tmp_path) as writer:
        writer.append(images, labels)
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="20 images, 19 labels"), ShardWriter(tmp_path) as writer:
        writer.append(images, labels[:-1])
    assert list(tmp_path.iterdir()) == []


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and isinstance(error.value, StateError)
    return text


def test_a_changed_byte_is_named_in_one_line(tmp_path, digits):
    path, sha = publish(tmp_path, *digits)
    verify(path, sha)
    target = path / FILES["images"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ShardError) as refused:
        verify(path, sha, what="batch b1")
    text = one_line(refused)
    assert text.startswith(f"{target}: file of batch b1") and "changed since it was written" in text


def test_a_truncated_file_a_missing_file_or_shard_and_a_changed_description_are_named(
        tmp_path, digits):
    path, sha = publish(tmp_path, *digits)
    hashes = path / FILES["hashes"]
    hashes.write_bytes(hashes.read_bytes()[:-32])  # one digest short
    with pytest.raises(ShardError) as refused:
        verify(path, sha)
    assert one_line(refused).startswith(f"{hashes}: ")
    hashes.unlink()
    with pytest.raises(ShardError) as refused:
        verify(path, sha)
    assert one_line(refused).startswith(f"{hashes}: ") and "is missing" in str(refused.value)
    with pytest.raises(ShardError) as refused:
        verify(path, "0" * 64)
    assert "its shard.json's SHA-256 differs" in one_line(refused)
    (path / "shard.json").unlink()
    with pytest.raises(ShardError) as refused:
        verify(path, sha, what="batch b2")
    assert one_line(refused).startswith(f"{path}: batch b2 is missing")


def test_a_stamp_skips_hashing_until_a_file_changes_even_with_its_mtime_put_back(
        tmp_path, digits, monkeypatch):
    path, sha = publish(tmp_path / "shards", *digits)
    stamps = tmp_path / "stamps"
    hashed = []
    real = shards.sha256_file
    monkeypatch.setattr(shards, "sha256_file", lambda p: hashed.append(os.path.basename(p))
                        or real(p))
    settled()
    verify(path, sha, stamps)
    assert sorted(hashed) == sorted([*FILES.values(), "shard.json"])
    assert (stamps / f"{sha}.json").is_file()
    hashed.clear()
    verify(path, sha, stamps)
    assert hashed == ["shard.json"]  # the small description only: the files are trusted
    # the same size and mtime, one byte different: only the ctime tells, and it does
    target = path / FILES["labels"]
    before = os.stat(target)
    data = bytearray(target.read_bytes())
    data[0] = (data[0] + 1) % 10
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(target).st_size == before.st_size
    with pytest.raises(ShardError) as refused:
        verify(path, sha, stamps)
    assert one_line(refused).startswith(f"{target}: ")


def test_no_stamp_for_files_written_just_before_they_were_hashed(tmp_path, digits, monkeypatch):
    """A write in the same tick of the kernel's clock as the stamp could leave the stat
    unchanged, so files changed within the margin are hashed again next time."""
    path, sha = publish(tmp_path / "shards", *digits)
    monkeypatch.setattr(shards, "STAMP_MARGIN_NS", 10**15)
    verify(path, sha, tmp_path / "stamps")
    assert not (tmp_path / "stamps" / f"{sha}.json").exists()


def test_a_damaged_stamp_means_hashing_again(tmp_path, digits):
    path, sha = publish(tmp_path / "shards", *digits)
    settled()
    verify(path, sha, tmp_path / "stamps")
    (tmp_path / "stamps" / f"{sha}.json").write_text("{not json")
    verify(path, sha, tmp_path / "stamps")
    assert json.loads((tmp_path / "stamps" / f"{sha}.json").read_text())  # stamped again


WRITER = """
import sys, time
import numpy as np
from mnist_autoencoder.data.shards import ShardWriter
writer = ShardWriter(sys.argv[1])
writer.append(np.zeros((3, 784), np.uint8), np.zeros(3, np.uint8))
writer.handles["images"].flush()
print(writer.tmp, flush=True)
time.sleep(60)
"""


def test_sweep_removes_what_a_killed_writer_left_and_never_a_live_writers_folder(
        tmp_path, digits):
    published, _ = publish(tmp_path, *digits)
    (tmp_path / ".empty").mkdir()  # a writer between creating its folder and locking it
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=PROJECT,
                            stdout=subprocess.PIPE, text=True,
                            env=os.environ | {"PYTHONPATH": str(PROJECT)})
    try:
        live = Path(proc.stdout.readline().strip())
        assert live.is_dir() and any(live.iterdir())
        assert sweep(tmp_path) == [] and live.is_dir()  # being written: kept
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
    assert sweep(tmp_path) == [live] and not live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".empty", published.name]
    verify(published, shard_sha256(published))  # published shards are never touched
