"""Preprocessing: a snapshot's splits as a view over shards, for work that grows with the batch.

The base dataset's images become one shard (train file, then test file) the
first time its raw files are seen; a seeded permutation of the train file picks
the validation rows, as before. Each batch's rows are assigned to train, val or
'recent' by a hash of (content, seed) alone, once per batch, seed and share, and
kept beside the shards (``paths.CATALOG["assignment"]``). A snapshot's view
(``splits.json``) then names its parts; writing it costs a few KB. Nothing here
holds a snapshot's pixels in memory, nor normalises them: stages read uint8 rows
and scale them where they compute (``data.splits``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mnist_autoencoder.data.idx import load_images_and_labels
from mnist_autoencoder.data.shards import (
    Shard,
    ShardError,
    ShardWriter,
    shard_sha256,
    verify,
)
from mnist_autoencoder.data.splits import SPLIT_CODES, VIEW_FILE
from mnist_autoencoder.errors import ParameterError
from mnist_autoencoder.paths import location, stamps_dir
from mnist_autoencoder.roots import ensure
from mnist_autoencoder.storage import sha256_file, sha256_json, write_bytes_atomic


def split_train_val(n_samples: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (train, val) indices; ``val_size`` of them drawn with ``seed``."""
    if not 0 < val_size < n_samples:
        raise ParameterError(f"val_size={val_size} must be between 1 and {n_samples - 1} "
                             f"(the training file holds {n_samples} images)")
    order = np.random.default_rng(seed).permutation(n_samples)
    return np.sort(order[val_size:]).astype(np.int32), np.sort(order[:val_size]).astype(np.int32)


def base_shard(data_dir: Path, dataset: str, raw_dir: Path, files: dict[str, str],
               source_hashes: dict[str, str]) -> tuple[Shard, str, int]:
    """The base dataset's shard (built once per raw content; rebuilt if damaged): the shard,
    its hash and how many of its rows come from the train file."""
    path = location("base_shard", data_dir, dataset=dataset, key=sha256_json(source_hashes)[:16])
    ensure(path / "shard.json")  # from the store, where the data folder is a URL's mirror
    if path.exists():
        try:
            shard = verify(path, shard_sha256(path), stamps_dir(data_dir), "base shard")
            n_train = int(shard.description.get("train_rows", -1))
            if n_train >= 0:
                return shard, shard_sha256(path), n_train
        except ShardError:
            pass
        import shutil

        shutil.rmtree(path)  # derived data: rebuilt from the verified raw files
    train_images, train_labels = load_images_and_labels(raw_dir / files["train_images"],
                                                        raw_dir / files["train_labels"])
    test_images, test_labels = load_images_and_labels(raw_dir / files["test_images"],
                                                      raw_dir / files["test_labels"])
    with ShardWriter(path.parent) as writer:
        writer.append(train_images, train_labels)
        writer.append(test_images, test_labels)
        writer.extra = {"train_rows": len(train_images),
                        "image_shape": list(train_images.shape[1:])}
        writer.publish(path.name)
    return base_shard(data_dir, dataset, raw_dir, files, source_hashes)


def _assignment(data_dir: Path, dataset: str, key: str, make) -> tuple[str, str]:
    """An assignment file (one split code per row), written once; its path and hash."""
    path = location("assignment", data_dir, dataset=dataset, key=key)
    ensure(path)
    if not path.is_file():
        write_bytes_atomic(path, np.ascontiguousarray(make(), np.uint8).tobytes())
    return str(path), sha256_file(path)


def build_view(data_dir: Path, dataset: str, raw_dir: Path, files: dict[str, str],
               val_size: int, seed: int, source_hashes: dict[str, str], train_subset: int = 0,
               snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``splits.json`` of a snapshot (``Snapshot.describe()``), and ``subset`` rows if any.

    Work: the base shard and each batch's assignment the first time they are needed;
    otherwise a few reads of small files. The batches were checked by ``snapshots``.
    """
    from mnist_autoencoder.data.snapshots import assign_splits, batch_shards

    base, base_sha, n_train = base_shard(data_dir, dataset, raw_dir, files, source_hashes)
    train_idx, val_idx = split_train_val(n_train, val_size, seed)

    def base_codes() -> np.ndarray:
        codes = np.full(base.count, SPLIT_CODES["test"], np.uint8)
        codes[train_idx], codes[val_idx] = SPLIT_CODES["train"], SPLIT_CODES["val"]
        return codes

    path, sha = _assignment(data_dir, dataset, sha256_json([base_sha, val_size, seed])[:24],
                            base_codes)
    parts = [{"id": "base", "shard": str(base.path), "sha256": base_sha, "count": base.count,
              "assignment": path, "assignment_sha256": sha, "index_start": 0,
              "test_from": n_train}]
    index_start, val_share = base.count, val_size / n_train
    batches = list(snapshot["batches"]) if snapshot else []
    for batch, shard in zip(batches, batch_shards(data_dir, batches)):
        path, sha = _assignment(
            data_dir, dataset, sha256_json([batch["sha256"], seed, val_share])[:24],
            lambda shard=shard: assign_splits(shard.hashes(), seed, val_share))
        parts.append({"id": batch["id"], "shard": str(shard.path), "sha256": batch["sha256"],
                      "count": shard.count, "assignment": path, "assignment_sha256": sha,
                      "index_start": index_start})
        index_start += shard.count
    counts = {name: 0 for name in SPLIT_CODES}
    for part in parts:
        found = np.bincount(np.fromfile(part["assignment"], np.uint8), minlength=4)
        for name, code in SPLIT_CODES.items():
            counts[name] += int(found[code])
    subset = None
    if 0 < train_subset < counts["train"]:
        subset = np.sort(np.random.default_rng([seed, 1]).choice(counts["train"], train_subset,
                                                                 replace=False))
        counts["train"] = train_subset
    metadata = {"source_sha256": source_hashes, "val_size": val_size, "seed": seed,
                "test_sha256": sha256_json([base_sha, "test"]),
                "snapshot": snapshot["id"] if snapshot else None,
                "train_subset": train_subset,
                "image_shape": base.description.get("image_shape", [28, 28]),
                "counts": counts, "n_features": base.image_bytes}
    view = {"parts": parts, "metadata": metadata, "stamps": str(stamps_dir(data_dir)),
            "subset": "subset.npz" if subset is not None else None}
    return {VIEW_FILE: view, "metadata.json": metadata} | (
        {"subset.npz": {"ranks": subset}} if subset is not None else {})
