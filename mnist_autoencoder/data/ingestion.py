"""Ingesting a batch: read it labelled, skip what the dataset holds, append it as a snapshot.

The guarantees (atomic batch files and manifest, a lock, quarantine for refused
batches) are described in ``snapshots``, which reads what this module writes.

A batch streams through in chunks: each chunk's images are hashed (SHA-256 of
their 784 bytes), the duplicates dropped, and the rest appended to a hidden shard,
so neither the batch nor a set of its hashes as Python strings is ever held. The
duplicates are exact: a ``DigestIndex`` sorts the first 8 bytes of every known
digest (16 bytes of memory per known image), and each match is confirmed against
all 32 bytes, read back from the shard that holds it.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import queue
import shutil
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mnist_autoencoder.data.shards import (
    CHUNK_ROWS,
    HASH_BYTES,
    Shard,
    ShardWriter,
    image_digests,
    shard_sha256,
    sweep,
)
from mnist_autoencoder.data.snapshots import (
    append_row,
    batch_path,
    batch_shards,
    read_manifest,
    snapshot_id,
    write_record,
)
from mnist_autoencoder.database import Conflict
from mnist_autoencoder.errors import StateError
from mnist_autoencoder.paths import location
from mnist_autoencoder.roots import publish
from mnist_autoencoder.storage import locked, sha256_bytes, sha256_json

# Images per chunk read from an input while ingesting: 51 MB of uint8 pixels.
INGEST_CHUNK = 65_536
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass(frozen=True)
class Ingested:
    snapshot: str
    created: bool
    offered: int
    new: int
    duplicates: int
    batch: str | None


class IngestError(StateError):
    """A batch that could not be stored; the snapshot is unchanged."""


def ingest(data_dir: Path, dataset: str, chunks: Iterable[tuple[np.ndarray, np.ndarray]],
           known_shards: list[Shard], source: str, source_files: dict[str, str]) -> Ingested:
    """Add the images not seen before as one batch; return the snapshot it makes.

    ``chunks`` yields (uint8 images, labels) in bounded pieces. Before any is read,
    every earlier batch's shard is checked (``shards.verify``: a changed or missing
    one is refused, named in one line) and indexed with ``known_shards`` (the base
    dataset's). Each chunk's new images (not in the index, nor earlier in the batch)
    go to a hidden shard; under the manifest's lock, they are compared with any
    batch that landed meanwhile, and the shard is moved into place before the
    manifest names it. A failure at any point, a full disk included (``IngestError``),
    leaves the snapshot as it was and nothing of the batch on disk.
    """
    batches = batch_path(data_dir, dataset, "x").parent
    try:
        return _ingest(data_dir, dataset, chunks, known_shards, source, source_files)
    except OSError as error:
        if error.errno in NO_SPACE or "No space left" in str(error):
            why = error.strerror or str(error)
            raise IngestError(f"{batches}: the batch could not be written ({why}: the disk or a "
                              "quota is full, or a file-size limit was reached); nothing was "
                              "added: free some space and ingest it again") from None
        raise


def _ingest(data_dir: Path, dataset: str, chunks: Iterable[tuple[np.ndarray, np.ndarray]],
            known_shards: list[Shard], source: str, source_files: dict[str, str]) -> Ingested:
    manifest = read_manifest(data_dir, dataset)  # Parquet and NPZ of older versions: imported
    ids = list(manifest["batch_id"])
    known = DigestIndex.of([*known_shards, *_shards(data_dir, dataset, manifest)])
    batch = DigestIndex()
    offered = 0
    sweep(batch_path(data_dir, dataset, "x").parent)  # what ingests killed mid-way left
    with ShardWriter(batch_path(data_dir, dataset, "x").parent) as incoming:
        for images, labels in read_ahead(chunks):
            images = np.asarray(images, np.uint8).reshape(len(images), -1)
            digests = image_digests(images)
            offered += len(digests)
            keep = first_occurrences(digests) & ~known.contains(digests) & ~batch.contains(
                digests)
            if keep.all():
                incoming.append(images, labels, digests)
                batch.add(digests)
            elif keep.any():
                incoming.append(images[keep], np.asarray(labels)[keep], digests[keep])
                batch.add(digests[keep])
        known.close()
        if not incoming.count:
            latest = read_manifest(data_dir, dataset)
            return Ingested(snapshot_id(dataset, list(latest["batch_id"])),
                            False, offered, 0, offered, None)
        # published under a hidden name, still locked by the writer until the block ends
        staged, _ = incoming.publish(f".incoming-{incoming.tmp.name.strip('.')}")
        try:
            return _append(data_dir, dataset, Shard(staged), set(ids), offered, source,
                           source_files)
        finally:
            shutil.rmtree(staged, ignore_errors=True)


def _shards(data_dir: Path, dataset: str, manifest: pd.DataFrame,
            skip: set[str] = frozenset()) -> list[Shard]:
    """The shards of the manifest's batches (but ``skip``), each checked (``shards.verify``)."""
    rows = manifest.to_dict("records") if len(manifest) else []
    return batch_shards(data_dir, [{"id": r["batch_id"], "sha256": r["payload_sha256"],
                                    "path": batch_path(data_dir, dataset, r["batch_id"])}
                                   for r in rows if r["batch_id"] not in skip])


def _append(data_dir: Path, dataset: str, staged: Shard, indexed: set[str], offered: int,
            source: str, source_files: dict[str, str]) -> Ingested:
    """Drop what batches ingested meanwhile hold, move the shard into place (and push it, on
    a store), then commit its row as the dataset's next snapshot. Another ingest (on any
    machine) that commits that place first: compare with its batch too, and try the next."""
    digests = staged.hashes()
    keep = np.ones(len(digests), bool)
    current, held = staged.path, np.arange(len(digests))  # a shard and which rows it holds
    indexed = set(indexed)
    record: Path | None = None
    # this machine's lock: make gc leaves the staging folder alone while it is held
    with locked(location("manifest_lock", data_dir, dataset=dataset)):
        try:
            while True:
                manifest = read_manifest(data_dir, dataset)
                ids = list(manifest["batch_id"])
                landed = DigestIndex.of(_shards(data_dir, dataset, manifest, skip=indexed))
                keep &= ~landed.contains(digests)
                landed.close()
                indexed |= set(ids)
                new = int(keep.sum())
                if not new:
                    return Ingested(snapshot_id(dataset, ids), False, offered, 0, offered, None)
                batch_id = sha256_bytes(np.ascontiguousarray(digests[keep]).data)[:16]
                path = batch_path(data_dir, dataset, batch_id)
                if path != current:
                    current, held = _place(current, held, np.flatnonzero(keep), digests,
                                           path, batch_id), np.flatnonzero(keep)
                snapshot = snapshot_id(dataset, [*ids, batch_id])
                row = {"seq": len(ids) + 1, "batch_id": batch_id, "snapshot_id": snapshot,
                       "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       "source": source, "source_files": json.dumps(source_files,
                                                                    sort_keys=True),
                       "offered": offered, "new": new, "duplicates": offered - new,
                       "payload": path.name, "payload_sha256": shard_sha256(path),
                       "host": socket.gethostname()}
                # what a rebuild reads back
                record = write_record(data_dir, dataset, row, snapshot_id(dataset, ids))
                publish(path)  # on a store, the batch is there before its row names it
                try:
                    append_row(data_dir, dataset, row)
                    current = record = None  # named by the manifest: a batch now
                    return Ingested(snapshot, True, offered, new, offered - new, batch_id)
                except Conflict:
                    record.unlink(missing_ok=True)  # its next place, maybe its next id
                    continue  # another batch took this place: compare with it, try the next
        finally:
            if current is not None and current != staged.path:
                shutil.rmtree(current, ignore_errors=True)  # not named: not a batch
            if record is not None:
                record.unlink(missing_ok=True)


