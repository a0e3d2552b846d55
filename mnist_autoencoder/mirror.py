"""Data and artifacts on any filesystem: a remote root (an fsspec URL) mirrored in a scratch folder.

The stages read and write local files, as they always have. With
``--data-dir s3://bucket/data`` they do so in a scratch folder that mirrors the URL
(``Mirror``), and the store is the truth:

- **pull**, when a flow starts: the store's newest *tree* names every published
  file with its SHA-256 and size. Small files are fetched at once; the shards, which
  grow with the data, and other large files when first used (``ensure``: a shard
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

Not yet safe across machines (the database issue): two pushes that change the same
file at the same time (the registry, the champion, a snapshot manifest) are refused
for the second only where the store can refuse an existing key (``If-None-Match``,
as S3 and moto do); elsewhere the later tree wins.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mnist_autoencoder.errors import UserError
from mnist_autoencoder.storage import atomic_dir, atomic_path, sha256_file, write_json_atomic

SCRATCH_ENV = "MNIST_AE_SCRATCH"
DATA_DIR_ENV, ARTIFACTS_DIR_ENV = "MNIST_AE_DATA_DIR", "MNIST_AE_ARTIFACTS_DIR"
DEFAULT_SCRATCH = "/tmp/mnist-ae-scratch"
TREES, OBJECTS = "trees", "objects"
STATE = ".mirror.json"  # in the scratch folder: the tree pulled, each file's stat
KEEP_TREES = 20  # older trees are removed by the push that writes a new one
LAZY_BYTES = 1 << 20  # larger files are fetched when first used (``_is_lazy``)
# Top folders of a root that hold what this machine's runs alone use: leases (make gc),
# Prefect's lock files.
LOCAL_ONLY = ("leases", "locks")
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


def _is_lazy(relative: str, size: int) -> bool:
    """Fetched when first used (``ensure``: a shard read, a stage's outputs checked): the
    shards (base, batches, split assignments), which grow with the data, and any other
    file over ``LAZY_BYTES`` (a corrupted test set, a large input's scores, a report),
    except the raw files, the models and the content indexes, which are read directly."""
    parts = relative.split("/")
    if parts[0] == "shards" or (parts[0] == "snapshots" and "batches" in parts[2:3]):
        return True
    return size > LAZY_BYTES and parts[0] not in ("raw", "models") and "by-content" not in parts


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
        """``fn()``, retried with backoff on network errors; a failure becomes one line.
        FileNotFoundError and FileExistsError pass through (the caller knows what a
        missing key, or a conditional write refused, means)."""
        for pause in (*RETRIES, None):
            try:
                return fn()
            except FileNotFoundError as error:
                if "NoSuchBucket" in str(error) or "bucket does not exist" in str(error):
                    raise StorageError(_explain(self.url, error, writing)) from None
                raise
            except FileExistsError:  # a conditional write refused (If-None-Match)
                raise
            except Exception as error:  # noqa: BLE001 - translated into one line below
                if _transient(error) and pause is not None:
                    time.sleep(pause)
                    continue
                raise StorageError(_explain(self.url, error, writing)) from None
        raise AssertionError("unreachable")

    def _key(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

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
        try:
            relative = Path(path).resolve().relative_to(self.local.resolve()).as_posix()
        except ValueError:
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
                if not name.startswith(".") and relative.split("/")[0] not in LOCAL_ONLY:
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
        for relative, (sha, _size) in changed.items():
            key = self._key(OBJECTS, sha[:2], sha)
            if not self._exists_quiet(key):
                self._call(lambda k=key, r=relative: self.fs.put_file(str(self.local / r), k),
                           writing=True)
                uploaded += 1
                self.moved["uploaded"] += 1
                self.moved["uploaded_bytes"] += _size
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


# ---- the mirrors a process has open: what ``ensure`` consults -------------------------

_OPEN: list[Mirror] = []


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
    for mirror in _OPEN:
        try:
            relative = Path(path).resolve().relative_to(mirror.local.resolve()).as_posix()
        except ValueError:
            continue
        if relative in mirror.tree:
            return mirror.tree[relative][0]
    return None


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


# What the mirrors of this process moved, one line each, as they close (``local_roots``
# clears it when a flow starts; the flows print it under their summary).
TRANSFERS: list[str] = []


def publish(path: str | Path) -> None:
    """Push now the open mirror that holds ``path`` (no-op for a local folder): before an
    event tells other machines about what was just written (a new snapshot)."""
    for mirror in _OPEN:
        try:
            Path(path).resolve().relative_to(mirror.local.resolve())
        except ValueError:
            continue
        mirror.push()


def published_url(path: str | Path) -> str:
    """Where a file of an open mirror's scratch folder is in the store once pushed: its
    object's URL (the content's hash names it); a local path as it is."""
    path = Path(path)
    for mirror in _OPEN:
        try:
            path.resolve().relative_to(mirror.local.resolve())
        except ValueError:
            continue
        sha = sha256_file(path) if path.is_file() else stored_sha256(path)
        return f"{mirror.url}/{OBJECTS}/{sha[:2]}/{sha}"
    return str(path)


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


def fetched(url: str) -> Path:
    """A store's file or folder (``--input``, ``--batch``), copied into the scratch folder
    once per version: the same local path on every machine, so that the tasks (a Dask
    worker's too) each fetch it themselves. Refused in one line if it does not exist."""
    reader = Mirror(url, default_scratch(url) / "input")
    try:
        info = reader._call(lambda: reader.fs.info(reader.root))
    except FileNotFoundError:
        raise StorageError(f"{url}: no such object or prefix in the store") from None
    target = reader.local / reader.root.rsplit("/", 1)[-1]
    stamp = reader.local.parent / "input.json"
    version = {k: str(info.get(k)) for k in ("type", "size", "ETag", "LastModified")}
    if info["type"] == "directory":  # a prefix: its listing is its version
        listing = reader._call(lambda: reader.fs.find(reader.root, detail=True))
        version["files"] = sorted((k, str(v.get("ETag")), v.get("size")) for k, v in
                                  listing.items())
    try:
        if json.loads(stamp.read_text()) == version and target.exists():
            return target
    except (OSError, ValueError):
        pass
    import shutil

    shutil.rmtree(reader.local, ignore_errors=True)
    reader.local.mkdir(parents=True)
    if info["type"] == "directory":
        with atomic_dir(target) as tmp:
            for key in listing:
                inside = tmp / Path(key).relative_to(reader.root)
                inside.parent.mkdir(parents=True, exist_ok=True)
                reader._call(lambda k=key, t=inside: reader.fs.get_file(k, str(t)))
    else:
        with atomic_path(target) as tmp:
            reader._call(lambda: reader.fs.get_file(reader.root, str(tmp)))
    write_json_atomic(stamp, version)
    return target


def read_bytes(url: str) -> bytes:
    """One object of a store (a dataset's file under ``--source s3://...``)."""
    reader = Mirror(url, default_scratch(url))
    return reader._call(lambda: reader.fs.cat_file(reader.root))


def probe(url: str) -> None:
    """Refuse, in one line, a storage URL this process cannot list and write."""
    Mirror(url).probe()
