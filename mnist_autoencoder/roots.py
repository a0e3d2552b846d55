"""The mirrors a process has open, and the flows' and tasks' ways of opening them.

A flow opens the mirrors of its storage URLs (``local_roots``: pulled when it starts,
pushed when it ends); a task on a Dask worker, which has none open, opens its own
(``task_roots``). While one is open, the core asks it for files it is about to read
(``ensure``), for a hash of a file not fetched yet (``stored_sha256``), for a file's
place in the store (``published_url``), or to publish now (``publish``); with none
open, each of these is a no-op and local folders are used as they are.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnist_autoencoder.mirror import OBJECTS, Mirror
from mnist_autoencoder.storage import sha256_file
from mnist_autoencoder.store import ARTIFACTS_DIR_ENV, DATA_DIR_ENV, is_remote

_OPEN: list[Mirror] = []
# What the mirrors of this process moved, one line each, as they close (``local_roots``
# clears it when a flow starts; the command line prints it under the flow's summary).
TRANSFERS: list[str] = []


def _holder(path: str | Path) -> tuple[Mirror, str] | None:
    """The open mirror whose scratch folder holds ``path``, and its place in the tree."""
    for mirror in _OPEN:
        relative = mirror.relative(path)
        if relative is not None:
            return mirror, relative
    return None


def ensure(path: str | Path) -> None:
    """Make ``path`` present locally if an open mirror's tree has it (no-op otherwise)."""
    if not _OPEN or Path(path).is_file():
        return
    for mirror in _OPEN:
        mirror.ensure(Path(path))


def stored_sha256(path: str | Path) -> str | None:
    """The SHA-256 an open mirror's tree records for ``path`` (a file of its scratch folder
    that may not be fetched yet), or None: what a shard is verified against without
    fetching its pixels."""
    held = _holder(path)
    if held is None or held[1] not in held[0].tree:
        return None
    return held[0].tree[held[1]][0]


@contextlib.contextmanager
def mirrored(url: str, scratch: str | Path | None = None, **options: Any) -> Iterator[Mirror]:
    """A mirror of ``url``: probed, pulled, open for ``ensure``; pushed when the block ends,
    also when it fails (what a stage wrote is complete)."""
    mirror = Mirror(url, scratch, **options)
    started = time.perf_counter()
    mirror.probe()
    mirror.pull()
    pulled = time.perf_counter() - started
    _OPEN.append(mirror)
    try:
        yield mirror
    finally:
        _OPEN.remove(mirror)
        started = time.perf_counter()
        mirror.push()
        TRANSFERS.append(f"{mirror.url}: tree {mirror.generation} of {len(mirror.tree)} files; "
                         f"fetched {mirror.moved['fetched']} "
                         f"({mirror.moved['fetched_bytes'] / 1e6:.1f} MB), uploaded "
                         f"{mirror.moved['uploaded']} ({mirror.moved['uploaded_bytes'] / 1e6:.1f}"
                         f" MB); pull {pulled:.1f} s, push {time.perf_counter() - started:.1f} s")


def publish(path: str | Path) -> None:
    """Push now the open mirror that holds ``path`` (no-op for a local folder): before an
    event tells other machines about what was just written (a new snapshot)."""
    held = _holder(path)
    if held is not None:
        held[0].push()


def published_url(path: str | Path) -> str:
    """Where a file of an open mirror's scratch folder is in the store once pushed: its
    object's URL (the content's hash names it); a local path as it is."""
    path = Path(path)
    held = _holder(path)
    if held is None:
        return str(path)
    sha = sha256_file(path) if path.is_file() else stored_sha256(path)
    return f"{held[0].url}/{OBJECTS}/{sha[:2]}/{sha}"


@contextlib.contextmanager
def task_roots() -> Iterator[None]:
    """For a task on a Dask worker, which has no mirror open: the mirrors of the URLs in
    ``MNIST_AE_DATA_DIR`` and ``MNIST_AE_ARTIFACTS_DIR`` (set on every worker), pulled now
    and pushed when the task's block ends; where a mirror is open (the flow's own process)
    or the roots are local, nothing. So a worker needs nothing from the disk of the
    machine that submitted the task."""
    urls = [os.environ.get(name) or "" for name in (DATA_DIR_ENV, ARTIFACTS_DIR_ENV)]
    if _OPEN or not any(is_remote(url) for url in urls):
        yield
        return
    with contextlib.ExitStack() as stack:
        for url in urls:
            if is_remote(url):
                stack.enter_context(mirrored(url))
        yield


@contextlib.contextmanager
def local_roots(data_dir: str, artifacts_dir: str) -> Iterator[tuple[str, str]]:
    """The local folders a flow works in: each root itself when local; for a URL, its
    scratch mirror (pulled now, pushed when the block ends), and with a remote artifacts
    root, Prefect's cache records mirrored under ``<artifacts>/.prefect-cache`` (so that a
    record written on one machine is a hit on another). Pushed in the order data,
    artifacts, records: nothing is named before it is published."""
    from mnist_autoencoder.paths import cache_dir

    TRANSFERS.clear()
    with contextlib.ExitStack() as stack:
        if is_remote(artifacts_dir):
            stack.enter_context(mirrored(artifacts_dir.rstrip("/") + "/.prefect-cache",
                                         cache_dir(), since_pull=True, overwrite=True))
        local = {}
        for name, root in (("artifacts", artifacts_dir), ("data", data_dir)):
            local[name] = str(stack.enter_context(mirrored(root)).local) \
                if is_remote(root) else root
        yield local["data"], local["artifacts"]
