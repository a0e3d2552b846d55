"""File I/O shared by every stage: content hashes, atomic writes and output manifests.

Every stage writes its outputs through ``atomic_path`` so that a crash never leaves a
partial file under a final name, and describes them with a manifest of SHA-256
hashes so that a later run can tell a valid output from a deleted or damaged one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

CHUNK_BYTES = 1 << 20
_UMASK = os.umask(0)
os.umask(_UMASK)


def sha256_file(path: str | Path) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(value: Any) -> str:
    """Hash a JSON-serialisable value canonically (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return sha256_bytes(text.encode())


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; move it into place only on success.

    The temporary file lives in the same directory so that ``os.replace`` is an
    atomic rename. On any exception the temporary file is removed and ``final`` is
    left exactly as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        tmp.chmod(0o666 & ~_UMASK)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``final``; it becomes ``final`` only on success.

    An existing ``final`` (e.g. a damaged earlier output) is replaced as a whole, so
    readers see either the old complete directory or the new complete one.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        tmp.chmod(0o777 & ~_UMASK)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | Path, value: Any) -> None:
    text = json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"
    write_bytes_atomic(path, text.encode())


def describe_outputs(directory: str | Path, names: list[str]) -> dict[str, Any]:
    """Return the small value a stage hands downstream: where its files are and their hashes.

    ``hash`` combines the per-file hashes, so a downstream cache key that includes it
    changes exactly when some upstream file's content changes.
    """
    directory = Path(directory).resolve()
    files = {name: sha256_file(directory / name) for name in sorted(names)}
    return {"dir": str(directory), "files": files, "hash": sha256_json(files)}


def invalid_outputs(outputs: Mapping[str, Any]) -> list[str]:
    """Return the files of ``describe_outputs``'s value that are missing or changed."""
    directory = Path(outputs["dir"])
    problems = []
    for name, expected in outputs["files"].items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif sha256_file(path) != expected:
            problems.append(f"{path} does not match its recorded SHA-256")
    return problems


def require_valid(outputs: Mapping[str, Any]) -> None:
    """Raise if an upstream output was deleted or damaged since it was recorded."""
    problems = invalid_outputs(outputs)
    if problems:
        raise RuntimeError(
            "Upstream output is no longer valid: " + "; ".join(problems)
            + ". Rerun the flow; the stage that produced it will rebuild it."
        )
