"""Fetch the four IDX files of a dataset, verify them, store them atomically.

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
from pathlib import Path
from typing import Any

from mnist_autoencoder import paths
from mnist_autoencoder.data.catalog import get_dataset
from mnist_autoencoder.errors import DataError, UserError
from mnist_autoencoder.paths import is_url
from mnist_autoencoder.storage import describe_outputs, sha256_bytes, write_bytes_atomic
from mnist_autoencoder.store import is_remote, read_bytes


class DownloadError(UserError, RuntimeError):
    """No source delivered a verified copy of a file."""


class VerificationError(DataError):
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
        return list(get_dataset(dataset).mirrors)
    if is_remote(source):  # http(s), s3, ...
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
    if is_remote(base) and not is_url(base):  # a store (s3://...): retried there
        return read_bytes(base.rstrip("/") + "/" + name)
    if is_url(base):
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
    spec = get_dataset(dataset)
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

