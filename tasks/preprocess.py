"""preprocess: raw files -> cached splits, NPZ and Parquet (``data.preprocessing``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from mnist_autoencoder.data.catalog import get_dataset
from mnist_autoencoder.data.preprocessing import split_files
from mnist_autoencoder.paths import processed_dir
from tasks.caching import stage_task_options
from tasks.io import StageIO


@task(**stage_task_options("preprocess"))
def preprocess(raw: dict[str, Any], snapshot: dict[str, Any], dataset: str, val_size: int,
               seed: int, train_subset: int, data_dir: str) -> dict[str, Any]:
    """Build the cached splits of a snapshot; return ``{dir, files, hash, counts, snapshot}``.

    Keyed by the snapshot's id and its batches' hashes: a new snapshot reruns it.
    """
    io = StageIO(processed_dir(Path(data_dir), dataset), raw)
    files = split_files(Path(raw["dir"]), get_dataset(dataset).file_names(), val_size, seed,
                        raw["files"], train_subset, snapshot)
    metadata = files["metadata.json"]
    written = io.write(files, counts=metadata["counts"], n_features=metadata["n_features"],
                       snapshot=snapshot["id"], test_sha256=metadata["test_sha256"])
    io.index(written["hash"], written)  # how a model's splits_sha256 finds them again
    io.log(f"Splits {metadata['counts']} written to {io.dir}")
    return written
