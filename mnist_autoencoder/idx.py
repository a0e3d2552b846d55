"""Parse IDX files (the MNIST container format) with validation.

Format: two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions, one big-endian uint32 per dimension, then the values in C order.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

UBYTE = 0x08


class IdxFormatError(ValueError):
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
