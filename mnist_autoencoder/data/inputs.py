"""New images in, validated chunks out, in every input format of ``FORMATS``.

Every reader streams: ``iter_chunks`` yields bounded chunks, so scoring a million
images never holds them all. Every problem is an ``InputError`` whose message
names the file and what is wrong with it, raised before anything is written.

An input format is one ``Format`` in ``FORMATS``: its name, what to give, where
its labels come from, and how a location is recognised, opened, counted and
read. ``open_input`` takes the first format that recognises a location. The
flows' parameter checks and messages (``describe_formats``), ingest's labelled
subset and the table of the docs (``python -m mnist_autoencoder.data.inputs``)
take the list from there, so adding a format is adding an entry to ``FORMATS``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
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
from mnist_autoencoder.paths import is_url
from mnist_autoencoder.storage import sha256_file, sha256_json
from mnist_autoencoder.store import fetched, is_remote

CHUNK = 8192
PARQUET_BUFFER = 1 << 22
IMAGES = re.compile(r"^(?P<stem>.+)-images-idx3-ubyte(\.gz)?$")
NO_LABEL = -1


@dataclass
class Chunk:
    """Up to ``CHUNK`` images: where each came from, its pixels, its label (-1: unknown).

    ``pixels`` are kept as the reader found them once checked: uint8 0-255 (IDX, PNG,
    integer Parquet and .npy) or float32 in [0, 1]. ``x`` (what the models take) and
    ``u8`` (what ingest stores) are derived on first use, so a reader never converts
    what its caller does not need: ingesting uint8 images makes no float copy at all.
    """

    source: str | list[str]  # the file all of them come from, or one file per image
    index: np.ndarray  # (n,) int64 position in that file (0 for a file per image)
    pixels: np.ndarray  # (n, 784) uint8 0-255, or float32 in [0, 1]
    labels: np.ndarray  # (n,) int16, NO_LABEL where unknown

    def __len__(self) -> int:
        return len(self.pixels)

    @functools.cached_property
    def x(self) -> np.ndarray:
        """(n, 784) float32 in [0, 1]."""
        if self.pixels.dtype == np.uint8:
            return self.pixels.astype(np.float32) / np.float32(255)
        return self.pixels

    @functools.cached_property
    def u8(self) -> np.ndarray:
        """(n, 784) uint8: the pixels as given, or float pixels at the nearest of 256 levels."""
        if self.pixels.dtype == np.uint8:
            return self.pixels
        return np.round(self.pixels * np.float32(255)).astype(np.uint8)

    def name(self, i: int) -> str:
        """Where image ``i`` of the chunk came from: ``file#index`` or the PNG's path."""
        if isinstance(self.source, str):
            return f"{self.source}#{self.index[i]}"
        return self.source[i]


def checked_pixels(values: np.ndarray, name: str) -> np.ndarray:
    """Pixels as a ``Chunk`` keeps them: integers (0-255) as uint8, floats (in [0, 1]) as
    float32; anything else refused as ``pixels.as_unit_pixels`` refuses it."""
    if values.dtype == np.uint8:
        return values
    if np.issubdtype(values.dtype, np.integer):
        if values.size:  # the range check and its message, on the extremes alone
            as_unit_pixels(np.array([values.min(), values.max()]), name)
        return values.astype(np.uint8)
    return as_unit_pixels(values, name)


@dataclass(frozen=True)
class Format:
    """One input format: what it is, how a location is recognised, opened, counted and read."""

    name: str  # short and stable: it is the Input's ``kind``, part of its fingerprint
    accepts: str  # what to give, as a phrase for messages: "a .npy array of shape ..."
    labels: str | None  # where its labels come from; None: it has none (ingest refuses it)
    details: str  # what the files must hold, for the table of the docs
    recognises: Callable[[str], bool]  # given an http(s) URL or an existing local path
    count: Callable[[Input], int]  # how many images, from headers and metadata
    chunks: Callable[[Input, int], Iterator[Chunk]]  # the images, at most n per chunk
    open: Callable[[str, Path | None], Input] | None = None  # None: the one file given

    @property
    def labelled(self) -> bool:
        """Whether its images can carry labels (a batch to ingest needs them)."""
        return self.labels is not None