def _place(current: Path, held: np.ndarray, wanted: np.ndarray, digests: np.ndarray,
           path: Path, batch_id: str) -> Path:
    """Make ``path`` the shard of the ``wanted`` rows (of the staged batch) from ``current``,
    which holds the ``held`` rows: moved when they are the same rows, else copied; then
    ``current`` is gone. Returns ``path``."""
    if path.exists():  # left by an ingest that stopped before the manifest named it
        shutil.rmtree(path)
    if len(wanted) == len(held):  # the common case: the staged shard is the batch, moved
        os.replace(current, path)
        return path
    source = Shard(current)
    labels = source.labels()
    with ShardWriter(path.parent) as writer:
        rows = np.searchsorted(held, wanted)
        for start in range(0, len(rows), CHUNK_ROWS):
            part = slice(start, start + CHUNK_ROWS)
            writer.append(source.images(rows[part]), labels[rows[part]], digests[wanted[part]])
        placed, _ = writer.publish(batch_id)
    shutil.rmtree(current, ignore_errors=True)
    return placed


def _keys(digests: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each digest as one integer: a sort key, confirmed in full after."""
    return np.ascontiguousarray(digests[:, :8]).view(np.uint64).ravel()


def first_occurrences(digests: np.ndarray) -> np.ndarray:
    """True for each digest not equal (all 32 bytes) to an earlier one in the same array."""
    n = len(digests)
    keys = _keys(digests)
    order = np.argsort(keys, kind="stable")  # equal keys adjacent, earliest first
    ranked = keys[order]
    repeat = np.zeros(n, bool)
    pairs = np.flatnonzero(ranked[1:] == ranked[:-1])
    if len(pairs):
        words = np.ascontiguousarray(digests, np.uint8).view(np.uint64).reshape(n, 4)
        if not (words[order[pairs]] == words[order[pairs + 1]]).all():
            # two different digests share 8 bytes (about 1 in 10^7 for a million images):
            # sort on all 32 so that equal ones are adjacent whatever lies between
            order = np.lexsort(words.T[::-1])
            ranked_words = words[order]
            repeat[order[1:]] = (ranked_words[1:] == ranked_words[:-1]).all(axis=1)
            return ~repeat
        repeat[order[pairs + 1]] = True
    return ~repeat


class DigestIndex:
    """A set of image digests held where they already are (shards, or arrays given to
    ``add``): in memory only the sorted first 8 bytes of each and where it is (16 bytes
    per image). ``contains`` is exact: every match of 8 bytes is confirmed on all 32."""

    def __init__(self):
        self.keys = np.empty(0, np.uint64)  # sorted
        self.rows = np.empty(0, np.int64)  # each key's row, numbered across the sources
        self.sources: list[Shard | np.ndarray] = []
        self.bounds = [0]  # first row of each source, and the total
        self._maps: dict[int, np.ndarray] = {}

    @classmethod
    def of(cls, shards: list[Shard]) -> DigestIndex:
        """The digests of ``shards`` (each read once, 32 bytes per image, then dropped)."""
        index = cls()
        keys = [_keys(shard.hashes()) for shard in shards]
        index.sources = list(shards)
        index.bounds = list(np.cumsum([0, *map(len, keys)]))
        if keys:
            everything = np.concatenate(keys)
            index.rows = np.argsort(everything, kind="stable")
            index.keys = everything[index.rows]
        return index

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def add(self, digests: np.ndarray) -> None:
        """Add digests (an (n, 32) array, kept by reference) to the set."""
        keys = _keys(digests)
        order = np.argsort(keys, kind="stable")
        at = np.searchsorted(self.keys, keys[order], side="right")
        self.keys = np.insert(self.keys, at, keys[order])
        self.rows = np.insert(self.rows, at, self.bounds[-1] + order)
        self.sources.append(digests)
        self.bounds.append(self.bounds[-1] + len(digests))

    def _digests(self, rows: np.ndarray) -> np.ndarray:
        """The full digests at ``rows`` (any order), from their sources."""
        out = np.empty((len(rows), HASH_BYTES), np.uint8)
        which = np.searchsorted(self.bounds, rows, side="right") - 1
        for source in np.unique(which):
            mine = which == source
            local = rows[mine] - self.bounds[source]
            held = self.sources[source]
            if isinstance(held, Shard):
                if source not in self._maps:
                    self._maps[source] = held.mapped_hashes()
                held = self._maps[source]
            out[mine] = held[local]
        return out

    def contains(self, digests: np.ndarray) -> np.ndarray:
        """True for each of ``digests`` that the set holds."""
        found = np.zeros(len(digests), bool)
        if not len(self.keys) or not len(digests):
            return found
        keys = _keys(digests)
        order = np.argsort(keys)  # sorted needles: each search starts where the last ended
        at = np.empty(len(keys), np.int64)
        at[order] = np.searchsorted(self.keys, keys[order], side="left")
        candidates = np.flatnonzero(at < len(self.keys))
        candidates = candidates[self.keys[at[candidates]] == keys[candidates]]
        if not len(candidates):
            return found
        same = (self._digests(self.rows[at[candidates]]) == digests[candidates]).all(axis=1)
        found[candidates[same]] = True
        for i in candidates[~same]:  # 8 bytes equal, 32 not: rare; try the rest of the run
            j = at[i] + 1
            while j < len(self.keys) and self.keys[j] == keys[i] and not found[i]:
                found[i] = bool((self._digests(self.rows[j:j + 1])[0] == digests[i]).all())
                j += 1
        return found

    def close(self) -> None:
        """Unmap the shards' hash files."""
        for mapped in self._maps.values():
            mapped._mmap.close()
        self._maps.clear()


def read_ahead(items: Iterable, depth: int = 1) -> Iterator:
    """``items`` in order, produced by a thread of their own up to ``depth`` ahead.

    Reading a chunk (inflating gzip, decoding Parquet) releases the GIL, so it
    overlaps hashing and writing the one before on a second core. An error while
    producing is raised here, where the item would have come; leaving early stops
    the thread.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop, end = threading.Event(), object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            put((end, error))

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()
        close = getattr(items, "close", None)
        if close is not None:
            close()


def labelled_chunks(batch, chunk: int = INGEST_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The images of an ``inputs.Input`` as uint8 (n, 784) chunks and their labels, which it
    must have. Float pixels are stored as the nearest of the 256 levels the dataset's
    files hold; uint8 pixels pass through as read."""
    from mnist_autoencoder.data.inputs import NO_LABEL, describe_formats
    from mnist_autoencoder.data.pixels import InputError

    if not batch.format.labelled:
        raise InputError(f"{batch.files[0] if batch.files else 'batch'}: {batch.kind} input "
                         "has no labels; a batch to ingest needs a label (0-9) for every image; "
                         f"give one of the input formats: {describe_formats(True)}")
    for part in batch.iter_chunks(chunk):
        missing = part.labels == NO_LABEL
        if missing.any():
            raise InputError(f"{part.name(int(np.argmax(missing)))}: no label; "
                             "a batch to ingest needs a label (0-9) for every image")
        yield part.u8, part.labels.astype(np.uint8)


def quarantine(data_dir: Path, files: list[Path], source: str, reason: str) -> Path:
    """Keep a refused batch's files and why, in ``<data>/quarantine/<id>/``; return that folder."""
    import shutil

    from mnist_autoencoder.storage import atomic_dir, write_json_atomic

    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    folder = location("quarantine", data_dir, key=sha256_json([source, stamp, reason])[:16])
    with atomic_dir(folder) as tmp:
        for path in files:
            if Path(path).is_file():
                shutil.copy2(path, tmp / Path(path).name)
        write_json_atomic(tmp / "reason.json", {"batch": source, "reason": reason,
                                                "time": stamp,
                                                "files": [str(p) for p in files]})
    return folder
