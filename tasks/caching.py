"""Cross-run caching for the stages: what a cache key is made of, and when a hit is trusted.

Prefect's default policy (INPUTS + TASK_SOURCE + RUN_ID) only hits inside one flow
run, hashes only the task body, and trusts a record even when the files it names
are gone. A stage's key here is

    stage name + code version + inputs

where the code version hashes the source of every project module that the stage's
task module reaches through its imports, and the versions of the libraries they
import (``mnist_autoencoder.codeversion``: found from the import graph, never
listed by hand), and the inputs are small JSON values: parameters plus the ``{dir, files,
hash}`` descriptions that upstream stages return, never arrays. Before a record is
trusted, the files it describes are re-hashed, and a stage that changes state
outside its outputs (``promote``) adds a check of that state; if anything was
deleted or damaged, the record is dropped and the stage runs again under the same key.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.locking.filesystem import FileSystemLockManager
from prefect.results import ResultStore
from prefect.transactions import get_transaction

from mnist_autoencoder import paths
from mnist_autoencoder.codeversion import code_version
from mnist_autoencoder.storage import invalid_outputs, sha256_json, write_json_atomic

logger = logging.getLogger(__name__)


def is_description(value: Any) -> bool:
    """True for the ``{dir, files, hash, ...}`` value ``describe_outputs`` builds."""
    return isinstance(value, dict) and {"dir", "files", "hash"} <= value.keys()


def content_only(value: Any) -> Any:
    """Replace each upstream ``{dir, files, hash}`` description by its content hash.

    Where an upstream output lives (its directory is named after the upstream key,
    which includes the upstream code version) must not matter downstream: an
    upstream stage that reruns and writes byte-identical files leaves its
    dependents cached.
    """
    if is_description(value):
        return {"content": value["hash"]}
    if hasattr(value, "model_dump"):  # a typed parameter group: keyed on its fields
        return content_only(value.model_dump())
    if isinstance(value, dict):
        return {k: content_only(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [content_only(v) for v in value]
    return value


def stage_key(stage: str, code: str, inputs: dict[str, Any]) -> str:
    """The cache key of one stage run; also names the directory its outputs go to."""
    material = {"stage": stage, "code": code, "inputs": content_only(inputs)}
    return f"{stage}-{sha256_json(material)[:24]}"


def described_outputs(value: Any) -> list[dict[str, Any]]:
    """Find the ``{dir, files, hash}`` descriptions inside a stage's return value."""
    if is_description(value):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [d for v in value for d in described_outputs(v)]
    return []


# The private parts of Prefect this module relies on, all reached through ``_private``:
# where a lock file lives, and under which name a result store holds a record in memory.
PREFECT_PRIVATE = {FileSystemLockManager: ("_lock_path_for_key",),
                   ResultStore: ("_resolved_key_path",)}


def check_prefect_private() -> None:
    """Raise, naming what is missing, if the installed Prefect lacks a private part used here."""
    import prefect

    missing = [f"{cls.__name__}.{name}" for cls, names in PREFECT_PRIVATE.items()
               for name in names if not callable(getattr(cls, name, None))]
    if missing:
        raise RuntimeError(f"Prefect {prefect.__version__} no longer has {', '.join(missing)}, "
                           "which tasks/caching.py relies on; adapt tasks.caching._private")


def _private(what: str, owner: Any, key: str) -> Any:
    """The one place that reaches into Prefect (checked by ``check_prefect_private``).

    ``"lock path"``: the lock file of ``key`` of a ``FileSystemLockManager``.
    ``"forget"``: drop the in-memory copy of record ``key`` of a ``ResultStore``, so that
    reading it again reads storage (which then misses).
    """
    if what == "lock path":
        return Path(owner._lock_path_for_key(key))
    if what == "forget":
        return owner.cache.pop(owner._resolved_key_path(key), None)
    raise ValueError(what)


