"""Data that grows: a dataset's snapshots, the base dataset plus the batches ingested so far.

The manifest, one row per accepted batch in order (the snapshots' history), is the
``batches`` table of the state database (``database``: by default the SQLite file
``<data>/snapshots/manifest.db``). Its files (``paths.CATALOG``, under
``<data>/snapshots/<dataset>/``): each ``batch``, a shard (``data.shards``) of its new
images (uint8), labels and content hashes, stored once and shared by every snapshot
that holds it; the ``manifest_lock``, held by an ingest on this machine while it
stages a batch.

A snapshot is the base dataset (the catalog's pinned files) plus the first k
batches; its id is ``<dataset>-<hash of that list>``. Batches are immutable:
their shard is published complete (and pushed, on a store) before the manifest's
row names it, and the row commits as the dataset's next ``seq`` in one transaction,
so a crash at any point leaves either the old snapshot or the new one, and two
ingests at once, from any machines, both land, each image once. A
batch is hashed in full the first time a snapshot uses it on a machine and
trusted by its unchanged stat afterwards (``shards.verify``); one that changed is
refused before any work. Batches of the older NPZ format are migrated on first use.

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
import pandas as pd
import sqlalchemy as sa

from mnist_autoencoder import database as db
from mnist_autoencoder.data.catalog import get_dataset
from mnist_autoencoder.data.shards import Shard, ShardWriter, verify
from mnist_autoencoder.data.splits import SPLIT_CODES
from mnist_autoencoder.errors import StateError
from mnist_autoencoder.paths import location, stamps_dir
from mnist_autoencoder.storage import (
    atomic_path,
    locked,
    read_table,
    sha256_file,
    sha256_json,
    write_json_atomic,
)

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


# The manifest's columns, as ``read_manifest`` gives them
COLUMNS = ["batch_id", "snapshot_id", "time", "source", "source_files", "offered", "new",
           "duplicates", "payload", "payload_sha256", "seq", "host"]


def manifest_url(data_dir: Path, dataset: str) -> str:
    """The manifests' database: the configured one, or ``manifest.db`` under the data folder.

    A Parquet manifest of the version before the database is imported into it first, once
    (its NPZ batches migrated to shards before that).
    """
    url = db.default_url(location("manifest", data_dir))
    legacy = location("legacy_manifest", data_dir, dataset=dataset)
    if legacy.is_file():
        migrate(data_dir, dataset)
        _import_parquet(url, legacy, dataset, data_dir)
    return url


def _import_parquet(url: str, legacy: Path, dataset: str, data_dir: Path) -> None:
    table = read_table(legacy, SnapshotError, "every snapshot of the dataset is in it: restore "
                       f"it from a backup (its batches are intact in {legacy.parent / 'batches'})")

    def insert(conn: sa.Connection) -> None:
        known = conn.execute(sa.select(sa.func.count()).select_from(db.batches).where(
            db.batches.c.dataset == dataset)).scalar()
        if known:
            raise SnapshotError(
                f"{legacy}: the database {db.masked(url)} already holds {known} batches of "
                f"{dataset}, so this older manifest cannot be imported into it; move "
                "the file aside, or point MNIST_AE_DATABASE_URL at the database it belongs to")
        for row in rows:
            conn.execute(db.batches.insert().values(dataset=dataset, **row))

    rows = [{k: db.plain(row[k]) for k in COLUMNS if k not in ("seq", "host")}
            | {"seq": seq, "host": None} for seq, row in enumerate(table.to_dict("records"), 1)]
    if db.import_once(url, legacy, f"the {dataset} manifest", len(table), insert):
        parents = [base_id(dataset), *(row["snapshot_id"] for row in rows)]
        for row, parent in zip(rows, parents):
            write_record(data_dir, dataset, row, parent)


def read_manifest(data_dir: Path, dataset: str) -> pd.DataFrame:
    """One row per accepted batch, in order (empty before the first)."""
    with db.reading(manifest_url(data_dir, dataset)) as conn:
        found = db.rows(conn, sa.select(*(db.batches.c[name] for name in COLUMNS)).where(
            db.batches.c.dataset == dataset).order_by(db.batches.c.seq))
    return pd.DataFrame(found, columns=COLUMNS)


def write_record(data_dir: Path, dataset: str, row: dict[str, Any], parent: str) -> Path:
    """Write a batch's row and the snapshot it extends (``parent``) beside its shard
    (``batch_record``) before the row commits, so that ``python -m flows.state --rebuild``
    can rebuild the manifest from the storage alone; return its path. The writer removes
    it again if the row does not commit."""
    path = location("batch_record", data_dir, dataset=dataset, batch_id=row["batch_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"dataset": dataset, "parent": parent,
                             **{k: db.plain(v) for k, v in row.items()}})
    return path


def append_row(data_dir: Path, dataset: str, row: dict[str, Any]) -> None:
    """Commit a batch's row as the dataset's next snapshot, ``row["seq"]``: ``db.Conflict``
    when another ingest took that place first (compare with its batch, then try the next)."""
    with db.writing(manifest_url(data_dir, dataset)) as conn:
        conn.execute(db.batches.insert().values(dataset=dataset, **row))


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
        where = db.masked(manifest_url(data_dir, dataset))
        raise SnapshotError(f"no snapshot {wanted!r} of {dataset}; known: {', '.join(ids[-5:])} "
                            f"(the manifest is in {where}; 'latest' is the newest)")
    rows = manifest.iloc[:ids.index(wanted)].to_dict("records") if len(manifest) else []
    batches = tuple(Batch(r["batch_id"], batch_path(data_dir, dataset, r["batch_id"]),
                          r["payload_sha256"], int(r["new"])) for r in rows)
    for batch in batches:
        shard = verify(batch.path, batch.sha256, stamps_dir(data_dir),
                       f"batch {batch.id} of snapshot {wanted}")
        if shard.count != batch.count:
            raise SnapshotError(f"{batch.path}: batch {batch.id} holds {shard.count} images, "
                                f"the manifest says {batch.count}; restore it")
    return Snapshot(wanted, dataset, batches, tuple(ids[:ids.index(wanted)]))


def assign_splits(digests: np.ndarray, seed: int, val_share: float) -> np.ndarray:
    """The split code of each image (``SPLIT_CODES``), from a hash of (its content, the seed)
    alone: (n, 32) digests in, n bytes out."""
    draws = np.array([int(hashlib.sha256(f"{seed}:{bytes(h).hex()}".encode()).hexdigest()[:13],
                          16) for h in digests], np.float64) / 16**13
    return np.where(draws < RECENT_SHARE, SPLIT_CODES["recent"],
                    np.where(draws < RECENT_SHARE + val_share, SPLIT_CODES["val"],
                             SPLIT_CODES["train"])).astype(np.uint8)


def migrate(data_dir: Path, dataset: str) -> int:
    """Rewrite the batches of the format before shards (NPZ), which only a Parquet manifest
    names, as shards; return how many. (The manifest is imported into the database next.)

    Under the manifest's lock: each NPZ is checked against the manifest's hash, written
    as a shard, and the manifest (without its per-image hash lists, which now live in
    the shards) replaces the old one atomically; only then are the NPZ files removed. A
    crash at any point leaves a manifest whose every batch is intact. Batch and snapshot
    ids do not change, so the registry's history still matches.
    """
    manifest_path = location("legacy_manifest", data_dir, dataset=dataset)
    with locked(location("manifest_lock", data_dir, dataset=dataset)):
        table = read_table(manifest_path, SnapshotError, "restore it from a backup")
        legacy = [i for i, p in enumerate(table.get("payload", [])) if str(p).endswith(".npz")]
        if not legacy:
            return 0
        table = table.copy()
        old_files = []
        for i in legacy:
            batch_id = table.at[i, "batch_id"]
            old = location("legacy_batch", data_dir, dataset=dataset, batch_id=batch_id)
            if not old.is_file() or sha256_file(old) != table.at[i, "payload_sha256"]:
                raise SnapshotError(f"{old}: batch {batch_id} is missing or changed since it was "
                                    "ingested, so it cannot be migrated to a shard; restore it")
            with np.load(old, allow_pickle=False) as archive:
                digests = np.array([np.frombuffer(bytes.fromhex(str(h)), np.uint8)
                                    for h in archive["hashes"]], np.uint8).reshape(-1, 32)
                with ShardWriter(old.parent) as writer:
                    writer.append(archive["images"], archive["labels"], digests)
                    _, sha = writer.publish(batch_id)
            table.at[i, "payload"], table.at[i, "payload_sha256"] = batch_id, sha
            old_files.append(old)
        table = table.drop(columns=[c for c in ("image_sha256",) if c in table])
        with atomic_path(manifest_path) as tmp:
            table.to_parquet(tmp, index=False)
        for old in old_files:
            old.unlink()
    return len(old_files)


def batch_shards(data_dir: Path, batches: list[dict[str, Any]]) -> list[Shard]:
    """The shards of ``Snapshot.describe()``'s batches, checked (``shards.verify``)."""
    return [verify(b["path"], b["sha256"], stamps_dir(data_dir), f"batch {b['id']}")
            for b in batches]


def sample_batches(shards: list[Shard], limit: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``limit`` images (uint8, k x 784) and labels drawn uniformly from ``shards``
    (all of them, in order, when there are no more): the drift gate's view of new batches."""
    bounds = np.cumsum([0, *(s.count for s in shards)])
    chosen = np.arange(bounds[-1]) if bounds[-1] <= limit else np.sort(
        np.random.default_rng(seed).choice(bounds[-1], limit, replace=False))
    images, labels = [np.empty((0, 784), np.uint8)], [np.empty(0, np.uint8)]
    for shard, lo, hi in zip(shards, bounds[:-1], bounds[1:]):
        rows = chosen[(chosen >= lo) & (chosen < hi)] - lo
        if len(rows):
            images.append(shard.images(rows))
            labels.append(shard.labels()[rows])
    return np.concatenate(images), np.concatenate(labels)
