"""Data that grows: a dataset's snapshots, the base dataset plus the batches ingested so far.

Its locations (``paths.CATALOG``, under ``<data>/snapshots/<dataset>/``): the
``manifest``, one row per accepted batch, in order (the snapshots' history); each
``batch``'s new images (uint8), labels and content hashes; the ``manifest_lock``,
held while the manifest changes.

A snapshot is the base dataset (the catalog's pinned files) plus the first k
batches; its id is ``<dataset>-<hash of that list>``. Batches are immutable:
their file is written (atomically) before the manifest names it, and the
manifest is replaced atomically under a lock, so a crash at any point leaves
either the old snapshot or the new one, and two ingests at once both land. A
batch file is re-hashed whenever a snapshot is used; one that changed is refused.

Whether a new image goes to train, val or the 'recent' holdout is decided by a
hash of (its content, the seed), so adding a batch never moves an image between
splits; the base dataset keeps its seeded split and its fixed test set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_autoencoder.data.catalog import get_dataset
from mnist_autoencoder.errors import StateError
from mnist_autoencoder.paths import location
from mnist_autoencoder.storage import read_table, sha256_file, sha256_json

RECENT_SHARE = 0.1  # of each batch's images, held out as the 'recent' test set


class SnapshotError(StateError):
    """A snapshot that does not exist, or whose stored batches changed; says what to do."""


@dataclass(frozen=True)
class Batch:
    id: str
    path: Path
    sha256: str
    count: int


@dataclass(frozen=True)
class Snapshot:
    id: str
    dataset: str
    batches: tuple[Batch, ...]
    ancestors: tuple[str, ...] = ()  # the snapshots this one grew from, oldest (the base) first

    def describe(self) -> dict[str, Any]:
        """The small value the pipeline's stages key on: the id, each batch's hash, the history."""
        return {"id": self.id, "dataset": self.dataset, "ancestors": list(self.ancestors),
                "batches": [{"id": b.id, "path": str(b.path), "sha256": b.sha256,
                             "count": b.count} for b in self.batches]}




def batch_path(data_dir: Path, dataset: str, batch_id: str) -> Path:
    return location("batch", data_dir, dataset=dataset, batch_id=batch_id)


def base_id(dataset: str) -> str:
    return f"{dataset}-" + sha256_json({"files": get_dataset(dataset).files})[:12]


def snapshot_id(dataset: str, batch_ids: list[str]) -> str:
    if not batch_ids:
        return base_id(dataset)
    return f"{dataset}-" + sha256_json([base_id(dataset), *batch_ids])[:12]


def read_manifest(data_dir: Path, dataset: str):
    """One row per accepted batch (empty before the first); a damaged file refused."""
    path = location("manifest", data_dir, dataset=dataset)
    return read_table(path, SnapshotError, "every snapshot of the dataset is in it: restore it "
                      f"from a backup (its batches are intact in {path.parent / 'batches'})")


def snapshot_ids(data_dir: Path, dataset: str) -> list[str]:
    """Every snapshot of ``dataset``, oldest first (the base first)."""
    manifest = read_manifest(data_dir, dataset)
    return [base_id(dataset), *(manifest["snapshot_id"] if len(manifest) else [])]


def resolve(data_dir: Path, dataset: str, wanted: str = "latest") -> Snapshot:
    """The snapshot ``wanted`` ("latest" or an id), its batches checked."""
    manifest = read_manifest(data_dir, dataset)
    ids = snapshot_ids(data_dir, dataset)
    if wanted == "latest":
        wanted = ids[-1]
    if wanted not in ids:
        manifest_path = location("manifest", data_dir, dataset=dataset)
        raise SnapshotError(f"no snapshot {wanted!r} of {dataset}; known: {', '.join(ids[-5:])} "
                            f"(the manifest is {manifest_path}; 'latest' is the newest)")
    rows = manifest.iloc[:ids.index(wanted)].to_dict("records") if len(manifest) else []
    batches = tuple(Batch(r["batch_id"], batch_path(data_dir, dataset, r["batch_id"]),
                          r["payload_sha256"], int(r["new"])) for r in rows)
    for batch in batches:
        if not batch.path.is_file():
            raise SnapshotError(f"{batch.path}: batch {batch.id} of snapshot {wanted} is missing; "
                                "restore it from a backup (snapshots never change)")
        if sha256_file(batch.path) != batch.sha256:
            raise SnapshotError(f"{batch.path}: batch {batch.id} changed since it was ingested "
                                f"(SHA-256 differs from the manifest's); restore it")
    return Snapshot(wanted, dataset, batches, tuple(ids[:ids.index(wanted)]))


def image_hashes(images: np.ndarray) -> list[str]:
    """SHA-256 of each uint8 image's bytes: its identity for duplicates and splits."""
    flat = np.ascontiguousarray(np.asarray(images).reshape(len(images), 784), dtype=np.uint8)
    return [hashlib.sha256(row.tobytes()).hexdigest() for row in flat]


def assign_splits(hashes: list[str], seed: int, val_share: float) -> np.ndarray:
    """'train', 'val' or 'recent' for each image, from a hash of (content, seed) alone."""
    draws = np.array([int(hashlib.sha256(f"{seed}:{h}".encode()).hexdigest()[:13], 16)
                      for h in hashes], np.float64) / 16**13
    return np.where(draws < RECENT_SHARE, "recent",
                    np.where(draws < RECENT_SHARE + val_share, "val", "train"))


def load_batch_files(paths: list[str | Path]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All images (uint8, n x 28 x 28), labels and hashes of batch files, in order."""
    images, labels, hashes = [np.empty((0, 28, 28), np.uint8)], [np.empty(0, np.uint8)], []
    for path in paths:
        with np.load(path, allow_pickle=False) as archive:
            images.append(archive["images"])
            labels.append(archive["labels"])
            hashes += [str(h) for h in archive["hashes"]]
    return np.concatenate(images), np.concatenate(labels), hashes
