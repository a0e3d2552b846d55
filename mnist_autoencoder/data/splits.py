"""The cached splits as every stage reads them: ``Split`` and ``load_splits``.

``preprocessing`` writes them, as ``splits.npz`` and ``splits.parquet``, which hold
the same arrays; ``load_splits`` reads either.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow.parquet as pq

SPLITS = ("train", "val", "test")
FORMATS = ("npz", "parquet")
FILE_NAMES = {"npz": "splits.npz", "parquet": "splits.parquet"}
METADATA_KEY = b"mnist_autoencoder"


class Split(NamedTuple):
    x: np.ndarray  # (n, n_features) float32 in [0, 1]
    y: np.ndarray  # (n,) uint8 labels
    index: np.ndarray  # (n,) int32 position in the original IDX file


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
