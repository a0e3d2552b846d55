"""The I/O manager of the stages: upstream outputs checked, outputs written atomically, described.

A stage calls the core with values and hands the values it gets back to
``StageIO.write``, which writes them into the stage's directory (named after its
cache key) as one atomic directory swap and returns the small ``{dir, files,
hash}`` description that downstream stages and the cache keys use.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_link_artifact

from mnist_autoencoder.data.splits import Split, SplitView, load_splits
from mnist_autoencoder.paths import checkpoint_path, index_path
from mnist_autoencoder.roots import published_url
from mnist_autoencoder.storage import (
    atomic_dir,
    describe_outputs,
    read_value,
    require_valid,
    write_json_atomic,
    write_outputs,
    write_value,
)
from tasks.caching import current_cache_key


class StageIO:
    """Where one run of a stage reads and writes.

    Args:
        root: the stage's folder; this run writes to ``root/<cache key>``. None for a
            stage that writes no outputs of its own (``promote`` keeps the registry).
        upstream: the descriptions this stage reads; each must still be intact.
    """

    def __init__(self, root: str | Path | None, *upstream: Mapping[str, Any]):
        for outputs in upstream:
            require_valid(outputs)
        self.root = Path(root) if root is not None else None
        self.dir = self.root / current_cache_key() if root is not None else None
        self.log = get_run_logger().info

    @property
    def checkpoint(self) -> Path:
        """Where a long computation checkpoints (beside the output directory, not in it)."""
        return checkpoint_path(self.dir)

    def write(self, outputs: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """Write ``{file name: value}``; return the description, plus ``extra`` values."""
        description = write_outputs(self.dir, outputs)
        self.checkpoint.unlink(missing_ok=True)
        return description | extra

    @contextmanager
    def streaming(self) -> Iterator[Path]:
        """For outputs too large to hold: yield a temporary directory to fill (``put``).

        It becomes the output directory only when the block completes; ``describe``
        then returns its description.
        """
        with atomic_dir(self.dir) as tmp:
            yield tmp

    @staticmethod
    def put(directory: Path, outputs: Mapping[str, Any]) -> None:
        """Write ``{file name: value}`` into ``streaming``'s directory."""
        for name, value in outputs.items():
            write_value(directory / name, value)

    def describe(self, **extra: Any) -> dict[str, Any]:
        """The description of what ``streaming`` wrote, plus ``extra`` values."""
        return describe_outputs(self.dir, sorted(p.name for p in self.dir.iterdir())) | extra

    def index(self, content: str, outputs: Mapping[str, Any]) -> None:
        """Record that ``outputs`` (this stage's) hold, or were computed from, ``content``.

        Lookups by content (``read_indexed``: a model's validation split, a parent's
        baselines) then read one small file instead of searching the stage's folder.
        """
        write_json_atomic(index_path(self.root, content),
                          {k: outputs[k] for k in ("dir", "files", "hash")})

    def publish(self, key: str, name: str, description: str) -> Path:
        """Publish one written file as a Prefect link artifact (the UI opens it offline)."""
        path = self.dir / name
        where = published_url(path)  # on a store: its object there
        create_link_artifact(key=key, link=where if where != str(path) else path.as_uri(),
                             link_text=name, description=description)
        self.log(f"{description}: {where}")
        return path


def read(outputs: Mapping[str, Any], name: str) -> Any:
    """One file of an upstream stage's outputs, read by its suffix."""
    return read_value(Path(outputs["dir"]) / name)


def read_splits(splits: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Split]:
    """The splits ``names`` of preprocess's output, each within ``splits.SAMPLE_LIMITS``."""
    return load_splits(Path(splits["dir"]), names)


def open_splits(splits: Mapping[str, Any]) -> SplitView:
    """Preprocess's output as a view, for a stage that picks its rows (train)."""
    return SplitView(Path(splits["dir"]))
