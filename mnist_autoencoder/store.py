"""A store behind a URL (``s3://bucket/prefix`` or any scheme fsspec knows): its filesystem,
calls on it retried and explained in one line, and single objects read from it.

``mirror`` builds the publish protocol on these; ``--input``, ``--batch`` and ``--source``
read through ``fetched`` and ``read_bytes``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnist_autoencoder.errors import UserError
from mnist_autoencoder.storage import atomic_dir, atomic_path, write_json_atomic

SCRATCH_ENV = "MNIST_AE_SCRATCH"
DATA_DIR_ENV, ARTIFACTS_DIR_ENV = "MNIST_AE_DATA_DIR", "MNIST_AE_ARTIFACTS_DIR"
DEFAULT_SCRATCH = "/tmp/mnist-ae-scratch"
RETRIES = (1.0, 3.0)  # seconds between our attempts (s3fs retries inside each too)


class StorageError(UserError, OSError):
    """The store cannot be used as given: scheme, bucket, credentials, permissions, network."""


def is_remote(location: str | os.PathLike) -> bool:
    """A URL other than file:// (a local path, or a file:// URL, is used as is)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def default_scratch(url: str) -> Path:
    root = Path(os.environ.get(SCRATCH_ENV) or DEFAULT_SCRATCH)
    return root / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


def _explain(url: str, error: BaseException, writing: bool) -> str:
    """One line for a failed call on the store (s3fs keeps the service's code in the cause)."""
    name = type(error).__name__
    text = f"{error} {error.__cause__ or ''}".strip()
    if "NoCredentials" in name or "Unable to locate credentials" in text:
        return (f"{url}: no credentials for the store; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)")
    if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return f"{url}: the bucket does not exist; create it or fix the URL"
    if isinstance(error, PermissionError) or "AccessDenied" in text or "Forbidden" in text \
            or "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text:
        if any(s in text for s in ("InvalidAccessKeyId", "SignatureDoesNotMatch",
                                   "security token", "InvalidClientTokenId")):
            return (f"{url}: the store refused the credentials ({name}); check "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        what = "write to" if writing else "read"
        return (f"{url}: access denied: cannot {what} this prefix (a read-only prefix, or "
                "credentials without the permission); give a prefix these credentials "
                "can write")
    return (f"{url}: the store could not be reached after {len(RETRIES) + 1} attempts "
            f"({name}: {str(error).splitlines()[0][:200] if str(error) else 'no detail'}); check "
            "AWS_ENDPOINT_URL and the network")


def _transient(error: BaseException) -> bool:
    text = f"{type(error).__name__} {error}"
    if isinstance(error, (FileNotFoundError, PermissionError, StorageError)):
        return False
    return any(s in text for s in ("Connect", "Timeout", "timed out", "Connection",
                                   "EndpointConnection", "ServiceUnavailable", "SlowDown",
                                   "InternalError", "reset by peer", "Broken pipe"))


def call(url: str, fn: Callable[[], Any], writing: bool = False) -> Any:
    """``fn()`` on the store of ``url``, retried with backoff on network errors; a failure
    becomes one line. FileNotFoundError and FileExistsError pass through (the caller
    knows what a missing key, or a conditional write refused, means)."""
    for pause in (*RETRIES, None):
        try:
            return fn()
        except FileNotFoundError as error:
            if "NoSuchBucket" in str(error) or "bucket does not exist" in str(error):
                raise StorageError(_explain(url, error, writing)) from None
            raise
        except FileExistsError:  # a conditional write refused (If-None-Match)
            raise
        except Exception as error:  # noqa: BLE001 - translated into one line below
            if _transient(error) and pause is not None:
                time.sleep(pause)
                continue
            raise StorageError(_explain(url, error, writing)) from None
    raise AssertionError("unreachable")


def filesystem(url: str):
    """The fsspec filesystem of ``url`` and the path inside it; refused in one line if the
    scheme is unknown or its library is missing."""
    import fsspec

    scheme = url.split("://", 1)[0]
    try:
        fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True)
    except ValueError as error:
        if "Protocol not known" in str(error) or "not known" in str(error):
            raise StorageError(f"{url}: unknown storage scheme {scheme!r}; give a local path "
                               "or a URL fsspec knows (s3://, gs://, az://, ...)") from None
        raise StorageError(f"{url}: {error}") from None
    except ImportError as error:
        raise StorageError(f"{url}: the {scheme}:// scheme needs a library that is not "
                           f"installed ({error}); pip install it") from None
    return fs, root.rstrip("/")


def fetched(url: str) -> Path:
    """A store's file or folder (``--input``, ``--batch``), copied into the scratch folder
    once per version: the same local path on every machine, so that the tasks (a Dask
    worker's too) each fetch it themselves. Refused in one line if it does not exist."""
    import shutil

    fs, root = filesystem(url)
    try:
        info = call(url, lambda: fs.info(root))
    except FileNotFoundError:
        raise StorageError(f"{url}: no such object or prefix in the store") from None
    folder = default_scratch(url) / "input"
    target, stamp = folder / root.rsplit("/", 1)[-1], folder.parent / "input.json"
    version = {k: str(info.get(k)) for k in ("type", "size", "ETag", "LastModified")}
    if info["type"] == "directory":  # a prefix: its listing is its version
        listing = call(url, lambda: fs.find(root, detail=True))
        version["files"] = sorted((k, str(v.get("ETag")), v.get("size")) for k, v in
                                  listing.items())
    try:
        if json.loads(stamp.read_text()) == version and target.exists():
            return target
    except (OSError, ValueError):
        pass
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if info["type"] == "directory":
        with atomic_dir(target) as tmp:
            for key in listing:
                inside = tmp / Path(key).relative_to(root)
                inside.parent.mkdir(parents=True, exist_ok=True)
                call(url, lambda k=key, t=inside: fs.get_file(k, str(t)))
    else:
        with atomic_path(target) as tmp:
            call(url, lambda: fs.get_file(root, str(tmp)))
    write_json_atomic(stamp, version)
    return target


def read_bytes(url: str) -> bytes:
    """One object of a store (a dataset's file under ``--source s3://...``)."""
    fs, root = filesystem(url)
    return call(url, lambda: fs.cat_file(root))