@dataclass
class Input:
    """One input, resolved to its files by its format; ``iter_chunks`` reads it."""

    format: Format
    files: list[Path]
    pairs: dict[Path, Path | None] = field(default_factory=dict)  # IDX images -> labels
    root: Path | None = None  # a PNG folder: sources are named relative to it

    @property
    def kind(self) -> str:
        """The format's name: "idx", "png", "parquet", "npy", ..."""
        return self.format.name

    def fingerprint(self) -> str:
        """A hash of the input's content (file names relative to each other, and bytes)."""
        names = [_relative(p, self.root) if self.root else p.name for p in self.files]
        return sha256_json({"kind": self.kind,
                            "files": [[n, sha256_file(p)] for n, p in zip(names, self.files)]})

    def iter_chunks(self, chunk: int = CHUNK, shard: int = 0, shards: int = 1) -> Iterator[Chunk]:
        """Chunks of at most ``chunk`` images; with ``shards`` > 1, every ``shards``-th one
        from the ``shard``-th on (shards of one input are disjoint and cover it)."""
        if shards > 1:  # chunks small enough that every shard gets some
            chunk = max(1, min(chunk, -(-self.count() // shards)))
        total = 0
        for number, part in enumerate(self.format.chunks(self, chunk)):
            total += len(part.pixels)
            if number % shards == shard:
                yield part
        if total == 0:
            raise InputError(f"{self.files[0] if self.files else 'input'}: holds no images")

    def count(self) -> int:
        """How many images the input holds, from headers and metadata (nothing decoded)."""
        return self.format.count(self)


# --- IDX: a directory or URL of *-images-idx3-ubyte(.gz) files, or one such file ---

def _idx_recognises(location: str) -> bool:
    if is_url(location):
        return True
    path = Path(location)
    if path.is_dir():
        return bool(_idx_pairs(path))
    return path.is_file() and IMAGES.match(path.name) is not None


def _idx_open(location: str, download_dir: Path | None) -> Input:
    if is_url(location):
        if download_dir is None:
            raise InputError(f"{location}: a URL needs a directory to download into")
        location = str(fetch_idx_directory(location, download_dir))
    path = Path(location)
    if path.is_dir():
        pairs = _idx_pairs(path)
        if not pairs:
            raise InputError(f"{path}: no *-images-idx3-ubyte(.gz) files in it")
    else:
        pairs = {p: labels for p, labels in _idx_pairs(path.parent).items() if p == path}
    return Input(IDX, [f for pair in pairs.items() for f in pair if f is not None], pairs)


def _idx_count(found: Input) -> int:
    total = 0
    for path in found.pairs:
        with open_idx(path) as handle:
            total += read_header_checked(handle, str(path))[0]
    return total


def _idx_chunks(found: Input, chunk: int) -> Iterator[Chunk]:
    for images_path, labels_path in found.pairs.items():
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
                            checked_pixels(images.reshape(len(images), -1), name), y)
                start += len(images)
        except IdxFormatError as exc:
            raise InputError(str(exc)) from exc


def _idx_pairs(directory: Path) -> dict[Path, Path | None]:
    pairs = {}
    for path in sorted(directory.iterdir()):
        match = IMAGES.match(path.name)
        if match and path.is_file():
            stem = match["stem"]
            labels = [directory / f"{stem}-labels-idx1-ubyte{suffix}" for suffix in (".gz", "")]
            pairs[path] = next((p for p in labels if p.is_file()), None)
    return pairs


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


# --- PNG: a folder of 28x28 grayscale PNGs, searched recursively ---

def _pngs(directory: Path) -> Iterator[Path]:
    return (p for p in directory.rglob("*") if p.suffix.lower() == ".png" and p.is_file())


def _png_recognises(location: str) -> bool:
    path = Path(location)
    return not is_url(location) and path.is_dir() and next(_pngs(path), None) is not None


def _png_open(location: str, download_dir: Path | None) -> Input:
    path = Path(location)
    return Input(PNG, sorted(_pngs(path)), root=path)


def _png_count(found: Input) -> int:
    return len(found.files)


def _png_chunks(found: Input, chunk: int) -> Iterator[Chunk]:
    for begin in range(0, len(found.files), chunk):
        paths = found.files[begin:begin + chunk]
        x = np.stack([read_png(p) for p in paths]).reshape(len(paths), N_PIXELS)
        y = np.array([int(p.parent.name) if re.fullmatch(r"\d", p.parent.name) else NO_LABEL
                      for p in paths], np.int16)
        yield Chunk([_relative(p, found.root) for p in paths], np.zeros(len(paths), np.int64),
                    checked_pixels(x, str(found.root)), y)


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


def _relative(path: Path, root: Path | None) -> str:
    return str(path.relative_to(root)) if root is not None else str(path)


# --- Parquet: a pixels column of 784 values, an optional label column ---
# pyarrow decodes a list column a row group at a time: memory follows the file's row
# groups (pyarrow's and pandas' writers: at most 1,048,576 rows, about 800 MB of pixels).

def file_with_suffix(suffix: str) -> Callable[[str], bool]:
    """A ``recognises`` for a format that is one local file ending in ``suffix``."""
    return functools.partial(_is_file_with_suffix, suffix)


def _is_file_with_suffix(suffix: str, location: str) -> bool:
    return not is_url(location) and Path(location).suffix == suffix and Path(location).is_file()


def _parquet_count(found: Input) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(found.files[0]).metadata.num_rows


def _parquet_chunks(found: Input, chunk: int) -> Iterator[Chunk]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = found.files[0]
    try:
        # read through a 4 MiB buffer, not a column chunk at a time (a row group of a
        # million images is 200 MB or more even compressed)
        parquet = pq.ParquetFile(path, buffer_size=PARQUET_BUFFER)
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
        x = checked_pixels(flat.reshape(len(pixels), N_PIXELS), str(path))
        y = (checked_labels(batch.column("label").to_numpy(zero_copy_only=False), str(path))
             if "label" in columns else np.full(len(x), NO_LABEL, np.int16))
        yield Chunk(path.name, np.arange(start, start + len(x)), x, y)
        start += len(x)


# --- .npy: an array of shape (n, 28, 28) or (n, 784) ---

def _npy_count(found: Input) -> int:
    return len(np.load(found.files[0], mmap_mode="r", allow_pickle=False))


def _npy_chunks(found: Input, chunk: int) -> Iterator[Chunk]:
    path = found.files[0]
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc})") from exc
    if array.ndim not in (2, 3) or array.shape[1:] not in ((SIDE, SIDE), (N_PIXELS,)):
        raise InputError(f"{path}: shape {array.shape}; expected (n, 28, 28) or (n, 784)")
    for start in range(0, len(array), chunk):
        part = np.asarray(array[start:start + chunk]).reshape(-1, N_PIXELS)
        yield Chunk(path.name, np.arange(start, start + len(part)),
                    checked_pixels(part, str(path)), np.full(len(part), NO_LABEL, np.int16))


