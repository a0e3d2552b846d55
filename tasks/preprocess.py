"""preprocess: IDX -> float32 vectors in [0, 1], a seeded train/val split, cached as NPZ + Parquet.

Both files hold the same arrays; ``load_splits`` reads either. They are written
byte-for-byte deterministically (fixed zip timestamps, no wall-clock metadata) so
that rebuilding identical splits yields identical hashes and leaves the
downstream caches valid.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import get_run_logger, task

from tasks.caching import current_cache_key, stage_task_options
from tasks.download import DATASETS
from tasks.idx import load_images_and_labels
from tasks.paths import processed_dir
from tasks.storage import (
    atomic_dir,
    atomic_path,
    describe_outputs,
    require_valid,
    write_json_atomic,
)

SPLITS = ("train", "val", "test")
FORMATS = ("npz", "parquet")
FILE_NAMES = {"npz": "splits.npz", "parquet": "splits.parquet"}
METADATA_KEY = b"mnist_autoencoder"


class Split(NamedTuple):
    x: np.ndarray  # (n, n_features) float32 in [0, 1]
    y: np.ndarray  # (n,) uint8 labels
    index: np.ndarray  # (n,) int32 position in the original IDX file


def normalize(images: np.ndarray) -> np.ndarray:
    """Flatten (n, rows, cols) uint8 images to (n, rows * cols) float32 in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255)


def split_train_val(n_samples: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (train, val) indices; ``val_size`` of them drawn with ``seed``."""
    if not 0 < val_size < n_samples:
        raise ValueError(f"val_size={val_size} must be between 1 and {n_samples - 1} "
                         f"(the training file holds {n_samples} images)")
    order = np.random.default_rng(seed).permutation(n_samples)
    return np.sort(order[val_size:]).astype(np.int32), np.sort(order[:val_size]).astype(np.int32)


def build_splits(train_images, train_labels, test_images, test_labels,
                 val_size: int, seed: int, train_subset: int = 0) -> dict[str, Split]:
    """Split, normalise and flatten; ``train_subset`` > 0 keeps only that many training images.

    The subset is drawn from the training split only (validation and test stay
    whole), with the same seed, so a smoke run is scored on the real test set.
    """
    train_idx, val_idx = split_train_val(len(train_images), val_size, seed)
    if 0 < train_subset < len(train_idx):
        rng = np.random.default_rng([seed, 1])
        train_idx = np.sort(rng.choice(train_idx, train_subset, replace=False))
    x_train_all, x_test = normalize(train_images), normalize(test_images)
    return {
        "train": Split(x_train_all[train_idx], train_labels[train_idx], train_idx),
        "val": Split(x_train_all[val_idx], train_labels[val_idx], val_idx),
        "test": Split(x_test, test_labels.copy(), np.arange(len(test_images), dtype=np.int32)),
    }


def write_npz(path: Path, splits: dict[str, Split], metadata: dict[str, Any]) -> None:
    """Write an uncompressed .npz whose bytes depend only on the arrays and metadata."""
    arrays = {f"{name}_{field}": getattr(split, field)
              for name, split in splits.items() for field in Split._fields}
    arrays["metadata"] = np.array(json.dumps(metadata, sort_keys=True))
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asarray(array, order="C"),
                                        allow_pickle=False)


def write_parquet(path: Path, splits: dict[str, Split], metadata: dict[str, Any]) -> None:
    """Write one row per image: split, source index, label, and the pixels as a fixed-size list."""
    n_features = splits["train"].x.shape[1]
    columns = {
        "split": pa.array(np.concatenate([[name] * len(s.y) for name, s in splits.items()]))
        .dictionary_encode(),
        "index": pa.array(np.concatenate([s.index for s in splits.values()])),
        "label": pa.array(np.concatenate([s.y for s in splits.values()])),
        "pixels": pa.FixedSizeListArray.from_arrays(
            pa.array(np.concatenate([s.x for s in splits.values()]).ravel()), n_features),
    }
    table = pa.table(columns).replace_schema_metadata(
        {METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=16384)


def load_splits(directory: Path, cache_format: str = "npz",
                names: tuple[str, ...] = SPLITS) -> dict[str, Split]:
    """Read the splits ``names`` written by ``write_npz`` or ``write_parquet``.

    NPZ members are read lazily, so asking only for the splits a stage needs keeps
    its memory down (the training split alone is 157 MB).
    """
    path = Path(directory) / FILE_NAMES[cache_format]
    if cache_format == "npz":
        with np.load(path, allow_pickle=False) as archive:
            return {name: Split(*(archive[f"{name}_{field}"] for field in Split._fields))
                    for name in names}
    table = pq.read_table(path)
    split_column = table.column("split").to_numpy()
    pixels = table.column("pixels").combine_chunks()
    x_all = pixels.values.to_numpy().reshape(len(table), pixels.type.list_size)
    index, labels = table.column("index").to_numpy(), table.column("label").to_numpy()
    masks = {name: split_column == name for name in names}
    return {name: Split(x_all[m], labels[m], index[m]) for name, m in masks.items()}


def read_metadata(directory: Path, cache_format: str = "npz") -> dict[str, Any]:
    path = Path(directory) / FILE_NAMES[cache_format]
    if cache_format == "npz":
        with np.load(path, allow_pickle=False) as archive:
            return json.loads(str(archive["metadata"]))
    return json.loads(pq.read_schema(path).metadata[METADATA_KEY])


def preprocess_dataset(raw_dir: Path, files: dict[str, str], out_dir: Path, val_size: int,
                       seed: int, source_hashes: dict[str, str],
                       train_subset: int = 0) -> dict[str, Any]:
    """Parse the raw files, split them, write both cache formats; return their description."""
    train_images, train_labels = load_images_and_labels(raw_dir / files["train_images"],
                                                        raw_dir / files["train_labels"])
    test_images, test_labels = load_images_and_labels(raw_dir / files["test_images"],
                                                      raw_dir / files["test_labels"])
    splits = build_splits(train_images, train_labels, test_images, test_labels, val_size, seed,
                          train_subset)
    metadata = {"source_sha256": source_hashes, "val_size": val_size, "seed": seed,
                "train_subset": train_subset,
                "image_shape": list(train_images.shape[1:]),
                "counts": {name: len(s.y) for name, s in splits.items()}}
    with atomic_dir(out_dir) as tmp:
        write_npz(tmp / FILE_NAMES["npz"], splits, metadata)
        write_parquet(tmp / FILE_NAMES["parquet"], splits, metadata)
        write_json_atomic(tmp / "metadata.json", metadata)
    return describe_outputs(out_dir, [*FILE_NAMES.values(), "metadata.json"]) | {
        "counts": metadata["counts"], "n_features": int(splits["train"].x.shape[1])}


MODULES = ("tasks.preprocess", "tasks.idx", "tasks.storage")


@task(**stage_task_options("preprocess", MODULES))
def preprocess(raw: dict[str, Any], dataset: str, val_size: int, seed: int, train_subset: int,
               data_dir: str) -> dict[str, Any]:
    """Build the cached splits from verified raw files; return ``{dir, files, hash, counts}``."""
    require_valid(raw)
    files = {role: name for role, (name, _) in DATASETS[dataset].files.items()}
    out_dir = processed_dir(Path(data_dir), dataset, current_cache_key())
    result = preprocess_dataset(Path(raw["dir"]), files, out_dir, val_size, seed, raw["files"],
                                train_subset)
    get_run_logger().info("Splits %s written to %s", result["counts"], out_dir)
    return result
