"""Preprocessing: IDX -> float32 vectors in [0, 1], a seeded train/val split, as NPZ + Parquet.

The files' contents are deterministic (``storage.write_npz`` fixes the zip
timestamps, no wall-clock metadata anywhere), so rebuilding identical splits
yields identical hashes and leaves the downstream caches valid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mnist_autoencoder.data.idx import load_images_and_labels
from mnist_autoencoder.data.splits import FILE_NAMES, METADATA_KEY, Split
from mnist_autoencoder.errors import ParameterError


def normalize(images: np.ndarray) -> np.ndarray:
    """Flatten (n, rows, cols) uint8 images to (n, rows * cols) float32 in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255)


def split_train_val(n_samples: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (train, val) indices; ``val_size`` of them drawn with ``seed``."""
    if not 0 < val_size < n_samples:
        raise ParameterError(f"val_size={val_size} must be between 1 and {n_samples - 1} "
                         f"(the training file holds {n_samples} images)")
    order = np.random.default_rng(seed).permutation(n_samples)
    return np.sort(order[val_size:]).astype(np.int32), np.sort(order[:val_size]).astype(np.int32)


def build_splits(train_images, train_labels, test_images, test_labels,
                 val_size: int, seed: int, train_subset: int = 0,
                 added: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                 ) -> dict[str, Split]:
    """Split, normalise and flatten; ``train_subset`` > 0 keeps only that many training images.

    The subset is drawn from the training split only (validation and test stay
    whole), with the same seed, so a smoke run is scored on the real test set.
    ``added`` holds a snapshot's ingested (images, labels, split names): they join
    train and val as their names say, and the rest form the 'recent' split. Their
    ``index`` continues after the base files' (train, then test) positions.
    """
    train_idx, val_idx = split_train_val(len(train_images), val_size, seed)
    recent_idx = np.empty(0, np.int32)
    position = np.arange(len(train_images), dtype=np.int32)  # in the files: train, then test
    if added is not None and len(added[0]):
        images, labels, names = added
        rows = len(train_images) + np.arange(len(images), dtype=np.int32)
        position = np.concatenate([position, rows + len(test_images)])
        train_images = np.concatenate([train_images, images])
        train_labels = np.concatenate([train_labels, labels])
        train_idx = np.concatenate([train_idx, rows[names == "train"]])
        val_idx = np.concatenate([val_idx, rows[names == "val"]])
        recent_idx = rows[names == "recent"]
    if 0 < train_subset < len(train_idx):
        rng = np.random.default_rng([seed, 1])
        train_idx = np.sort(rng.choice(train_idx, train_subset, replace=False))
    x_train_all, x_test = normalize(train_images), normalize(test_images)

    def split(rows: np.ndarray) -> Split:
        return Split(x_train_all[rows], train_labels[rows], position[rows])

    splits = {
        "train": split(train_idx),
        "val": split(val_idx),
        "test": Split(x_test, test_labels.copy(), np.arange(len(test_images), dtype=np.int32)),
    }
    return splits | {"recent": split(recent_idx)}  # empty until a snapshot adds batches


def split_sha256(split: Split) -> str:
    """The content hash of one split's images and labels: the test split's identity across
    snapshots (which all share it), so what depends only on it is computed once."""
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(split.x).tobytes())
    digest.update(np.ascontiguousarray(split.y).tobytes())
    return digest.hexdigest()


def npz_arrays(splits: dict[str, Split], metadata: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of ``splits.npz``: ``<split>_<field>`` plus the metadata as JSON."""
    arrays = {f"{name}_{field}": getattr(split, field)
              for name, split in splits.items() for field in Split._fields}
    return arrays | {"metadata": np.array(json.dumps(metadata, sort_keys=True))}


def parquet_table(splits: dict[str, Split], metadata: dict[str, Any]) -> pa.Table:
    """One row per image: split, source index, label, and the pixels as a fixed-size list."""
    n_features = splits["train"].x.shape[1]
    columns = {
        "split": pa.array(np.concatenate([[name] * len(s.y) for name, s in splits.items()]))
        .dictionary_encode(),
        "index": pa.array(np.concatenate([s.index for s in splits.values()])),
        "label": pa.array(np.concatenate([s.y for s in splits.values()])),
        "pixels": pa.FixedSizeListArray.from_arrays(
            pa.array(np.concatenate([s.x for s in splits.values()]).ravel()), n_features),
    }
    return pa.table(columns).replace_schema_metadata(
        {METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def split_files(raw_dir: Path, files: dict[str, str], val_size: int, seed: int,
                source_hashes: dict[str, str], train_subset: int = 0,
                snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parse the raw files (and a snapshot's batches) and split them.

    Returns ``{file name: value}`` for both formats and ``metadata.json``.
    """
    train_images, train_labels = load_images_and_labels(raw_dir / files["train_images"],
                                                        raw_dir / files["train_labels"])
    test_images, test_labels = load_images_and_labels(raw_dir / files["test_images"],
                                                      raw_dir / files["test_labels"])
    added = None
    if snapshot and snapshot["batches"]:
        from mnist_autoencoder.data.snapshots import assign_splits, load_batch_files

        images, labels, hashes = load_batch_files([b["path"] for b in snapshot["batches"]])
        added = (images, labels, assign_splits(hashes, seed, val_size / len(train_images)))
    splits = build_splits(train_images, train_labels, test_images, test_labels, val_size, seed,
                          train_subset, added)
    metadata = {"source_sha256": source_hashes, "val_size": val_size, "seed": seed,
                "test_sha256": split_sha256(splits["test"]),
                "snapshot": snapshot["id"] if snapshot else None,
                "train_subset": train_subset,
                "image_shape": list(train_images.shape[1:]),
                "counts": {name: len(s.y) for name, s in splits.items()},
                "n_features": int(splits["train"].x.shape[1])}
    return {FILE_NAMES["npz"]: npz_arrays(splits, metadata),
            FILE_NAMES["parquet"]: parquet_table(splits, metadata),
            "metadata.json": metadata}
