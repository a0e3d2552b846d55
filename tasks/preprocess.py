"""preprocess: raw files and batches -> a snapshot's view over shards (``data.preprocessing``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from mnist_autoencoder.data.catalog import get_dataset
from mnist_autoencoder.data.preprocessing import build_view
from mnist_autoencoder.data.splits import view_problems
from mnist_autoencoder.paths import processed_dir
from tasks.caching import stage_task_options
from tasks.io import StageIO


def _missing_shards(inputs: dict[str, Any], recorded: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the shards and assignments a recorded view names (a stat each,
    once hashed on this machine): preprocess then runs again and rebuilds what is derived
    (the base shard, the assignments); a batch that changed was refused before, by the
    snapshot stage."""
    return [problem for outputs in recorded for problem in view_problems(Path(outputs["dir"]))]


@task(**stage_task_options("preprocess", check=_missing_shards))
def preprocess(raw: dict[str, Any], snapshot: dict[str, Any], dataset: str, val_size: int,
               seed: int, train_subset: int, data_dir: str) -> dict[str, Any]:
    """Build a snapshot's split view; return ``{dir, files, hash, counts, snapshot}``.

    Keyed by the snapshot's id and its batches' hashes: a new snapshot reruns it, at
    the cost of its new batches (their split assignment), not of the snapshot.
    """
    io = StageIO(processed_dir(Path(data_dir), dataset), raw)
    files = build_view(Path(data_dir), dataset, Path(raw["dir"]),
                       get_dataset(dataset).file_names(), val_size, seed, raw["files"],
                       train_subset, snapshot)
    metadata = files["metadata.json"]
    written = io.write(files, counts=metadata["counts"], n_features=metadata["n_features"],
                       snapshot=snapshot["id"], test_sha256=metadata["test_sha256"])
    io.index(written["hash"], written)  # how a model's splits_sha256 finds them again
    io.log(f"Splits {metadata['counts']} written to {io.dir}")
    return written
