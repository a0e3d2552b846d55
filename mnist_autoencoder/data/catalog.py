"""The dataset catalog: which IDX datasets exist, where to get them, what they must hash to.

Datasets are data, not code: the built-in entries are MNIST and Fashion-MNIST,
and more can be declared in a JSON file, ``data/catalog.json`` or the one named
by ``MNIST_AE_CATALOG`` (``make simulate`` declares its cut of MNIST there, the
tests their synthetic datasets; a user can add any IDX dataset of 28x28 images).
Every file is pinned by the SHA-256 of its decompressed payload, so a mirror
that recompressed the files (Debian's Fashion-MNIST) passes and a corrupted or
tampered one fails.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mnist_autoencoder.errors import UserError
from mnist_autoencoder.storage import write_json_atomic

CATALOG_ENV = "MNIST_AE_CATALOG"
ROLES = ("train_images", "train_labels", "test_images", "test_labels")
IDX_NAMES = MappingProxyType({
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
})


@dataclass(frozen=True)
class DatasetSpec:
    """One IDX dataset: role -> (file name, payload SHA-256), mirrors, and its sizes."""

    files: dict[str, tuple[str, str]]
    mirrors: tuple[str, ...]
    train_size: int
    test_size: int

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> DatasetSpec:
        return cls({role: tuple(value["files"][role]) for role in ROLES},  # in ROLES' order
                   tuple(value.get("mirrors", ())), int(value["train_size"]),
                   int(value["test_size"]))

    def file_names(self) -> dict[str, str]:
        return {role: name for role, (name, _) in self.files.items()}


def idx_spec(payload_sha256: dict[str, str], mirrors: tuple[str, ...], train_size: int,
             test_size: int) -> DatasetSpec:
    """A dataset stored under the four original MNIST file names."""
    return DatasetSpec({role: (IDX_NAMES[role], payload_sha256[role]) for role in ROLES},
                       mirrors, train_size, test_size)


BUILT_IN = MappingProxyType({
    "mnist": idx_spec(
        {
            "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        60_000, 10_000),
    "fashion_mnist": idx_spec(
        {
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        60_000, 10_000),
})


class UnknownDataset(UserError, KeyError):
    """A dataset name that neither the built-in catalog nor ``MNIST_AE_CATALOG`` declares."""


def catalog_file() -> Path:
    """``MNIST_AE_CATALOG``, else ``data/catalog.json`` in the project (``make simulate``
    declares its dataset there)."""
    from mnist_autoencoder.paths import PROJECT_ROOT, location

    value = os.environ.get(CATALOG_ENV, "").strip()
    return Path(value) if value else location("datasets", PROJECT_ROOT)


def datasets() -> MappingProxyType:
    """Every declared dataset: the built-in ones, then those of ``MNIST_AE_CATALOG``."""
    path = catalog_file()
    extra = {}
    if path.is_file():
        extra = {name: DatasetSpec.from_json(value)
                 for name, value in json.loads(path.read_text()).items()}
    return MappingProxyType({**BUILT_IN, **extra})


def get_dataset(name: str) -> DatasetSpec:
    found = datasets()
    if name not in found:
        raise UnknownDataset(f"unknown dataset {name!r}; choose one of {sorted(found)} or "
                             f"declare it in the JSON file named by {CATALOG_ENV}")
    return found[name]


def declare(name: str, spec: DatasetSpec, path: Path | None = None) -> None:
    """Add (or replace) ``name`` in the catalog file (``catalog_file()`` by default)."""
    path = path or catalog_file()
    entries = json.loads(path.read_text()) if path.is_file() else {}
    entries[name] = asdict(spec)
    write_json_atomic(path, entries)
