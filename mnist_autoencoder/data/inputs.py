"""New images in, validated chunks out: IDX files, Parquet, folders of PNGs, ``.npy`` arrays.

Every reader streams: ``iter_chunks`` yields bounded chunks, so scoring a million
images never holds them all. Every problem is an ``InputError`` whose message
names the file and what is wrong with it, raised before anything is written.

Accepted inputs (``open_input``):

- a directory or an http(s) URL holding IDX files: every
  ``*-images-idx3-ubyte(.gz)``, with its ``*-labels-idx1-ubyte(.gz)`` when present;
- a single ``*-images-idx3-ubyte(.gz)`` file;
- a Parquet file with a ``pixels`` column of 784 values (uint8 0-255 or float
  0-1) and an optional ``label`` column;
- a directory of 28x28 grayscale PNGs, searched recursively; an image's label is
  its parent folder's name when that is a digit;
- a ``.npy`` array of shape (n, 28, 28) or (n, 784), uint8 or float in [0, 1].
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_autoencoder.data.idx import IdxFormatError, iter_idx, open_idx, read_header
from mnist_autoencoder.data.pixels import (
    N_PIXELS,
    SIDE,
    InputError,
    as_unit_pixels,
    checked_labels,
)
from mnist_autoencoder.storage import sha256_file, sha256_json

CHUNK = 8192
IMAGES = re.compile(r"^(?P<stem>.+)-images-idx3-ubyte(\.gz)?$")
NO_LABEL = -1


@dataclass
class Chunk:
    """Up to ``CHUNK`` images: where each came from, its pixels, its label (-1: unknown)."""

    source: str | list[str]  # the file all of them come from, or one file per image
    index: np.ndarray  # (n,) int64 position in that file (0 for a file per image)
    x: np.ndarray  # (n, 784) float32 in [0, 1]
    labels: np.ndarray  # (n,) int16, NO_LABEL where unknown

    def name(self, i: int) -> str:
        """Where image ``i`` of the chunk came from: ``file#index`` or the PNG's path."""
        if isinstance(self.source, str):
            return f"{self.source}#{self.index[i]}"
        return self.source[i]


