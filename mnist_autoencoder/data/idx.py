"""Parse IDX files (the MNIST container format) with validation.

Format: two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions, one big-endian uint32 per dimension, then the values in C order.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mnist_autoencoder.errors import DataError

UBYTE = 0x08


class IdxFormatError(DataError):
    """A file is not the IDX data it claims to be."""


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Return the uint8 array stored in uncompressed IDX ``data``."""
    if len(data) < 4:
        raise IdxFormatError(f"{name}: {len(data)} bytes is too short for an IDX header")
    zero0, zero1, type_code, ndim = data[:4]
    if zero0 or zero1 or type_code != UBYTE or ndim == 0:
        raise IdxFormatError(
            f"{name}: bad magic number 0x{data[:4].hex()} (expected 0x000008NN: "
            "unsigned-byte IDX with NN dimensions)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(f"{name}: header for {ndim} dimensions is truncated")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise IdxFormatError(
            f"{name}: header says shape {shape} ({expected} values) "
            f"but the file holds {len(data) - header}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def read_idx_gz(path: Path) -> np.ndarray:
    """Read and parse a gzip-compressed IDX file."""
    try:
        data = gzip.decompress(Path(path).read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxFormatError(f"{path}: not a complete gzip file ({exc})") from exc
    return parse_idx(data, str(path))


def load_images_and_labels(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one images/labels pair and check that they agree."""
    images, labels = read_idx_gz(images_path), read_idx_gz(labels_path)
    if images.ndim != 3:
        raise IdxFormatError(
            f"{images_path}: expected 3 dimensions (n, rows, cols), got {images.shape}")
    if labels.ndim != 1:
        raise IdxFormatError(f"{labels_path}: expected 1 dimension (n,), got {labels.shape}")
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    return images, labels


def open_idx(path: Path) -> BinaryIO:
    """Open an IDX file for reading, gzip-compressed (``.gz``) or not."""
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def read_header(handle: BinaryIO, name: str) -> tuple[int, ...]:
    """Read and check an IDX header from ``handle``; return the shape it declares."""
    try:
        magic = handle.read(4)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxFormatError(f"{name}: not a readable IDX file ({exc})") from exc
    if len(magic) < 4 or magic[0] or magic[1] or magic[2] != UBYTE or magic[3] == 0:
        raise IdxFormatError(f"{name}: bad magic number 0x{magic.hex()} (expected 0x000008NN: "
                             "unsigned-byte IDX with NN dimensions)")
    dims = handle.read(4 * magic[3])
    if len(dims) < 4 * magic[3]:
        raise IdxFormatError(f"{name}: header for {magic[3]} dimensions is truncated")
    return tuple(int(d) for d in np.frombuffer(dims, ">u4"))


def iter_idx(path: Path, chunk: int) -> Iterator[np.ndarray]:
    """Yield the records of an IDX file ``chunk`` at a time, without reading it whole."""
    with open_idx(path) as handle:
        shape = read_header(handle, str(path))
        record = int(np.prod(shape[1:], dtype=np.int64))
        for start in range(0, shape[0], chunk):
            count = min(chunk, shape[0] - start)
            try:
                data = handle.read(count * record)
            except (OSError, EOFError, zlib.error) as exc:
                raise IdxFormatError(f"{path}: not a complete IDX file ({exc})") from exc
            if len(data) != count * record:
                raise IdxFormatError(f"{path}: header says {shape[0]} records but the file "
                                     f"ends after {start + len(data) // max(record, 1)}")
            yield np.frombuffer(data, np.uint8).reshape(count, *shape[1:])
