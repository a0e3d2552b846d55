"""Data and artifacts on any filesystem: a remote root (an fsspec URL) mirrored in a scratch folder.

The stages read and write local files, as they always have. With
``--data-dir s3://bucket/data`` they do so in a scratch folder that mirrors the URL
(``Mirror``), and the store is the truth:

- **pull**, when a flow starts: the store's newest *tree* names every published
  file with its SHA-256 and size. Small files are fetched at once; the shards, which
  grow with the data, and other large files when first used (``roots.ensure``: a shard
  read, a stage's outputs checked). Every fetched file is checked
  against its hash before it is moved into place.
- **push**, when the flow ends (also when it fails: what a stage wrote is complete,
  since stages write atomically): the files new or changed since the pull are
  uploaded, then a new tree naming them.

The protocol on the store, which has no atomic rename (``docs/storage.md``)::

    <url>/objects/<sha[:2]>/<sha256>     each file's bytes, under its content's hash
    <url>/trees/<generation>.json        {relative path: [sha256, size]}; the newest wins

A payload is written under its final, content-addressed key first; the tree that
names it is written last, as one small object. A reader trusts only what a tree
names, and checks each hash after the read, so it never sees half a stage, batch or
champion. A writer killed between the two steps leaves objects that no tree names:
invisible, and reused by the next push, which uploads nothing it finds there already.

The scratch folder (``MNIST_AE_SCRATCH``, default ``/tmp/mnist-ae-scratch``, one
subfolder per URL) can be deleted at any time: the next pull fetches it back. Cache
records name files by their scratch path, which is therefore the same on every
machine that leaves ``MNIST_AE_SCRATCH`` alone (or sets it alike).

The state that machines change at once (the registry, the champion pointer, the
manifests) is in the state database, not in a tree (``database``). Two pushes that
change the same file at the same time are refused for the second only where the
store can refuse an existing key (``If-None-Match``, as S3 and moto do); elsewhere
the later tree wins.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mnist_autoencoder.storage import atomic_path, sha256_file, write_json_atomic
from mnist_autoencoder.store import StorageError, call, default_scratch, filesystem

TREES, OBJECTS = "trees", "objects"
STATE = ".mirror.json"  # in the scratch folder: the tree pulled, each file's stat
KEEP_TREES = 20  # older trees are removed by the push that writes a new one
LAZY_BYTES = 1 << 20  # larger files are fetched when first used (``_is_lazy``)
# What this machine's runs alone use, as patterns of paths in a root: leases (make gc),
# Prefect's lock files, and this machine's copy of each champion (the database names the
# champion, the store holds its model by hash: ``lifecycle.registry``).
LOCAL_ONLY = ("leases/*", "locks/*", "models/*/champion/*", "models/*/champion.displaced-*")


def _is_lazy(relative: str, size: int) -> bool:
    """Fetched when first used (``ensure``: a shard read, a stage's outputs checked): the
    shards (base, batches, split assignments), which grow with the data, and any other
    file over ``LAZY_BYTES`` (a corrupted test set, a large input's scores, a report),
    except the raw files, the models and the content indexes, which are read directly."""
    parts = relative.split("/")
    if parts[0] == "shards" or (parts[0] == "snapshots" and "batches" in parts[2:3]):
        return True
    return size > LAZY_BYTES and parts[0] not in ("raw", "models") and "by-content" not in parts


class Mirror:
    """A remote root, mirrored in a local scratch folder; see the module docstring."""

    def __init__(self, url: str, scratch: str | Path | None = None, since_pull: bool = False,
                 overwrite: bool = False):
        self.url = url.rstrip("/")
        self.fs, self.root = filesystem(self.url)
        self.local = Path(scratch) if scratch is not None else default_scratch(self.url)
        # since_pull: push only files written after the pull (a folder shared with
        # other roots, such as Prefect's cache records)
        # overwrite: a file another push changed meanwhile is replaced, not refused (cache
        # records: two records of one key describe the same outputs)
        self.since_pull, self.overwrite = since_pull, overwrite
        self.generation, self.tree = 0, {}
        self.pulled_at = 0
        self.stats: dict[str, list] = {}  # relative path -> [sha, size, mtime_ns]
        # what this process moved: files and bytes fetched (pull and ensure) and uploaded
        self.moved = {"fetched": 0, "fetched_bytes": 0, "uploaded": 0, "uploaded_bytes": 0}

    # ---- calls on the store, retried and explained -----------------------------

    def _call(self, fn: Callable[[], Any], writing: bool = False) -> Any:
        return call(self.url, fn, writing)

    def _key(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def relative(self, path: str | Path) -> str | None:
        """``path``'s place in the tree if it is under the scratch folder, else None."""
        try:
            return Path(path).resolve().relative_to(self.local.resolve()).as_posix()
        except ValueError:
            return None

    def probe(self) -> None:
        """Refuse, in one line, a store this process cannot list and write."""
        bucket = self.root.split("/")[0]
        try:
            self._call(lambda: self.fs.ls(bucket, detail=False, refresh=True))
        except FileNotFoundError:
            raise StorageError(f"{self.url}: the bucket does not exist; create it or fix "
                               "the URL") from None
        key = self._key(".probe", uuid.uuid4().hex)
        self._call(lambda: self.fs.pipe_file(key, b"probe"), writing=True)
        self._call(lambda: self.fs.rm_file(key), writing=True)

    def _exists_quiet(self, key: str) -> bool:
        try:
            return bool(self._call(lambda: self.fs.info(key)))
        except FileNotFoundError:
            return False

    # ---- trees ---------------------------------------------------------------------

    def _generations(self) -> list[int]:
        try:
            names = self._call(lambda: self.fs.ls(self._key(TREES), detail=False,
                                                  refresh=True))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            stem = name.rsplit("/", 1)[-1].removesuffix(".json")
            if stem.isdigit():
                out.append(int(stem))
        return sorted(out)

    def _read_tree(self, generation: int) -> dict[str, list]:
        data = self._call(lambda: self.fs.cat_file(self._key(TREES, f"{generation:012d}.json")))
        return json.loads(data)["files"]

    def newest(self) -> tuple[int, dict[str, list]]:
        generations = self._generations()
        if not generations:
            return 0, {}
        return generations[-1], self._read_tree(generations[-1])

    # ---- pull ------------------------------------------------------------------------

    def _load_state(self) -> None:
        try:
            state = json.loads((self.local / STATE).read_text())
            if state.get("url") == self.url:
                self.stats = state["stats"]
        except (OSError, ValueError, KeyError):
            self.stats = {}

    def _save_state(self) -> None:
        write_json_atomic(self.local / STATE, {"url": self.url, "generation": self.generation,
                                               "stats": self.stats})

    def _current(self, relative: str) -> str | None:
        """The SHA-256 of the local copy, from its recorded stat when unchanged."""
        path = self.local / relative
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        known = self.stats.get(relative)
        if known and known[1] == info.st_size and known[2] == info.st_mtime_ns:
            return known[0]
        digest = sha256_file(path)
        self.stats[relative] = [digest, info.st_size, info.st_mtime_ns]
        return digest

    def pull(self) -> dict[str, int]:
        """Fetch the newest tree's small files that are missing or differ here."""
        self.local.mkdir(parents=True, exist_ok=True)
        self.pulled_at = time.time_ns()
        self._load_state()
        self.generation, self.tree = self.newest()
        fetched = deferred = 0
        for relative, (sha, size) in self.tree.items():
            if _is_lazy(relative, size):
                deferred += 1
                continue
            if self._current(relative) != sha:
                self.fetch(relative)
                fetched += 1
        self._save_state()
        return {"files": len(self.tree), "fetched": fetched, "deferred": deferred}

    def fetch(self, relative: str) -> Path:
        """The tree's ``relative`` file, downloaded, checked against its hash, moved into place."""
        sha, size = self.tree[relative]
        path = self.local / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            self._call(lambda: self.fs.get_file(self._key(OBJECTS, sha[:2], sha), str(tmp)))
            got = sha256_file(tmp)
            if got != sha or os.path.getsize(tmp) != size:
                raise StorageError(f"{self.url}/{OBJECTS}/{sha[:2]}/{sha}: the object for "
                                   f"{relative} does not match its hash (got {got[:12]}); "
                                   "the store was changed outside this project")
        info = path.stat()
        self.stats[relative] = [sha, info.st_size, info.st_mtime_ns]
        self.moved["fetched"] += 1
        self.moved["fetched_bytes"] += size
        return path

    def ensure(self, path: Path) -> bool:
        """Fetch ``path`` (a file or a folder, under the scratch folder) where the store has
        it and this copy does not; True if anything was fetched. A path the pulled tree
        lacks is looked up in the store's newest tree (another process, a Dask worker,
        may have published it since)."""
        relative = self.relative(path)
        if relative is None:
            return False
        prefix = "" if relative == "." else relative + "/"

        def wanted() -> list[str]:
            return [r for r in self.tree if r == relative or r.startswith(prefix)]

        if not wanted() and not Path(path).exists():
            generation, newest = self.newest()
            if generation > self.generation:
                self.tree = newest | self.tree  # what this process published stays its own
        fetched = [self.fetch(r) for r in wanted() if self._current(r) != self.tree[r][0]]
        if fetched:
            self._save_state()
        return bool(fetched)

    # ---- push ----------------------------------------------------------------------

    def _local_files(self) -> Iterator[str]:
        """The files a push considers: not hidden ones (locks, this machine's stamps,
        checkpoints, temporaries), nor what only this machine's runs use (``LOCAL_ONLY``)."""
        for parent, folders, files in os.walk(self.local):
            folders[:] = [f for f in folders if not f.startswith(".")]
            for name in files:
                relative = Path(parent, name).relative_to(self.local).as_posix()
                if not name.startswith(".") and not any(fnmatch.fnmatch(relative, pattern)
                                                        for pattern in LOCAL_ONLY):
                    yield relative

    def changed(self) -> dict[str, list]:
        """Local files the pulled tree lacks or holds with other bytes: {path: [sha, size]}."""
        out = {}
        for relative in self._local_files():
            path = self.local / relative
            if self.since_pull and path.stat().st_mtime_ns < self.pulled_at:
                continue
            sha = self._current(relative)
            if sha is not None and self.tree.get(relative, [None])[0] != sha:
                out[relative] = [sha, path.stat().st_size]
        return out

    def push(self) -> dict[str, int]:
        """Upload what changed here (objects first), then a tree naming it (last)."""
        changed = self.changed()
        if not changed:
            self._save_state()
            return {"files": 0, "uploaded": 0}
        uploaded = 0
        for relative, (sha, size) in changed.items():
            key = self._key(OBJECTS, sha[:2], sha)
            if not self._exists_quiet(key):
                self._call(lambda k=key, r=relative: self.fs.put_file(str(self.local / r), k),
                           writing=True)
                uploaded += 1
                self.moved["uploaded"] += 1
                self.moved["uploaded_bytes"] += size
        for _attempt in range(10):
            generation, remote = self.newest()
            if generation != self.generation:  # another push landed since the pull
                clash = [r for r in changed if remote.get(r) not in (self.tree.get(r),
                                                                     changed[r])]
                if clash and not self.overwrite:
                    raise StorageError(
                        f"{self.url}: {clash[0]} was changed by another run since this run "
                        "read it; nothing of this run was published; rerun it (concurrent "
                        "writes to the same state across machines wait for the database)")
            tree = remote | changed
            if self._write_tree(generation + 1, tree):
                self.generation, self.tree = generation + 1, tree
                break
        else:
            raise StorageError(f"{self.url}: could not publish a tree after 10 attempts "
                               "(other runs kept publishing); rerun")
        self._save_state()
        self._prune()
        return {"files": len(changed), "uploaded": uploaded}

    def _write_tree(self, generation: int, tree: dict[str, list]) -> bool:
        """Write tree ``generation`` unless it exists (False: another push took it)."""
        key = self._key(TREES, f"{generation:012d}.json")
        body = json.dumps({"generation": generation, "files": tree}, sort_keys=True).encode()
        try:
            self._call(lambda: self.fs.pipe_file(key, body, IfNoneMatch="*"), writing=True)
        except FileExistsError:  # s3fs's name for S3's PreconditionFailed
            return False
        except TypeError:  # a filesystem without conditional writes
            if self._exists_quiet(key):
                return False
            self._call(lambda: self.fs.pipe_file(key, body), writing=True)
        return True

    def _prune(self) -> None:
        for generation in self._generations()[:-KEEP_TREES]:
            with contextlib.suppress(StorageError, FileNotFoundError):
                self._call(lambda g=generation: self.fs.rm_file(
                    self._key(TREES, f"{g:012d}.json")), writing=True)


def probe(url: str) -> None:
    """Refuse, in one line, a storage URL this process cannot list and write."""
    Mirror(url).probe()
