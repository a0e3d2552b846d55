"""A snapshot's splits as every stage reads them: ``SplitView`` over shards, and ``Split``.

``preprocess`` writes ``splits.json``: the snapshot's parts (the base dataset's
shard, then each batch's, ``data.shards``), each with its split assignment (one
byte per image), and the metadata. It holds no pixels, so it costs a few KB
whatever the snapshot's size, and every snapshot shares the shards.

A split's rows are its images in part order (the base's, then each batch's), so a
base-only snapshot reads exactly the rows, in the order, of the files. Stages read:

- ``load(name, limit)``: a ``Split`` of normalised float32 pixels; beyond ``limit``
  rows, a seeded uniform sample of ``limit`` of them (the same rows every time);
- ``pixels(name, ranks)``: uint8 pixels of chosen rows (training normalises on the
  fly, inside its compiled step);
- ``ranks(name, parts)``: the rows of a split that some parts (batches) hold.

Opening a view checks every shard (``shards.verify``: hashed in full once per
machine, trusted by its unchanged stat after) and every assignment file (hashed:
one byte per image).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mnist_autoencoder.data.shards import Shard, ShardError, verify
from mnist_autoencoder.roots import ensure
from mnist_autoencoder.storage import sha256_file

SPLITS = ("train", "val", "test")
VIEW_FILE = "splits.json"
SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "recent": 3}
# Rows a stage reads at most from a split it does not need whole: the probes, PCA and
# the analysis (train); early stopping, calibration and the drift reference (val); the
# evaluated recent holdout. At or above MNIST's own counts, so a base snapshot is read
# whole and its figures do not change. Measured in docs/growth.md.
SAMPLE_LIMITS = {"train": 60_000, "val": 10_000, "recent": 10_000, "test": 10_000}
SAMPLE_SEED = 20_240_613
# Training holds up to this many rows in memory as uint8 (205 MB); beyond, it streams
# chunks of STREAM_CHUNK_ROWS (100 MB), so its memory stops growing with the snapshot.
IN_MEMORY_ROWS = 262_144
STREAM_CHUNK_ROWS = 131_072


class Split(NamedTuple):
    x: np.ndarray  # (n, n_features) float32 in [0, 1]
    y: np.ndarray  # (n,) uint8 labels
    index: np.ndarray  # (n,) int64 position in the original files (then the batches)


def normalize(images: np.ndarray) -> np.ndarray:
    """Flatten (n, ...) uint8 images to (n, features) float32 in [0, 1]."""
    return images.reshape(len(images), 784 if not len(images) else -1).astype(
        np.float32) / np.float32(255)


class SplitView:
    """The splits of one preprocess output (``directory/splits.json``)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.layout = json.loads((self.directory / VIEW_FILE).read_text())
        self.metadata: dict[str, Any] = self.layout["metadata"]
        self.parts = self.layout["parts"]
        self._rows: dict[str, list[np.ndarray]] = {}

    @cached_property
    def shards(self) -> list[Shard]:
        stamps = self.layout.get("stamps")
        shards = []
        for part in self.parts:
            try:
                shards.append(verify(part["shard"], part["sha256"], stamps,
                                     f"the shard of {part['id']}"))
            except ShardError as error:
                if part["id"] != "base":
                    raise
                raise ShardError(f"{error}".split("; ")[0] + "; it is derived from the raw "
                                 f"files: delete {part['shard']} and rerun (preprocess "
                                 "rebuilds it)") from None
        for part in self.parts:
            path = Path(part["assignment"])
            ensure(path)
            if not path.is_file() or sha256_file(path) != part["assignment_sha256"]:
                raise ShardError(f"{path}: the split assignment of {part['id']} is missing or "
                                 "changed; delete it and rerun (preprocess writes it again)")
        return shards

    @cached_property
    def _codes(self) -> list[np.ndarray]:
        self.shards  # noqa: B018 (checked first)
        return [np.fromfile(p["assignment"], np.uint8) for p in self.parts]

    def _part_rows(self, name: str) -> list[np.ndarray]:
        """For each part, the rows of ``name`` in it (train: within the subset, if any)."""
        if name not in self._rows:
            self._rows[name] = self._find_rows(name)
        return self._rows[name]

    def _find_rows(self, name: str) -> list[np.ndarray]:
        rows = [np.flatnonzero(codes == SPLIT_CODES[name]) for codes in self._codes]
        subset = self.layout.get("subset")
        if name == "train" and subset is not None:
            with np.load(self.directory / subset) as archive:
                chosen = archive["ranks"]  # sorted positions among the train rows
            bounds = np.cumsum([0, *map(len, rows)])
            rows = [r[chosen[(chosen >= lo) & (chosen < hi)] - lo]
                    for r, lo, hi in zip(rows, bounds[:-1], bounds[1:])]
        return rows

    def count(self, name: str) -> int:
        return int(self.metadata["counts"].get(name, 0))

    def ranks(self, name: str, parts: set[str] | None = None) -> np.ndarray:
        """The positions, in ``name``, of the rows the ``parts`` (by id) hold; None: all."""
        out, start = [], 0
        for part, rows in zip(self.parts, self._part_rows(name)):
            if parts is None or part["id"] in parts:
                out.append(np.arange(start, start + len(rows)))
            start += len(rows)
        return np.concatenate(out) if out else np.empty(0, np.int64)

    def sample_ranks(self, name: str, limit: int | None = None,
                     exclude: np.ndarray | None = None, seed: int = SAMPLE_SEED) -> np.ndarray:
        """Sorted positions of up to ``limit`` rows of ``name``, drawn uniformly with ``seed``
        (all of them, in order, when there are no more); ``exclude`` rows are never drawn."""
        pool = np.arange(self.count(name))
        if exclude is not None and len(exclude):
            pool = np.setdiff1d(pool, exclude, assume_unique=True)
        if limit is None or len(pool) <= limit:
            return pool
        return np.sort(np.random.default_rng(seed).choice(pool, limit, replace=False))

    def _gather(self, name: str, ranks: np.ndarray | None, read) -> np.ndarray:
        per_part = self._part_rows(name)
        bounds = np.cumsum([0, *map(len, per_part)])
        pieces = []
        for i, (shard, rows) in enumerate(zip(self.shards, per_part)):
            if ranks is None:
                chosen = rows
            else:
                inside = ranks[(ranks >= bounds[i]) & (ranks < bounds[i + 1])]
                chosen = rows[inside - bounds[i]]
            if len(chosen):
                pieces.append(read(i, shard, chosen))
        return pieces

    def pixels(self, name: str, ranks: np.ndarray | None = None) -> np.ndarray:
        """uint8 (k, 784) pixels of the rows at sorted ``ranks`` of ``name`` (None: all)."""
        pieces = self._gather(name, ranks, lambda i, shard, rows: shard.images(rows))
        width = self.shards[0].image_bytes if self.parts else 784
        return np.concatenate(pieces) if pieces else np.empty((0, width), np.uint8)

    def labels(self, name: str, ranks: np.ndarray | None = None) -> np.ndarray:
        labels = {}
        pieces = self._gather(name, ranks, lambda i, shard, rows:
                              labels.setdefault(i, shard.labels())[rows])
        return np.concatenate(pieces) if pieces else np.empty(0, np.uint8)

    def index(self, name: str, ranks: np.ndarray | None = None) -> np.ndarray:
        """Each row's position in the original files: the base's train file, its test
        file (counted from 0 again, as its own file), then the batches in order."""
        def position(i, shard, rows):
            part = self.parts[i]
            rows = rows.astype(np.int64)
            test_from = part.get("test_from")
            if test_from is not None:
                rows = np.where(rows >= test_from, rows - test_from, rows)
            return part["index_start"] + rows

        pieces = self._gather(name, ranks, position)
        return np.concatenate(pieces) if pieces else np.empty(0, np.int64)

    def load(self, name: str, limit: int | None = None) -> Split:
        """``name`` as normalised pixels; at most ``limit`` rows (a fixed sample)."""
        ranks = self.sample_ranks(name, limit) if limit is not None and \
            self.count(name) > limit else None
        return Split(normalize(self.pixels(name, ranks)), self.labels(name, ranks),
                     self.index(name, ranks))