# --- The registry: every input format, in order of precedence ---

IDX = Format(
    name="idx",
    accepts="a directory or http(s) URL of *-images-idx3-ubyte(.gz) files, or one such file",
    labels="the matching *-labels-idx1-ubyte(.gz) file, when there is one",
    details="uint8 IDX, 28x28 per image; a URL's train/t10k .gz files are downloaded once",
    recognises=_idx_recognises, open=_idx_open, count=_idx_count, chunks=_idx_chunks)
PNG = Format(
    name="png",
    accepts="a directory of 28x28 grayscale PNGs, searched recursively",
    labels="the parent folder's name when it is a digit, as in 3/a.png",
    details="8-bit grayscale (mode L or 1), 28x28 pixels",
    recognises=_png_recognises, open=_png_open, count=_png_count, chunks=_png_chunks)
PARQUET = Format(
    name="parquet",
    accepts="a .parquet file with a pixels column",
    labels="a label column of digits 0-9, when there is one",
    details="pixels: a list of 784 values per row, uint8 0-255 or float in [0, 1]",
    recognises=file_with_suffix(".parquet"), count=_parquet_count, chunks=_parquet_chunks)
NPY = Format(
    name="npy",
    accepts="a .npy array of shape (n, 28, 28) or (n, 784)",
    labels=None,
    details="uint8 0-255 or float in [0, 1]",
    recognises=file_with_suffix(".npy"), count=_npy_count, chunks=_npy_chunks)

FORMATS: tuple[Format, ...] = (IDX, PNG, PARQUET, NPY)  # the first that recognises wins


def formats(labelled_only: bool = False) -> tuple[Format, ...]:
    """The registered formats, in order of precedence; only those with labels if asked."""
    return tuple(f for f in FORMATS if f.labelled or not labelled_only)


def describe_formats(labelled_only: bool = False) -> str:
    """The formats in one line, for ``--help`` and error messages: ``name: what to give; ...``.

    ``labelled_only``: those a batch to ingest can be in, with where their labels come from.
    """
    return "; ".join(f"{f.name}: {f.accepts}" + (f" (labels: {f.labels})" if labelled_only
                                                  else "")
                     for f in formats(labelled_only))


def formats_table() -> str:
    """The formats as a Markdown table, for the docs."""
    rows = ["| Format | Give | Labels (ingest needs them) | Pixels |", "|---|---|---|---|"]
    for f in FORMATS:
        cells = [f"`{f.name}`", f.accepts, f.labels or "none: scoring and drift only", f.details]
        rows.append("| " + " | ".join(c.replace("*", r"\*") for c in cells) + " |")
    return "\n".join(rows)


def format_of(location: str | Path) -> Format | None:
    """The first format that recognises ``location`` (a URL or an existing path), or None."""
    text = str(location)
    if is_remote(text) and not is_url(text):  # a store's object or prefix (s3://...)
        text = str(fetched(text))
    if not is_url(text):
        path = Path(text).expanduser()
        if not path.exists():
            return None
        text = str(path)
    return next((f for f in FORMATS if f.recognises(text)), None)


def open_input(location: str | Path, download_dir: Path | None = None) -> Input:
    """Resolve ``location`` to an ``Input``; raise ``InputError`` if it holds no images.

    ``download_dir``: where a URL's files are downloaded to.
    """
    text = str(location)
    if is_remote(text) and not is_url(text):  # a store's object or prefix (s3://...)
        text = str(fetched(text))
    if not is_url(text):
        path = Path(text).expanduser()
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        text = str(path)
    found = format_of(text)
    if found is None:
        raise _not_an_input(text)
    return found.open(text, download_dir) if found.open else Input(found, [Path(text)])


def _not_an_input(location: str) -> InputError:
    path = Path(location)
    if not path.is_dir():
        what = "not an input this reads"
    elif next((p for p in path.rglob("*") if p.is_file()), None) is None:
        what = "an empty directory"
    else:
        what = "a directory with no images in it or below it that an input format reads"
    return InputError(f"{location}: {what}; give one of the input formats: {describe_formats()}")


if __name__ == "__main__":
    print(formats_table())