@dataclass
class Input:
    """One input, resolved to its files; ``iter_chunks`` reads it."""

    kind: str  # "idx", "parquet", "png", "npy"
    files: list[Path]
    labelled: dict[Path, Path | None] = field(default_factory=dict)  # IDX images -> labels
    root: Path | None = None  # a PNG folder: sources are named relative to it

    def fingerprint(self) -> str:
        """A hash of the input's content (file names relative to each other, and bytes)."""
        names = [_relative(p, self.root) if self.root else p.name for p in self.files]
        return sha256_json({"kind": self.kind,
                            "files": [[n, sha256_file(p)] for n, p in zip(names, self.files)]})

    def iter_chunks(self, chunk: int = CHUNK, shard: int = 0, shards: int = 1) -> Iterator[Chunk]:
        """Chunks of at most ``chunk`` images; with ``shards`` > 1, every ``shards``-th one
        from the ``shard``-th on (shards of one input are disjoint and cover it)."""
        reader = {"idx": self._idx, "parquet": self._parquet, "png": self._png,
                  "npy": self._npy}[self.kind]
        if shards > 1:  # chunks small enough that every shard gets some
            chunk = max(1, min(chunk, -(-self.count() // shards)))
        total = 0
        for number, part in enumerate(reader(chunk)):
            total += len(part.x)
            if number % shards == shard:
                yield part
        if total == 0:
            raise InputError(f"{self.files[0] if self.files else 'input'}: holds no images")

    def count(self) -> int:
        """How many images the input holds, from headers and metadata (nothing decoded)."""
        if self.kind == "idx":
            total = 0
            for path in self.labelled:
                with open_idx(path) as handle:
                    total += read_header_checked(handle, str(path))[0]
            return total
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.files[0]).metadata.num_rows
        if self.kind == "npy":
            return len(np.load(self.files[0], mmap_mode="r", allow_pickle=False))
        return len(self.files)

    def _idx(self, chunk: int) -> Iterator[Chunk]:
        for images_path, labels_path in self.labelled.items():
            name = str(images_path)
            with open_idx(images_path) as handle:
                shape = read_header_checked(handle, name)
            labels = None
            if labels_path is not None:
                with open_idx(labels_path) as handle:
                    label_shape = read_header_checked(handle, str(labels_path), labels=True)
                if label_shape[0] != shape[0]:
                    raise InputError(f"{images_path} holds {shape[0]} images but {labels_path} "
                                     f"holds {label_shape[0]} labels")
                labels = iter_idx(labels_path, chunk)
            start = 0
            try:
                for images in iter_idx(images_path, chunk):
                    y = (checked_labels(next(labels), str(labels_path)) if labels is not None
                         else np.full(len(images), NO_LABEL, np.int16))
                    yield Chunk(images_path.name, np.arange(start, start + len(images)),
                                as_unit_pixels(images.reshape(len(images), -1), name), y)
                    start += len(images)
            except IdxFormatError as exc:
                raise InputError(str(exc)) from exc

    def _parquet(self, chunk: int) -> Iterator[Chunk]:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        path = self.files[0]
        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
        names = parquet.schema_arrow.names
        if "pixels" not in names:
            raise InputError(f"{path}: no 'pixels' column (found {names}); give one list of "
                             f"{N_PIXELS} values per row")
        columns = ["pixels"] + (["label"] if "label" in names else [])
        start = 0
        for batch in parquet.iter_batches(batch_size=chunk, columns=columns):
            pixels = batch.column("pixels")
            lengths = pc.list_value_length(pixels).to_numpy(zero_copy_only=False)
            if pixels.null_count or np.any(lengths != N_PIXELS):
                row = start + int(np.argmax(lengths != N_PIXELS)) if len(lengths) else start
                raise InputError(f"{path}: row {row}: 'pixels' must hold {N_PIXELS} values "
                                 "(one 28x28 image)")
            flat = pixels.flatten().to_numpy(zero_copy_only=False)
            x = as_unit_pixels(flat.reshape(len(pixels), N_PIXELS), str(path))
            y = (checked_labels(batch.column("label").to_numpy(zero_copy_only=False), str(path))
                 if "label" in columns else np.full(len(x), NO_LABEL, np.int16))
            yield Chunk(path.name, np.arange(start, start + len(x)), x, y)
            start += len(x)

    def _png(self, chunk: int) -> Iterator[Chunk]:
        for begin in range(0, len(self.files), chunk):
            paths = self.files[begin:begin + chunk]
            x = np.stack([read_png(p) for p in paths]).reshape(len(paths), N_PIXELS)
            y = np.array([int(p.parent.name) if re.fullmatch(r"\d", p.parent.name) else NO_LABEL
                          for p in paths], np.int16)
            yield Chunk([_relative(p, self.root) for p in paths], np.zeros(len(paths), np.int64),
                        as_unit_pixels(x, str(self.root)), y)

    def _npy(self, chunk: int) -> Iterator[Chunk]:
        path = self.files[0]
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable .npy array ({exc})") from exc
        if array.ndim not in (2, 3) or array.shape[1:] not in ((SIDE, SIDE), (N_PIXELS,)):
            raise InputError(f"{path}: shape {array.shape}; expected (n, 28, 28) or (n, 784)")
        for start in range(0, len(array), chunk):
            part = np.asarray(array[start:start + chunk]).reshape(-1, N_PIXELS)
            yield Chunk(path.name, np.arange(start, start + len(part)),
                        as_unit_pixels(part, str(path)), np.full(len(part), NO_LABEL, np.int16))


def _relative(path: Path, root: Path | None) -> str:
    return str(path.relative_to(root)) if root is not None else str(path)


def read_header_checked(handle, name: str, labels: bool = False) -> tuple[int, ...]:
    try:
        shape = read_header(handle, name)
    except IdxFormatError as exc:
        raise InputError(str(exc)) from exc
    if labels and len(shape) != 1:
        raise InputError(f"{name}: labels must have 1 dimension, found shape {shape}")
    if not labels and shape[1:] != (SIDE, SIDE):
        raise InputError(f"{name}: images are {'x'.join(map(str, shape[1:]))}; "
                         f"this model takes {SIDE}x{SIDE}")
    return shape


def read_png(path: Path) -> np.ndarray:
    """One 28x28 grayscale PNG as uint8 pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            mode, size = image.mode, image.size
            pixels = np.asarray(image)
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise InputError(f"{path}: not a readable PNG ({exc})") from exc
    if mode not in ("L", "1"):
        raise InputError(f"{path}: a {mode} image; give 8-bit grayscale (mode L) PNGs")
    if size != (SIDE, SIDE):
        raise InputError(f"{path}: {size[0]}x{size[1]} pixels; this model takes {SIDE}x{SIDE}")
    return pixels.astype(np.uint8) * (255 if mode == "1" else 1)


def _idx_pairs(directory: Path) -> dict[Path, Path | None]:
    pairs = {}
    for path in sorted(directory.iterdir()):
        match = IMAGES.match(path.name)
        if match and path.is_file():
            stem = match["stem"]
            labels = [directory / f"{stem}-labels-idx1-ubyte{suffix}" for suffix in (".gz", "")]
            pairs[path] = next((p for p in labels if p.is_file()), None)
    return pairs


def open_input(location: str | Path, download_dir: Path | None = None) -> Input:
    """Resolve ``location`` to an ``Input``; raise ``InputError`` if it holds no images."""
    text = str(location)
    if text.startswith(("http://", "https://")):
        if download_dir is None:
            raise InputError(f"{text}: a URL needs a directory to download into")
        return open_input(fetch_idx_directory(text, download_dir))
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        pairs = _idx_pairs(path)
        if pairs:
            files = [f for pair in pairs.items() for f in pair if f is not None]
            return Input("idx", files, pairs)
        pngs = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".png" and p.is_file())
        if pngs:
            return Input("png", pngs, root=path)
        raise InputError(f"{path}: an empty directory (no *-images-idx3-ubyte files and no "
                         f".png images in it or below it)")
    if IMAGES.match(path.name):
        pairs = {p: labels for p, labels in _idx_pairs(path.parent).items() if p == path}
        return Input("idx", [f for pair in pairs.items() for f in pair if f is not None], pairs)
    if path.suffix == ".parquet":
        return Input("parquet", [path])
    if path.suffix == ".npy":
        return Input("npy", [path])
    raise InputError(f"{path}: not an input this reads; give a directory of IDX files or PNGs, "
                     "an *-images-idx3-ubyte(.gz) file, a .parquet or a .npy file")


def fetch_idx_directory(url: str, directory: Path) -> Path:
    """Download the MNIST-named IDX files found at ``url`` into ``directory``."""
    import urllib.error
    import urllib.parse

    from mnist_autoencoder.data.download import fetch_with_retries
    from mnist_autoencoder.storage import write_bytes_atomic

    base = url if url.endswith("/") else url + "/"
    found = 0
    for stem in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{stem}-{kind}-ubyte.gz"
            try:
                data = fetch_with_retries(urllib.parse.urljoin(base, name))
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    continue
                raise InputError(f"{base}{name}: {exc}") from exc
            except OSError as exc:
                raise InputError(f"{base}{name}: {exc}") from exc
            write_bytes_atomic(directory / name, data)
            found += 1
    if not found:
        raise InputError(f"{url}: no train/t10k *-images-idx3-ubyte.gz files there")
    return directory
