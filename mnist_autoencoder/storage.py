"""File I/O in one place: content hashes, atomic writes, output manifests, values to files.

Every output is written through ``atomic_path`` or ``atomic_dir`` so that a crash
never leaves a partial file under a final name, and described with a manifest of
SHA-256 hashes so that a later run can tell a valid output from a deleted or
damaged one. ``write_outputs`` turns the values a computation returns into files,
chosen by each name's suffix; computations themselves never open a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

CHUNK_BYTES = 1 << 20
_UMASK: int | None = None


def _umask() -> int:
    """The process umask, read once when first needed, never by changing it at import.

    Linux reports it in /proc/self/status; elsewhere it is read by setting it and
    putting it straight back (the only portable way), but only on the first write.
    """
    global _UMASK
    if _UMASK is None:
        try:
            with open("/proc/self/status", encoding="ascii") as status:
                line = next(x for x in status if x.startswith("Umask:"))
            _UMASK = int(line.split()[1], 8)
        except (OSError, StopIteration, ValueError, IndexError):
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
    return _UMASK


# path -> (the stat fields below, digest): files hashed by this process and unchanged since
_HASHED: dict[str, tuple[tuple[int, ...], str]] = {}


def _identity(path: str | Path) -> tuple[int, ...]:
    """What changes whenever a file's bytes do: ctime is set by the kernel on every write
    (no tool can set it back), so an unchanged stat means unchanged bytes, as in git's index."""
    info = os.stat(path)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def sha256_file(path: str | Path) -> str:
    """Return the hex SHA-256 of a file's bytes.

    A file this process already hashed is hashed again only if its stat changed:
    every stage re-checks the 180 MB of splits it reads, 0.28 s each time.
    """
    key, identity = str(Path(path).resolve()), _identity(path)
    known = _HASHED.get(key)
    if known is not None and known[0] == identity:
        return known[1]
    started = time.time_ns()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    # Remembered only when not written to while read, nor in the last 50 ms before: a write
    # in the same tick of the kernel's coarse clock could leave the stat unchanged.
    if identity == _identity(path) and identity[-1] < started - 50_000_000:
        _HASHED[key] = (identity, digest.hexdigest())
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
        tmp.chmod(0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
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
        tmp.chmod(0o777 & ~_umask())
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the duration.

    ``flock`` locks die with their process, so a killed holder never blocks others.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | Path, value: Any) -> None:
    text = json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"
    write_bytes_atomic(path, text.encode())


class Outputs(TypedDict):
    """What a stage hands downstream: where its files are, their hashes, and one hash of all.

    Stages may add small values of their own (a summary, metrics) beside these keys.
    """

    dir: str
    files: dict[str, str]
    hash: str


def describe_outputs(directory: str | Path, names: list[str]) -> Outputs:
    """Return the small value a stage hands downstream: where its files are and their hashes.

    ``hash`` combines the per-file hashes, so a downstream cache key that includes it
    changes exactly when some upstream file's content changes.
    """
    directory = Path(directory).resolve()
    files = {name: sha256_file(directory / name) for name in sorted(names)}
    return Outputs(dir=str(directory), files=files, hash=sha256_json(files))


def write_npz(path: str | Path, arrays: Mapping[str, Any]) -> None:
    """An uncompressed .npz whose bytes depend only on the arrays (fixed zip timestamps).

    Rebuilding identical outputs then yields identical hashes, which keeps the
    caches of everything downstream valid.
    """
    import numpy as np

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asarray(array, order="C"),
                                        allow_pickle=False)


def write_value(path: Path, value: Any) -> None:
    """Write one output value in the format its file name asks for.

    ``.json``: JSON; ``.csv``: a DataFrame without its index; ``.parquet``: a
    DataFrame or an Arrow table; ``.npz``: a mapping of arrays; ``.md``/``.html``:
    text; ``.png``: bytes; anything else with a ``save`` method (Keras models).
    """
    suffix = path.suffix
    if suffix == ".json":
        write_json_atomic(path, value)
    elif suffix == ".npz":
        write_npz(path, value)
    elif isinstance(value, bytes):
        write_bytes_atomic(path, value)
    elif isinstance(value, str):
        write_bytes_atomic(path, value.encode())
    elif suffix == ".csv":
        with atomic_path(path) as tmp:
            value.to_csv(tmp, index=False)
    elif suffix == ".parquet" and hasattr(value, "to_parquet"):
        with atomic_path(path) as tmp:
            value.to_parquet(tmp, index=False)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        with atomic_path(path) as tmp:
            pq.write_table(value, tmp, compression="zstd", row_group_size=16384)
    elif hasattr(value, "save"):
        value.save(path)  # Keras checks the suffix; it writes into atomic_dir's temporary
    else:
        raise TypeError(f"cannot write a {type(value).__name__} to {path.name}")