class ProcessLockManager(FileSystemLockManager):
    """File locks that die with their holder.

    Prefect's FileSystemLockManager writes locks without an expiry, so a run that
    is killed (OOM, SIGKILL, a lost machine) while computing a stage leaves a lock
    that makes every later run with the same key wait forever. This manager also
    records the holder's host and PID, and treats a lock whose process no longer
    exists on this host as released.
    """

    def __init__(self, lock_files_directory: Path) -> None:
        super().__init__(lock_files_directory)
        self._releasing: set[str] = set()  # keys whose dead holder's lock is being released

    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        acquired = super().acquire_lock(key, holder, acquire_timeout, hold_timeout)
        if acquired:
            path = _private("lock path", self, key)
            info = json.loads(path.read_bytes()) | {"host": socket.gethostname(),
                                                    "pid": os.getpid()}
            write_json_atomic(path, info)
        return acquired

    def is_locked(self, key: str, use_cache: bool = False) -> bool:
        if key not in self._releasing:  # release_lock asks is_locked again
            self._release_if_holder_died(key)
        return super().is_locked(key, use_cache)

    def _release_if_holder_died(self, key: str) -> None:
        path = _private("lock path", self, key)
        try:
            info = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return
        if info.get("host") == socket.gethostname() and not _process_exists(info.get("pid")):
            logger.warning("Releasing the lock on %s: its holder (pid %s) is gone.",
                           key, info.get("pid"))
            self._releasing.add(key)
            try:  # public: removes the file and the manager's memory of it
                self.release_lock(key, info.get("holder", ""))
            except ValueError:  # not a lock Prefect recognises as held: the file alone
                path.unlink(missing_ok=True)
            finally:
                self._releasing.discard(key)


def _process_exists(pid: int | None) -> bool:
    if not pid:
        return True  # not ours to judge: written by another lock manager
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class StageCache(CachePolicy):
    """Cache policy of one stage; see the module docstring.

    ``check`` maps the task's inputs and its recorded outputs to problems with state
    the stage keeps outside its outputs (empty when intact); any problem drops the record.
    """

    stage: str = ""
    ignore: tuple[str, ...] = ()
    check: Callable[[dict[str, Any], list[dict[str, Any]]], list[str]] | None = None
    record_dir: Path = field(default_factory=paths.cache_dir)

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str:
        kept = {name: value for name, value in inputs.items() if name not in self.ignore}
        key = stage_key(self.stage, code_version((task_ctx.task.fn.__module__,)), kept)
        self._drop_record_if_invalid(task_ctx, key, inputs)
        return key

    def _drop_record_if_invalid(self, task_ctx, key: str, inputs: dict[str, Any]) -> None:
        store = task_ctx.result_store
        if not store.exists(key):
            return
        recorded = described_outputs(store.read(key).result)
        # nothing is read yet: files still in a store are trusted by its hashes, not fetched
        problems = [problem for outputs in recorded
                    for problem in invalid_outputs(outputs, fetch=False)]
        if self.check is not None:
            problems += self.check(inputs, recorded)
        if problems:
            # Prefect would return the stale record as a cache hit; removing it makes
            # the transaction miss, so the stage rebuilds its outputs under this key.
            logger.warning("Cached %s result is no longer valid (%s); running it again.",
                           self.stage, "; ".join(problems))
            _private("forget", store, key)
            (self.record_dir / key).unlink(missing_ok=True)


def current_cache_key() -> str:
    """The cache key of the running stage; stages name their output directory after it."""
    transaction = get_transaction()
    if transaction is None or not transaction.key:
        raise RuntimeError("current_cache_key() must be called inside a cached Prefect task run")
    return transaction.key


def stage_task_options(stage: str, ignore: tuple[str, ...] = (),
                       check: Callable[[dict[str, Any], list[dict[str, Any]]], list[str]]
                       | None = None
                       ) -> dict[str, Any]:
    """Keyword arguments for ``@task`` that give a stage persistent, locked caching.

    ``ignore`` names task parameters that cannot change the result and so stay out
    of the key (e.g. which of two identical cache files is read).
    """
    record_dir = paths.cache_dir()
    policy = StageCache(stage=stage, ignore=ignore, check=check, record_dir=record_dir)
    # SERIALIZABLE + file locks: two runs with the same key never both compute it;
    # the second waits for the first and then reads its record as a cache hit.
    policy = policy.configure(
        isolation_level="SERIALIZABLE",
        lock_manager=ProcessLockManager(lock_files_directory=record_dir / "locks"),
    )
    return {
        "name": stage,
        "cache_policy": policy,
        "persist_result": True,
        "result_storage": record_dir,
        "result_serializer": "json",
    }
