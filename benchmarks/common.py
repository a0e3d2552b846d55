"""What the benchmarks share: the splits of a raw IDX folder, built as ``preprocess`` builds them.

``build_splits(raw_dir)`` runs the pipeline's own preprocessing (``build_view``: the
base shard, the seeded train/val assignment, ``splits.json``) into a data folder and
reads the splits back with ``load_splits``, so a benchmark trains and scores on exactly
the rows the pipeline would, with no second implementation of the split.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mnist_autoencoder.data.catalog import IDX_NAMES
from mnist_autoencoder.data.splits import SPLITS, Split

VAL_SIZE = 10_000  # the pipeline's defaults
SEED = 0


def idx_files(raw_dir: str | Path) -> dict[str, Path] | None:
    """The four IDX files of ``raw_dir`` by role; None if any is missing."""
    paths = {role: Path(raw_dir) / name for role, name in IDX_NAMES.items()}
    return paths if all(path.is_file() for path in paths.values()) else None


def build_splits(raw_dir: str | Path, names: tuple[str, ...] = SPLITS, *,
                 val_size: int = VAL_SIZE, seed: int = SEED, train_subset: int = 0,
                 data_dir: str | Path | None = None,
                 limits: dict[str, int | None] | None = None) -> dict[str, Split]:
    """The splits ``names`` of the four IDX files in ``raw_dir``, whole unless ``limits``
    (``data.splits.SAMPLE_LIMITS`` is what the stages read).

    The shard, the assignment and the view go to ``data_dir`` (kept, and reused by a
    later call with the same files and settings), or to a temporary folder removed
    before returning: the returned arrays are copies, in memory.
    """
    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="mnist-ae-bench-splits-") as tmp:
            return build_splits(raw_dir, names, val_size=val_size, seed=seed,
                                train_subset=train_subset, data_dir=tmp, limits=limits)
    from mnist_autoencoder.data.preprocessing import build_view
    from mnist_autoencoder.data.splits import load_splits
    from mnist_autoencoder.storage import sha256_file, sha256_json, write_outputs

    raw_dir, data_dir = Path(raw_dir), Path(data_dir)
    paths = idx_files(raw_dir)
    if paths is None:
        raise FileNotFoundError(f"{raw_dir}: the four IDX files {sorted(IDX_NAMES.values())} "
                                "are not all there")
    # the base shard is keyed by these: the files' own hashes (the pipeline uses the
    # payloads', pinned in the catalog; any content hash keys it as well)
    hashes = {role: sha256_file(path) for role, path in paths.items()}
    dataset = raw_dir.resolve().name or "raw"
    files = build_view(data_dir, dataset, raw_dir, dict(IDX_NAMES), val_size, seed, hashes,
                       train_subset)
    view_dir = data_dir / "processed" / dataset / sha256_json(
        [hashes, val_size, seed, train_subset])[:16]
    write_outputs(view_dir, files)
    return load_splits(view_dir, names, {} if limits is None else limits)