def write_outputs(directory: str | Path, outputs: Mapping[str, Any]) -> Outputs:
    """Write ``{file name: value}`` as one directory that appears whole or not at all.

    Files are written two at a time (NumPy's and Arrow's writers release the GIL:
    the splits' NPZ and Parquet together took 1.0 s instead of 1.5 s); Keras models,
    whose saving is not meant for threads, one after the other first. Returns the
    ``describe_outputs`` value of what was written.
    """
    import concurrent.futures

    with atomic_dir(directory) as tmp:
        models = {name: value for name, value in outputs.items() if hasattr(value, "save")
                  and not isinstance(value, (str, bytes))}
        for name, value in models.items():
            write_value(tmp / name, value)
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            for done in [pool.submit(write_value, tmp / name, value)
                         for name, value in outputs.items() if name not in models]:
                done.result()
    return describe_outputs(directory, list(outputs))


def read_value(path: str | Path) -> Any:
    """Read a file that ``write_value`` wrote, by its suffix (NPZ: a dict of arrays)."""
    path = Path(path)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".npz":
        import numpy as np

        with np.load(path, allow_pickle=False) as archive:
            return dict(archive)
    if path.suffix in (".csv", ".parquet"):
        import pandas as pd

        return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    return path.read_bytes()


def write_parquet_stream(path: str | Path, tables: Iterable[Any],
                         dictionary: Sequence[str] = ()) -> int:
    """Append each Arrow table to one Parquet file (zstd) as it comes; return the rows.

    Writing happens on a second thread while the next table is computed (pyarrow
    releases the GIL), one table behind, in order. Only the ``dictionary`` columns
    are dictionary-encoded: trying it on float columns was a third of the time.
    No table (an empty shard): no file.
    """
    import concurrent.futures

    import pyarrow.parquet as pq

    writer, pending, rows = None, None, 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        for table in tables:
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd",
                                          use_dictionary=list(dictionary))
            if pending is not None:
                pending.result()
            pending = pool.submit(writer.write_table, table)
            rows += table.num_rows
        if pending is not None:
            pending.result()
    if writer is not None:
        writer.close()
    return rows


def invalid_outputs(outputs: Mapping[str, Any], fetch: bool = True) -> list[str]:
    """Return the files of ``describe_outputs``'s value that are missing or changed.

    Where the folder is in a store's mirror (``mirror``), its files are fetched first;
    with ``fetch=False`` (a cache record checked, nothing read yet) a file not fetched
    is trusted if the store's tree records the expected hash (each fetch checks it).
    """
    from mnist_autoencoder.roots import ensure, stored_sha256  # (roots uses this module)

    directory = Path(outputs["dir"])
    if fetch:
        ensure(directory)  # from the store, where the folder is in a URL's mirror
    problems = []
    for name, expected in outputs["files"].items():
        path = directory / name
        if not path.is_file():
            if not fetch and stored_sha256(path) == expected:
                continue
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


def read_indexed(path: str | Path, names: Sequence[str] = ()) -> dict[str, Any] | None:
    """The output description an index file (``paths.index_path``) records, if still intact.

    ``names``: the files the caller needs, described afresh (their hashes then go into
    downstream keys); empty: every recorded file. None when the index is missing,
    unreadable, or names an output that was deleted or changed.
    """
    try:
        recorded = json.loads(Path(path).read_text())
        directory, files = recorded["dir"], recorded["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if invalid_outputs(recorded):
        return None
    return describe_outputs(directory, list(names) or list(files))


def read_table(path: str | Path, error: type[Exception], fix: str):
    """A Parquet table of state as a DataFrame (empty when the file does not exist yet).

    A file that cannot be read (truncated by a crash or a full disk) raises ``error``
    with one line naming the file, what failed and ``fix``.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError or others by damage
        raise error(f"{path} cannot be read ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else 'damaged'}); {fix}") from exc
