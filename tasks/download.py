"""download: fetch the four IDX files of a dataset, verify them, store them atomically.

Every file is checked against a pinned SHA-256 of its *decompressed* payload, so a
mirror that recompressed the files (Debian's Fashion-MNIST) passes and a corrupted
or tampered one fails. Bytes that fail verification are never written under the
final name; a file already present and valid is not fetched again.
"""

from __future__ import annotations

import gzip
import http.client
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from tasks import paths
from tasks.caching import stage_task_options
from tasks.storage import describe_outputs, sha256_bytes, write_bytes_atomic

ROLES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class DatasetSpec:
    """Files of an IDX dataset: role -> (file name, SHA-256 of the decompressed payload)."""

    files: dict[str, tuple[str, str]]
    mirrors: tuple[str, ...]


_IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def _spec(payload_sha256: dict[str, str], mirrors: tuple[str, ...]) -> DatasetSpec:
    return DatasetSpec({role: (_IDX_NAMES[role], payload_sha256[role]) for role in ROLES}, mirrors)


DATASETS: dict[str, DatasetSpec] = {
    "mnist": _spec(
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
    ),
    "fashion_mnist": _spec(
        {
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    ),
}


class DownloadError(RuntimeError):
    """No source delivered a verified copy of a file."""


class VerificationError(ValueError):
    """Bytes were fetched but are not the pinned file."""


# Errors worth retrying on the same source; anything else moves on to the next one.
TRANSIENT_ERRORS = (
    socket.timeout,
    TimeoutError,
    ConnectionError,
    http.client.IncompleteRead,
    http.client.RemoteDisconnected,
)


def source_bases(dataset: str, source: str | None) -> list[str]:
    """Base locations to try, in order: ``source`` alone if given, else the public mirrors."""
    if not source:
        return list(DATASETS[dataset].mirrors)
    if source.startswith(("http://", "https://")):
        return [source if source.endswith("/") else source + "/"]
    return [str(local_source_dir(source))]


def local_source_dir(source: str) -> Path:
    """Resolve a local directory or ``file://`` URL given as ``source``."""
    if source.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(source).path))
    return paths.resolve_dir(source)


def verified_payload(data: bytes, expected_sha256: str, name: str) -> bytes:
    """Decompress ``data`` and check the payload's SHA-256; return the payload."""
    try:
        payload = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise VerificationError(f"{name}: not a complete gzip file ({exc})") from exc
    actual = sha256_bytes(payload)
    if actual != expected_sha256:
        raise VerificationError(
            f"{name}: payload SHA-256 {actual[:16]}... does not match "
            f"the pinned {expected_sha256[:16]}..."
        )
    return payload


def read_url(url: str, timeout: float) -> bytes:
    """Read a whole HTTP(S) response, refusing short bodies."""
    request = urllib.request.Request(url, headers={"User-Agent": "mnist-autoencoder"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
        expected = response.headers.get("Content-Length")
    if expected is not None and int(expected) != len(body):
        raise http.client.IncompleteRead(body, int(expected) - len(body))
    return body


def fetch_with_retries(
    url: str,
    *,
    timeout: float = 30.0,
    attempts: int = 4,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> bytes:
    """Fetch ``url``, retrying transient failures with exponential backoff and full jitter."""
    rng = rng or random.Random()
    for attempt in range(1, attempts + 1):
        try:
            return read_url(url, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429 or attempt == attempts:
                raise
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, TRANSIENT_ERRORS + (OSError,)) or attempt == attempts:
                raise
        except TRANSIENT_ERRORS:
            if attempt == attempts:
                raise
        sleep(rng.uniform(0, backoff * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")


def fetch_file(base: str, name: str, **fetch_options: Any) -> bytes:
    if base.startswith(("http://", "https://")):
        return fetch_with_retries(urllib.parse.urljoin(base, name), **fetch_options)
    return (Path(base) / name).read_bytes()


def is_valid_file(path: Path, expected_sha256: str) -> bool:
    if not path.is_file():
        return False
    try:
        verified_payload(path.read_bytes(), expected_sha256, path.name)
    except VerificationError:
        return False
    return True


def download_dataset(
    dataset: str,
    source: str | None,
    raw_dir: Path,
    log: Callable[[str], None] = print,
    **fetch_options: Any,
) -> dict[str, Any]:
    """Make ``raw_dir`` hold the four verified files of ``dataset``; return their description."""
    spec = DATASETS[dataset]
    bases = source_bases(dataset, source)
    for role, (name, expected) in spec.files.items():
        target = raw_dir / name
        if is_valid_file(target, expected):
            log(f"{name}: present and verified")
            continue
        failures = []
        for base in bases:
            started = time.perf_counter()
            try:
                data = fetch_file(base, name, **fetch_options)
                verified_payload(data, expected, name)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                failures.append(f"{base}{'' if base.endswith('/') else '/'}{name}: {exc}")
                log(f"{name}: {base} failed ({exc}); trying the next source")
                continue
            write_bytes_atomic(target, data)
            log(f"{name}: {len(data) / 1e6:.1f} MB from {base} in "
                f"{time.perf_counter() - started:.1f} s, verified")
            break
        else:
            raise DownloadError(
                f"Could not get a verified copy of {name} ({dataset}, {role}). Tried:\n  "
                + "\n  ".join(failures)
                + "\nFix: check the network, or pass --source with a directory or URL "
                "holding the original files (e.g. --source ../shared/data/mnist)."
            )
    return describe_outputs(raw_dir, [name for name, _ in spec.files.values()])


MODULES = ("tasks.download", "tasks.storage")


@task(**stage_task_options("download", MODULES), retries=2, retry_delay_seconds=[5, 30])
def download(dataset: str, source: str | None, data_dir: str) -> dict[str, Any]:
    """Fetch and verify the raw IDX files; return ``{dir, files, hash}``."""
    return download_dataset(dataset, source, paths.raw_dir(Path(data_dir), dataset),
                            log=get_run_logger().info)
