"""Shards: images stored once, as uint8, in immutable folders that snapshots share.

A shard is a folder of row-aligned raw files and a small description:

- ``images.u8``: n x 784 bytes, each image's pixels (0-255) row after row;
- ``labels.u8``: n bytes;
- ``hashes.bin``: n x 32 bytes, the SHA-256 of each image's 784 bytes (its identity,
  for duplicates and for the hash split);
- ``shard.json``: the count, the image size and each file's SHA-256.

Its identity is the SHA-256 of ``shard.json``, which names the others' hashes. A
writer fills a hidden temporary folder while it hashes what it writes (nothing is
read back) and renames it into place complete; nothing else ever writes to it.

Raw files rather than ``.npy`` or NPZ: a writer appends chunks whose total it does
not know in advance, and a reader maps the file and copies out the rows it needs,
so reading a sample of a 3,000,000-image shard costs the sample, not the shard.

Verification (``verify``): a shard is hashed in full the first time it is used on a
machine; then a stamp records each file's stat (device, inode, size, mtime and
ctime, which the kernel sets on every write and no tool can set back), and a later
use whose stat matches trusts the stamp. A changed or missing file is refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mnist_autoencoder.errors import StateError
from mnist_autoencoder.roots import ensure, stored_sha256
from mnist_autoencoder.storage import _identity, _umask, sha256_file, write_json_atomic

IMAGE_BYTES = 784
HASH_BYTES = 32
FILES = {"images": "images.u8", "labels": "labels.u8", "hashes": "hashes.bin"}
DESCRIPTION = "shard.json"
# Rows copied per read when a caller walks a whole shard (about 100 MB of pixels).
CHUNK_ROWS = 131_072
STAMP_MARGIN_NS = 50_000_000
# The most of an images file mapped at once when scattered rows are copied out.
WINDOW_BYTES = 64 * 1024 * 1024


class ShardError(StateError):
    """A shard that is missing, incomplete or changed since it was written."""


def image_digests(images: np.ndarray) -> np.ndarray:
    """The SHA-256 of each uint8 image's bytes, as an (n, 32) uint8 array.

    One hashlib call per image (about 1.3 us each): slices of one memoryview, not
    numpy rows, so the loop costs little beyond the hashing itself.
    """
    images = np.asarray(images, np.uint8)
    flat = np.ascontiguousarray(images.reshape(len(images), -1 if len(images) else IMAGE_BYTES))
    data, sha256 = memoryview(flat.reshape(-1)), hashlib.sha256
    size = flat.shape[1] if len(flat) else IMAGE_BYTES
    digests = b"".join([sha256(data[i:i + size]).digest() for i in range(0, len(data), size)])
    return np.frombuffer(digests, np.uint8).reshape(len(flat), HASH_BYTES).copy()


def hex_digests(digests: np.ndarray) -> list[str]:
    return [bytes(row).hex() for row in digests]


class ShardWriter:
    """Append images, labels and their hashes; ``publish`` moves the folder into place.

    Used as a context manager: leaving the block without publishing (an error, a
    full disk) removes the temporary folder, so nothing half-written is ever seen.
    Until then the folder is locked (``flock`` on it, which dies with the process), so
    a folder a killed writer left is told from one being written (``sweep``).
    """

    def __init__(self, parent: str | Path):
        self.parent = Path(parent)
        self.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=".shard.", suffix=".tmp", dir=self.parent))
        self._lock = os.open(self.tmp, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # before any file: see ``sweep``
        self.handles = {k: open(self.tmp / name, "wb") for k, name in FILES.items()}
        self.digests = {k: hashlib.sha256() for k in FILES}
        self.count = 0
        self.image_bytes = IMAGE_BYTES  # set by the first rows appended
        self.extra: dict = {}  # more fields for shard.json (the base shard's train_rows)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._close(discard=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.close(self._lock)

    def append(self, images: np.ndarray, labels: np.ndarray,
               hashes: np.ndarray | None = None) -> None:
        """Add rows: images (n, 784) or (n, 28, 28) uint8, labels (n,), and their digests if
        already known (else computed here)."""
        images = np.asarray(images, np.uint8)
        images = np.ascontiguousarray(images.reshape(len(images), -1 if len(images)
                                                     else self.image_bytes))
        if len(images):
            self.image_bytes = images.shape[1]
        labels = np.ascontiguousarray(labels, np.uint8).reshape(-1)
        hashes = image_digests(images) if hashes is None else np.ascontiguousarray(hashes,
                                                                                  np.uint8)
        if not len(images) == len(labels) == len(hashes):
            raise ValueError(f"{len(images)} images, {len(labels)} labels, {len(hashes)} hashes")
        for key, array in (("images", images), ("labels", labels), ("hashes", hashes)):
            self.handles[key].write(array.data)
            self.digests[key].update(array.data)
        self.count += len(images)

    def _close(self, discard: bool = False) -> None:
        """Flush and fsync each file; with ``discard`` (the folder is being dropped: a full
        disk, an error), close them whatever fails, so the folder can be removed."""
        for handle in self.handles.values():
            if handle.closed:
                continue
            try:
                if not discard:
                    handle.flush()
                    os.fsync(handle.fileno())
            finally:
                try:
                    handle.close()
                except OSError:
                    if not discard:
                        raise

    def publish(self, name: str) -> tuple[Path, str]:
        """Make the folder ``parent/name``; return it and the shard's hash.

        Shards are content-addressed by their callers: if ``name`` exists already it
        holds the same content, is kept, and this copy is dropped.
        """
        self._close()
        description = {"count": self.count, "image_bytes": self.image_bytes,
                       "files": {FILES[k]: d.hexdigest() for k, d in self.digests.items()}
                       } | self.extra
        text = json.dumps(description, indent=2, sort_keys=True) + "\n"
        (self.tmp / DESCRIPTION).write_text(text)
        for path in self.tmp.iterdir():
            path.chmod(0o666 & ~_umask())
        self.tmp.chmod(0o777 & ~_umask())
        final = self.parent / name
        if not final.exists():
            os.replace(self.tmp, final)
        return final, hashlib.sha256(text.encode()).hexdigest()


def sweep(parent: str | Path) -> list[Path]:
    """Remove the hidden folders that writers killed mid-way left in ``parent``; return them.

    A folder is a killed writer's when its lock can be taken and it holds files: a
    live writer holds the lock from before it creates its first file to the end.
    """
    removed = []
    for path in Path(parent).glob(".*"):
        try:
            handle = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue  # not a folder, or gone already
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(handle)
            continue  # being written
        try:
            if any(path.iterdir()):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        finally:
            os.close(handle)
    return removed


class Shard:
    """A published shard, read by row (``count``, ``labels``, ``hashes``, ``images``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.description = json.loads((self.path / DESCRIPTION).read_text())
            self.count = int(self.description["count"])
            self.image_bytes = int(self.description.get("image_bytes", IMAGE_BYTES))
        except (OSError, ValueError, KeyError) as error:
            raise ShardError(f"{self.path}: not a complete shard ({error}); restore it from "
                             "a backup (shards never change)") from None

    def _file(self, key: str) -> Path:
        """One of the shard's files, fetched first where it is in a store's mirror."""
        ensure(self.path / FILES[key])
        return self.path / FILES[key]

    def _map(self, key: str, width: int) -> np.ndarray:
        return np.memmap(self._file(key), np.uint8, "r", shape=(self.count, width))

    def mapped_hashes(self) -> np.ndarray:
        """The (n, 32) digests mapped, not read: to look up a few rows of a large shard."""
        return self._map("hashes", HASH_BYTES)

    def labels(self) -> np.ndarray:
        return np.fromfile(self._file("labels"), np.uint8)

    def hashes(self) -> np.ndarray:
        """The (n, 32) digests: 32 bytes per image, read in one go."""
        return np.fromfile(self._file("hashes"), np.uint8).reshape(-1, HASH_BYTES)

    def images(self, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """A copy of the pixels of ``rows`` (sorted indices, a slice, or all): (k, 784) uint8.

        Contiguous rows are read; scattered rows are copied out of a mapping of one
        window of the file at a time (``WINDOW_BYTES``), so that what the process has
        mapped stays bounded whatever the shard's size: the kernel maps the pages
        around each touched row (fault-around), which, over a whole 2 GB file, counted
        2 GB more in the process's resident memory.
        """
        width = self.image_bytes
        if rows is None or isinstance(rows, slice):
            start, stop, step = (rows or slice(None)).indices(self.count)
            if step != 1:
                return self.images(np.arange(start, stop, step))
            out = np.empty((max(stop - start, 0), width), np.uint8)
            with open(self._file("images"), "rb") as handle:
                handle.seek(start * width)
                if handle.readinto(memoryview(out).cast("B")) != out.nbytes:
                    raise ShardError(f"{self.path}: {FILES['images']} is shorter than its "
                                     "shard.json says; restore it from a backup")
            return out
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), width), np.uint8)
        window = max(WINDOW_BYTES // width, 1)
        done = 0
        while done < len(rows):
            first = int(rows[done])
            end = done + int(np.searchsorted(rows[done:], first + window))
            last = int(rows[end - 1]) + 1
            mapped = np.memmap(self._file("images"), np.uint8, "r",
                               offset=first * width, shape=(last - first, width))
            try:
                np.take(mapped, rows[done:end] - first, axis=0, out=out[done:end])
            finally:
                mapped._mmap.close()
                del mapped
            done = end
        return out

    def chunks(self, rows: int = CHUNK_ROWS):
        """(start, images) for consecutive blocks of ``rows`` images."""
        for start in range(0, self.count, rows):
            yield start, self.images(slice(start, min(start + rows, self.count)))


def shard_sha256(path: str | Path) -> str:
    return sha256_file(Path(path) / DESCRIPTION)


def verify(path: str | Path, expected: str, stamps: str | Path | None = None,
           what: str = "shard") -> Shard:
    """The shard at ``path``, refused unless it is complete and its hash is ``expected``.

    With ``stamps`` (a folder), a shard hashed once on this machine and unchanged
    since (same stat) is trusted without reading it again.
    """
    path = Path(path)
    ensure(path / DESCRIPTION)  # from the store, where the data folder is a URL's mirror
    fix = "restore it from a backup (shards never change once written)"
    if not (path / DESCRIPTION).is_file():
        raise ShardError(f"{path}: {what} is missing; {fix}")
    if shard_sha256(path) != expected:
        raise ShardError(f"{path}: {what} changed since it was written (its shard.json's "
                         f"SHA-256 differs from the recorded one); {fix}")
    shard = Shard(path)
    files = shard.description["files"]
    if all(stored_sha256(path / name) == digest for name, digest in files.items()):
        if not any((path / name).exists() for name in files):
            return shard  # in the store, not fetched yet: each fetch checks its hash
        ensure(path)  # partly fetched: the rest now
    stamp = Path(stamps) / f"{expected}.json" if stamps is not None else None
    try:
        identities = {name: list(_identity(path / name)) for name in FILES.values()}
    except FileNotFoundError as error:
        raise ShardError(f"{error.filename}: file of {what} {path} is missing; {fix}") from None
    if stamp is not None and stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == identities:
                return shard
        except ValueError:
            pass  # a damaged stamp: hash again
    sizes = {FILES["images"]: shard.count * shard.image_bytes, FILES["labels"]: shard.count,
             FILES["hashes"]: shard.count * HASH_BYTES}
    started = time.time_ns()
    for name, digest in shard.description["files"].items():
        if os.stat(path / name).st_size != sizes[name] or sha256_file(path / name) != digest:
            raise ShardError(f"{path / name}: file of {what} {path} changed since it was "
                             f"written (size or SHA-256 differs from shard.json); {fix}")
    # Stamped only if no file changed while hashed, nor in the 50 ms before: a write in the
    # same tick of the kernel's coarse clock could leave its ctime unchanged (racy git).
    settled = all(ident[-1] < started - STAMP_MARGIN_NS for ident in identities.values())
    if stamp is not None and settled and identities == {
            name: list(_identity(path / name)) for name in FILES.values()}:
        write_json_atomic(stamp, identities)
    return shard