def view_problems(directory: str | Path) -> list[str]:
    """Why a view's shards or assignments cannot be used (missing, changed), or nothing:
    a stat per file for shards hashed before on this machine (``shards.verify``)."""
    try:
        SplitView(directory).shards  # noqa: B018
    except ShardError as error:
        return [str(error)]
    except (OSError, ValueError, KeyError):
        pass  # the view itself is the stage's output, checked by its hash
    return []


class Rows:
    """Rows of a split too many to hold, for training: ``epoch(rng)`` partitions them
    anew at random into chunks of ``chunk_rows`` and yields each chunk's pixels."""

    def __init__(self, view: SplitView, name: str, ranks: np.ndarray,
                 chunk_rows: int = STREAM_CHUNK_ROWS):
        self.view, self.name, self.ranks, self.chunk_rows = view, name, ranks, chunk_rows

    def __len__(self) -> int:
        return len(self.ranks)

    def epoch(self, rng: np.random.Generator):
        order = rng.permutation(self.ranks)  # drawn now, by the caller's thread

        def chunks():
            for start in range(0, len(order), self.chunk_rows):
                yield self.view.pixels(self.name, np.sort(order[start:start + self.chunk_rows]))
        return chunks()


def select_training_rows(view: SplitView, new_parts: set[str] | None, replay: int,
                         seed: int) -> tuple[np.ndarray, dict[str, int]]:
    """The train rows a run fits on, and their counts: all of them (``new_parts`` None, a
    run from scratch), or a warm retrain's: the rows of ``new_parts`` plus ``replay``
    rows drawn uniformly (with ``seed``) from the others."""
    if new_parts is None:
        return np.arange(view.count("train")), {"train": view.count("train")}
    new = view.ranks("train", new_parts)
    history = view.sample_ranks("train", replay, exclude=new, seed=seed)
    rows = np.union1d(new, history)
    return rows, {"train": len(rows), "new": len(new), "replay": len(history)}


def training_rows(view: SplitView, ranks: np.ndarray) -> np.ndarray | Rows:
    """The train rows at ``ranks``: in memory (uint8) up to ``IN_MEMORY_ROWS``, else streamed."""
    return view.pixels("train", ranks) if len(ranks) <= IN_MEMORY_ROWS else Rows(
        view, "train", ranks)


def load_splits(directory: str | Path, names: tuple[str, ...] = SPLITS,
                limits: dict[str, int | None] | None = None) -> dict[str, Split]:
    """``names`` of the view in ``directory`` as ``Split`` values, each within its limit."""
    view = SplitView(directory)
    limits = SAMPLE_LIMITS if limits is None else limits
    return {name: view.load(name, limits.get(name)) for name in names}


def read_metadata(directory: str | Path) -> dict[str, Any]:
    return json.loads((Path(directory) / VIEW_FILE).read_text())["metadata"]
