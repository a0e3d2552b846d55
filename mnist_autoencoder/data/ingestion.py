"""Ingesting a batch: read it labelled, skip what the dataset holds, append it as a snapshot.

The guarantees (atomic batch files and manifest, a lock, quarantine for refused
batches) are described in ``snapshots``, which reads what this module writes.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_autoencoder.data.snapshots import (
    batch_path,
    image_hashes,
    read_manifest,
    snapshot_id,
)
from mnist_autoencoder.paths import location
from mnist_autoencoder.storage import atomic_path, locked, sha256_file, sha256_json, write_npz


@dataclass(frozen=True)
class Ingested:
    snapshot: str
    created: bool
    offered: int
    new: int
    duplicates: int
    batch: str | None


def ingest(data_dir: Path, dataset: str, images: np.ndarray, labels: np.ndarray,
           known: set[str], source: str, source_files: dict[str, str]) -> Ingested:
    """Add the images not seen before as one batch; return the snapshot it makes.

    ``known`` holds the base dataset's image hashes (every split, test included);
    earlier batches' hashes are read from the manifest under the lock.
    """
    import pandas as pd

    hashes = image_hashes(images)
    # one change of the manifest at a time, across processes
    with locked(location("manifest_lock", data_dir, dataset=dataset)):
        manifest = read_manifest(data_dir, dataset)
        seen = set(known)
        for earlier in (manifest["image_sha256"] if len(manifest) else []):
            seen.update(earlier)
        keep, chosen = [], set()
        for i, h in enumerate(hashes):
            if h not in seen and h not in chosen:
                keep.append(i)
                chosen.add(h)
        ids = list(manifest["batch_id"]) if len(manifest) else []
        if not keep:
            return Ingested(snapshot_id(dataset, ids), False, len(hashes), 0, len(hashes), None)
        new_hashes = [hashes[i] for i in keep]
        batch_id = sha256_json(new_hashes)[:16]
        payload = batch_path(data_dir, dataset, batch_id)
        write_npz(payload, {"images": images[keep], "labels": labels[keep],
                            "hashes": np.array(new_hashes)})
        snapshot = snapshot_id(dataset, [*ids, batch_id])
        row = {"batch_id": batch_id, "snapshot_id": snapshot,
               "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "source": source, "source_files": json.dumps(source_files, sort_keys=True),
               "offered": len(hashes), "new": len(keep), "duplicates": len(hashes) - len(keep),
               "image_sha256": new_hashes, "payload": payload.name,
               "payload_sha256": sha256_file(payload)}
        table = pd.concat([manifest, pd.DataFrame([row])], ignore_index=True)
        with atomic_path(location("manifest", data_dir, dataset=dataset)) as tmp:
            table.to_parquet(tmp, index=False)
    return Ingested(snapshot, True, len(hashes), len(keep), len(hashes) - len(keep), batch_id)


def read_labelled(batch) -> tuple[np.ndarray, np.ndarray]:
    """All images of an ``inputs.Input`` as uint8 (n, 28, 28) and their labels, which it must have.

    Float pixels are stored as the nearest of the 256 levels the dataset's files hold.
    """
    from mnist_autoencoder.data.inputs import NO_LABEL, describe_formats
    from mnist_autoencoder.data.pixels import InputError

    if not batch.format.labelled:
        raise InputError(f"{batch.files[0] if batch.files else 'batch'}: {batch.kind} input "
                         "has no labels; a batch to ingest needs a label (0-9) for every image; "
                         f"give one of the input formats: {describe_formats(True)}")
    images, labels = [], []
    for chunk in batch.iter_chunks():
        if (chunk.labels == NO_LABEL).any():
            raise InputError(f"{chunk.name(int(np.argmax(chunk.labels == NO_LABEL)))}: no label; "
                             "a batch to ingest needs a label (0-9) for every image")
        images.append(np.round(chunk.x * 255).astype(np.uint8).reshape(-1, 28, 28))
        labels.append(chunk.labels.astype(np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def base_hashes(raw_dir: Path, files: dict[str, str]) -> set[str]:
    """The hashes of every image of the base dataset, train and test."""
    from mnist_autoencoder.data.idx import read_idx_gz

    return {h for role in ("train_images", "test_images")
            for h in image_hashes(read_idx_gz(Path(raw_dir) / files[role]))}


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
