"""Tiny synthetic IDX datasets for tests: real IDX bytes, class-dependent patterns, no network."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np

from mnist_autoencoder.data.catalog import IDX_NAMES, ROLES, DatasetSpec, declare

NAME = "synthetic"


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def make_digits(n: int, seed: int, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Images whose structure depends on the label: one bright bar per class, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, side, side)).astype(np.float32)
    for i, label in enumerate(labels):
        row = 3 + 2 * int(label)
        images[i, row:row + 3, 4:24] = 255
        images[i, 4:24, row:row + 2] += 120
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_dataset(directory: Path, n_train: int = 600, n_test: int = 100,
                  seed: int = 0, side: int = 28) -> DatasetSpec:
    """Write the four .gz IDX files into ``directory``; return a spec pinning their payloads.

    ``declare(name, spec)`` (or ``register``) adds it to the catalog of this session.
    """
    directory.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = make_digits(n_train, seed, side)
    test_images, test_labels = make_digits(n_test, seed + 1, side)
    arrays = dict(zip(ROLES, (train_images, train_labels, test_images, test_labels)))
    files = {}
    for role, array in arrays.items():
        payload = idx_bytes(array)
        (directory / IDX_NAMES[role]).write_bytes(gzip.compress(payload, mtime=0))
        files[role] = (IDX_NAMES[role], hashlib.sha256(payload).hexdigest())
    return DatasetSpec(files, mirrors=(), train_size=n_train, test_size=n_test)


def register(directory: str | Path, name: str = NAME) -> DatasetSpec:
    """Pin the synthetic files in ``directory`` as dataset ``name`` in the session's catalog."""
    directory = Path(directory)
    files, sizes = {}, {}
    for role in ROLES:
        payload = gzip.decompress((directory / IDX_NAMES[role]).read_bytes())
        files[role] = (IDX_NAMES[role], hashlib.sha256(payload).hexdigest())
        sizes[role] = int.from_bytes(payload[4:8], "big")
    spec = DatasetSpec(files, mirrors=(), train_size=sizes["train_images"],
                       test_size=sizes["test_images"])
    declare(name, spec)
    return spec
