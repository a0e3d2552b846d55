"""Collecting old files (``make gc``): what no champion, registry row or snapshot in use needs.

Never collected: the raw files, the snapshots (manifest, batches, lock), quarantine,
downloads, the champion registry (``models/``: registry, champions, store), training
checkpoints, and anything written in the last ``min_age`` (default an hour).

Kept because something refers to it:

- the preprocess outputs (views) of each dataset's latest snapshot, and of the
  latest snapshot that has any (when the newest has none yet);
- for each content hash that a registry row or a champion's ``champion.json``
  records (``splits_sha256``: the drift gate's reference split), one view holding
  it: the one the ``by-content`` index names, else the newest (views are hashed
  when the index is gone); identical copies under other keys are collected;
- the base shards and split assignments a kept view names, and the newest base
  shard of each dataset (the next run's);
- under artifacts, the outputs a registry row or champion names (``model_path``),
  and the baselines and analyze outputs that their indexes give for each row's
  splits and model (a retrain's warm start, ``lifecycle.lineage``);
- whatever a live lease names (below).

Collected: the other views (and those in the format before shards, which no stage
reads, unless the registry names them); assignments and base shards no kept view names;
``by-content`` indexes whose output is gone or collected; stamps
(``shards/.verified``) of shards that no longer exist; crash leftovers
(``.shard.*.tmp``, ``.incoming-*``, ``storage.atomic_path``/``atomic_dir``'s
``.*.tmp`` and ``.*.old``, an interrupted gc's ``.gc-*``); the lease files of runs
that are gone; and stage outputs under artifacts, by this rule:

A stage output (``<artifacts>/<stage>/<stage>-<key>/``) does not name what it was
computed from, so gc judges by time, conservatively: it is collected only when
nothing above names it and it was last written before every snapshot in use (the
latest and the latest processed of each dataset) existed, so it cannot have been
computed from any of them. A snapshot exists from its last batch's ingest (the
manifest's time or the batch folder's, the earlier); the base snapshot from the
publication of its dataset's oldest base shard. Removing an output is always safe
for correctness (the stage cache treats a missing output as a miss and reruns the
stage); its cost is that rerun: ``corrupt``, keyed on the test split that every
snapshot shares, is recomputed once (seconds). No stage output is collected when a
dataset's snapshots cannot be read or a snapshot in use has no known start (no base
shard yet: the data of the format before shards), when the data folder holds no
dataset (the wrong ``--data-dir``), or while a live lease names these artifacts: a
run may hit the cache on any older output, and gc cannot know which. A registry that
cannot be read stops gc (``RegistryError``): it cannot tell what the registry needs.

Leases (``lease``): a flow holds one for its whole run, a file under
``paths.CATALOG["lease"]`` recording its folders, dataset and snapshot ("latest"
resolved when the lease is taken), locked with ``flock``, so a killed run's lease
dies with its process. gc keeps the leased snapshot's views and those of every
later snapshot, every base shard and assignment of the leased dataset, anything
written since the lease started and, as said, every stage output. gc holds
``gc_lock`` exclusively from its plan to its last removal, and taking a lease waits
for it (a shared lock): no run starts between gc's plan and its removals, and two
gcs never race.

Removal: each path is renamed to a hidden ``.gc-*`` name beside it (atomic), then
deleted. A crash leaves the path whole or under a ``.gc-*`` name that nothing reads
and the next gc removes. A removed output leaves its Prefect cache record, which
the next lookup drops as invalid (``tasks.caching``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_autoencoder.data.shards import DESCRIPTION
from mnist_autoencoder.data.splits import VIEW_FILE
from mnist_autoencoder.errors import MissingFileError, UserError
from mnist_autoencoder.paths import index_path, location, models_dir, stamps_dir
from mnist_autoencoder.storage import describe_outputs, sha256_file

DEFAULT_MIN_AGE_S = 3600.0  # nothing written more recently than this is collected
CLOCK_SLACK_S = 5.0  # file systems' coarse clocks: "before" means this much before
GC_PREFIX = ".gc-"  # a path being removed
OUTPUT_NAME = re.compile(r"^[a-z][a-z0-9_]*-[0-9a-f]{24}$")  # tasks.caching.stage_key


@dataclass(frozen=True)
class Item:
    """One path to remove: its size (bytes, a folder's files together) and why."""

    path: Path
    size: int
    reason: str


@dataclass
class Plan:
    """What gc removes (``items``, in removal order), what it noticed, and what failed."""

    data_dir: Path
    artifacts_dir: Path
    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    removed: bool = False
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (path, why)

    @property
    def total(self) -> int:
        return sum(item.size for item in self.items)


# ---- leases ----------------------------------------------------------------------------------

def _lease_dir(data_dir: Path) -> Path:
    return location("lease", data_dir, run="x").parent


@contextlib.contextmanager
def _flocked(path: Path, mode: int) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _latest_snapshot(data_dir: Path, dataset: str) -> str | None:
    from mnist_autoencoder.data.snapshots import snapshot_ids

    try:
        return snapshot_ids(data_dir, dataset)[-1]
    except (UserError, OSError):
        return None  # gc then keeps every view of the dataset


@contextlib.contextmanager
def lease(data_dir: str | Path, what: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Hold a lease on what a run uses, for the duration: ``make gc`` removes none of it.

    ``what``: ``artifacts_dir``, ``dataset``, ``snapshot`` (an id or "latest", resolved
    now), and anything else worth recording (``flow``). Yields the recorded lease.
    Waits while a gc runs. The lease is a file locked with ``flock``: a run killed
    at any point leaves a file that gc sees is no longer held.
    """
    data_dir = Path(data_dir)
    record = {key: str(value) if isinstance(value, Path) else value
              for key, value in what.items()}
    record |= {"data_dir": str(data_dir), "host": socket.gethostname(), "pid": os.getpid()}
    final = location("lease", data_dir, run=f"{record['host']}-{os.getpid()}-"
                                            f"{secrets.token_hex(4)}")
    tmp = final.with_name(f".{final.name}.tmp")
    with _flocked(location("gc_lock", data_dir), fcntl.LOCK_SH):
        record["started"] = time.time()
        record["started_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        if record.get("dataset") and record.get("snapshot") in (None, "", "latest"):
            record["snapshot"] = _latest_snapshot(data_dir, str(record["dataset"]))
        handle = open(tmp, "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)  # held before the final name appears
            handle.write(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
            handle.flush()
            os.replace(tmp, final)  # the lock is the inode's: it moves with it
        except BaseException:
            handle.close()
            tmp.unlink(missing_ok=True)
            raise
    try:
        yield record
    finally:
        final.unlink(missing_ok=True)
        handle.close()


def _held(path: Path) -> bool | None:
    """Whether a lease file is held by a live run; None when it is gone."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def read_leases(data_dir: str | Path) -> tuple[list[dict[str, Any]], list[Path]]:
    """The live leases' records, and the lease files whose run is gone."""
    folder = _lease_dir(Path(data_dir))
    live, dead = [], []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        held = _held(path)
        if held is None:
            continue
        if not held:
            dead.append(path)
            continue
        try:
            live.append(json.loads(path.read_text()) | {"lease": str(path)})
        except (OSError, ValueError):  # held, unreadable: it protects everything it could
            live.append({"lease": str(path), "started": 0.0})
    return live, dead


# ---- what is there -----------------------------------------------------------------------

def _tree(path: Path) -> tuple[int, float]:
    """(bytes of its files, newest mtime of it and everything below); (0, 0) when gone."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return 0, 0.0
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size, info.st_mtime
    size, newest = 0, info.st_mtime
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                found = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            newest = max(newest, found.st_mtime)
            if not stat.S_ISDIR(found.st_mode):
                size += found.st_size
    return size, newest


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_temp(name: str) -> bool:
    """A crash leftover's name: a shard being written, a staged batch, an atomic write's."""
    return name.startswith(GC_PREFIX) or name.startswith(".") and (
        name.endswith((".tmp", ".old")) or name.startswith(".incoming-"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _resolved(path: Any) -> str:
    return str(Path(str(path)).resolve())


@dataclass
class _View:
    path: Path
    snapshot: str | None
    parts: list[dict[str, Any]]
    current: bool  # holds splits.json (not the format before shards, which no stage reads)
    content: str | None = None  # the preprocess output's hash, when known
    indexed: bool = False  # its dataset's by-content index names it (lookups find it)

    def names(self, key: str) -> set[str]:
        return {_resolved(p[key]) for p in self.parts if p.get(key)}


def _views(data_dir: Path, dataset: str) -> list[_View]:
    folder = location("processed", data_dir, dataset=dataset)
    index_dir = index_path(folder, "x").parent
    views = []
    for path in _children(folder):
        if path == index_dir or path.name.startswith(".") or not path.is_dir():
            continue
        layout = _read_json(path / VIEW_FILE)
        if isinstance(layout, dict):
            meta, parts = layout.get("metadata") or {}, list(layout.get("parts") or [])
        else:  # the format before shards: metadata.json only
            meta, parts = _read_json(path / "metadata.json") or {}, []
        views.append(_View(path, meta.get("snapshot") if isinstance(meta, dict) else None,
                           parts, isinstance(layout, dict)))
    for index in _children(index_dir):  # the content hash of the views their index names
        recorded = _read_json(index) if index.suffix == ".json" else None
        if isinstance(recorded, dict) and recorded.get("dir"):
            for view in views:
                if view.content is None and _resolved(recorded["dir"]) == _resolved(view.path):
                    view.content, view.indexed = index.stem, True
    return views


def _content(view: _View) -> str | None:
    """The hash ``describe_outputs`` gives the view's files (what ``splits_sha256`` records)."""
    if view.content is None:
        try:
            names = sorted(p.name for p in view.path.iterdir() if p.is_file())
            view.content = describe_outputs(view.path, names)["hash"]
        except OSError:
            return None
    return view.content


def _one_per_content(views: list[_View], kept: list[_View],
                     wanted: set[str]) -> dict[str, _View]:
    """For each content in ``wanted`` that no kept view holds, one view holding it: the one
    its index names (what lookups find), else the newest. Identical copies are collected."""
    if not wanted:
        return {}
    held = {v.content for v in kept if v.content}
    found: dict[str, _View] = {}
    for view in sorted((v for v in views if v not in kept), key=lambda v: (
            v.indexed, _tree(v.path)[1]), reverse=True):
        content = _content(view)
        if content in wanted and content not in held:
            found.setdefault(content, view)
    return found


def _datasets(data_dir: Path) -> list[str]:
    parents = (location("processed", data_dir, dataset="x").parent,
               location("snapshots", data_dir, dataset="x").parent,
               location("base_shard", data_dir, dataset="x", key="x").parent.parent)
    return sorted({p.name for parent in parents for p in _children(parent)
                   if p.is_dir() and not p.name.startswith(".")})


def _snapshot_ids(data_dir: Path, dataset: str) -> list[str] | None:
    from mnist_autoencoder.data.snapshots import snapshot_ids

    try:
        return snapshot_ids(data_dir, dataset)
    except (UserError, OSError):
        return None


def _births(data_dir: Path, dataset: str, ids: list[str]) -> dict[str, float | None]:
    """When each snapshot came to exist (module docstring); None: cannot tell."""
    from mnist_autoencoder.data.snapshots import batch_path, read_manifest

    shards = [p for p in _children(location("base_shard", data_dir, dataset=dataset,
                                            key="x").parent)
              if p.name.startswith("base-") and (p / DESCRIPTION).is_file()]
    base = min((os.stat(p / DESCRIPTION).st_mtime for p in shards), default=None)
    births: dict[str, float | None] = {ids[0]: base}
    manifest = read_manifest(data_dir, dataset)
    for row in manifest.to_dict("records") if len(manifest) else []:
        times = []
        with contextlib.suppress(TypeError, ValueError):
            times.append(dt.datetime.fromisoformat(str(row["time"])).timestamp())
        with contextlib.suppress(OSError):
            times.append(os.stat(batch_path(data_dir, dataset, str(row["batch_id"]))).st_mtime)
        births[str(row["snapshot_id"])] = min(times, default=None)
    return births


# ---- the plan ----------------------------------------------------------------------------

@dataclass
class _Planner:
    data_dir: Path
    artifacts_dir: Path
    min_age: float
    now: float
    plan: Plan
    leases: list[dict[str, Any]]
    young_since: float = 0.0
    doomed: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        starts = [float(lease.get("started") or 0.0) for lease in self.leases]
        self.young_since = min([self.now - self.min_age, *starts]) - CLOCK_SLACK_S

    def young(self, path: Path) -> bool:
        return _tree(path)[1] >= self.young_since

    def add(self, path: Path, reason: str, check_age: bool = True) -> None:
        if _resolved(path) in self.doomed or (check_age and self.young(path)):
            return
        self.plan.items.append(Item(path, _tree(path)[0], reason))
        self.doomed.add(_resolved(path))

    def temps(self, folder: Path) -> None:
        for path in _children(folder):
            if path.name.startswith(GC_PREFIX):
                self.add(path, "left by an interrupted gc", check_age=False)
            elif _is_temp(path.name):
                self.add(path, "crash leftover (a temporary or staging name)")

    def indexes(self, folder: Path, kept: set[str]) -> None:
        """Collect the index files of ``folder``'s by-content index whose output is not kept
        (collected or missing)."""
        for path in _children(index_path(folder, "x").parent):
            if _is_temp(path.name):
                continue
            recorded = _read_json(path) if path.suffix == ".json" else None
            if not isinstance(recorded, dict) or not recorded.get("dir"):
                continue
            target = Path(str(recorded["dir"]))
            if _resolved(target) in self.doomed:
                self.add(path, f"index of {target.name}, which is collected", check_age=False)
            elif not target.exists() and _resolved(target) not in kept:
                self.add(path, f"index of {target.name}, which is gone")
        self.temps(index_path(folder, "x").parent)


def _registry_references(artifacts_dir: Path) -> tuple[set[str], set[str]]:
    """(splits content hashes, artifact output folders) the registry and champions name."""
    from mnist_autoencoder.evaluation.analysis import analysis_content
    from mnist_autoencoder.evaluation.baselines import baselines_content
    from mnist_autoencoder.lifecycle.registry import (
        read_champion,
        read_registry,
        registry_rows,
    )
    from mnist_autoencoder.paths import stage_root

    models = models_dir(artifacts_dir)
    splits, outputs = set(), set()
    indexed = []
    for row in registry_rows(read_registry(models)):  # a damaged registry: refused
        if row.splits_sha256:
            splits.add(str(row.splits_sha256))
            if row.training is not None:
                indexed.append(("baselines", baselines_content(str(row.splits_sha256),
                                                               row.training.latent_dim)))
        if row.model_sha256:
            indexed.append(("analyze", analysis_content(str(row.model_sha256))))
        if row.model_path:
            outputs.add(_resolved(row.model_path))
    for folder in _children(models):
        info = read_champion(location("champion", models, dataset=folder.name)) \
            if folder.is_dir() else None
        if info:
            splits.update(str(info[k]) for k in ("splits_sha256",) if info.get(k))
            outputs.update(_resolved(info[k]) for k in ("model_path",) if info.get(k))
    for stage, content in indexed:
        recorded = _read_json(index_path(stage_root(artifacts_dir, stage), content))
        if isinstance(recorded, dict) and recorded.get("dir"):
            outputs.add(_resolved(recorded["dir"]))
    return splits, outputs


def _plan_data(planner: _Planner, wanted_splits: set[str]) -> list[float | None]:
    """Plan the data folder; return the births of the snapshots in use (module docstring)."""
    data_dir, plan = planner.data_dir, planner.plan
    births: list[float | None] = []
    for dataset in _datasets(data_dir):
        ids = _snapshot_ids(data_dir, dataset)
        views = _views(data_dir, dataset)
        leases = [lease for lease in planner.leases
                  if lease.get("dataset") in (None, dataset)]
        pinned = bool(leases) or ids is None  # keep every shard and assignment
        if ids is None:
            plan.notes.append(f"{dataset}: its snapshots cannot be read (unknown dataset or "
                              "damaged manifest): all its views and shards are kept, and "
                              "no stage output is collected")
            kept = views
            births.append(None)
        else:
            processed = {v.snapshot or ids[0] for v in views if v.current}
            in_use = {ids[-1]}
            newest_processed = next((s for s in reversed(ids) if s in processed), None)
            if newest_processed is not None:
                in_use.add(newest_processed)
            first_kept = min(ids.index(s) for s in in_use)
            for lease in leases:
                leased = lease.get("snapshot")
                first_kept = min(first_kept, ids.index(leased) if leased in ids else 0)
            snapshot_births = _births(data_dir, dataset, ids)
            births.extend(snapshot_births.get(s) for s in in_use)
            kept = [v for v in views
                    if v.current and (v.snapshot or ids[0]) in ids[first_kept:]]
            copies = _one_per_content(views, kept, wanted_splits)
            kept += copies.values()
            for view in views:
                if view in kept:
                    continue
                if view.content is not None and (view.content in copies or any(
                        v.content == view.content for v in kept)):
                    keeper = copies.get(view.content) or next(
                        v for v in kept if v.content == view.content)
                    why = f"a copy of {keeper.path.name}, which is kept"
                else:
                    why = (f"view of snapshot {view.snapshot or '?'}: "
                           + ("not in use, " if view.current else "in the format before "
                              "shards, ") + "named by no registry row, champion or lease")
                planner.add(view.path, why)
        views_kept = [v for v in kept if _resolved(v.path) not in planner.doomed]
        folder = location("processed", data_dir, dataset=dataset)
        planner.indexes(folder, {_resolved(v.path) for v in views_kept})
        planner.temps(folder)
        # shards and assignments no kept view names
        shards_dir = location("base_shard", data_dir, dataset=dataset, key="x").parent
        named_shards = set().union(*(v.names("shard") for v in views_kept))
        named_assignments = set().union(*(v.names("assignment") for v in views_kept))
        bases = [p for p in _children(shards_dir) if p.name.startswith("base-") and p.is_dir()]
        newest = max(bases, key=lambda p: _tree(p)[1], default=None)
        if not pinned:
            for base in bases:
                if base != newest and _resolved(base) not in named_shards:
                    planner.add(base, "base shard no kept view names (rebuilt from the raw "
                                "files when needed)")
            assignments = location("assignment", data_dir, dataset=dataset, key="x").parent
            for path in _children(assignments):
                if path.suffix == ".u8" and not path.name.startswith(".") \
                        and _resolved(path) not in named_assignments:
                    planner.add(path, "split assignment no kept view names (written again "
                                "when needed)")
        planner.temps(shards_dir)
        planner.temps(location("assignment", data_dir, dataset=dataset, key="x").parent)
        planner.temps(location("raw", data_dir, dataset=dataset))
        _plan_snapshot_temps(planner, dataset)
    return births


def _plan_snapshot_temps(planner: _Planner, dataset: str) -> None:
    """Leftovers of interrupted ingests, unless an ingest holds the manifest's lock now."""
    lock = location("manifest_lock", planner.data_dir, dataset=dataset)
    if not lock.parent.is_dir():
        return
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            planner.plan.notes.append(f"{dataset}: an ingest is running; its staging folders "
                                      "are left alone")
            return
        fcntl.flock(handle, fcntl.LOCK_UN)
    planner.temps(lock.parent)
    planner.temps(location("batch", planner.data_dir, dataset=dataset, batch_id="x").parent)


def _plan_stamps(planner: _Planner) -> None:
    """Stamps of shards that will no longer exist (base shards and batches that remain)."""
    data_dir = planner.data_dir
    existing = set()
    for dataset in _datasets(data_dir):
        folders = [*_children(location("base_shard", data_dir, dataset=dataset,
                                       key="x").parent),
                   *_children(location("batch", data_dir, dataset=dataset, batch_id="x").parent)]
        for folder in folders:
            if (folder / DESCRIPTION).is_file() and _resolved(folder) not in planner.doomed:
                with contextlib.suppress(OSError):
                    existing.add(sha256_file(folder / DESCRIPTION))
    stamps = stamps_dir(data_dir)
    for path in _children(stamps):
        if path.suffix == ".json" and not path.name.startswith(".") \
                and path.stem not in existing:
            planner.add(path, "stamp of a shard that no longer exists")
    planner.temps(stamps)


def _plan_artifacts(planner: _Planner, outputs: set[str], births: list[float | None],
                    datasets: list[str]) -> None:
    artifacts, plan = planner.artifacts_dir, planner.plan
    holders = [lease for lease in planner.leases
               if not lease.get("artifacts_dir")
               or _resolved(lease["artifacts_dir"]) == _resolved(artifacts)]
    cutoff = None
    if holders:
        plan.notes.append(f"{len(holders)} running flow(s) hold a lease on {artifacts} "
                          f"({', '.join(str(h.get('flow') or h.get('pid')) for h in holders)}):"
                          " no stage output is collected")
    elif not datasets:
        plan.notes.append(f"no dataset under {planner.data_dir}: no stage output is collected "
                          "(give the --data-dir the runs use)")
    elif None in births or not births:
        plan.notes.append("when a snapshot in use began is unknown (no base shard, or its "
                          "snapshots cannot be read): no stage output is collected")
    else:
        cutoff = min(births) - CLOCK_SLACK_S
    models = models_dir(artifacts)
    for stage in _children(artifacts):
        if stage == models or stage.name.startswith(".") or not stage.is_dir():
            continue
        kept = set()
        for path in _children(stage):
            if not path.is_dir() or not OUTPUT_NAME.match(path.name):
                continue
            if cutoff is None or _resolved(path) in outputs or _tree(path)[1] >= cutoff:
                kept.add(_resolved(path))
            else:
                planner.add(path, f"{stage.name} output: named by no registry row or champion,"
                            " written before the snapshots in use")
        planner.indexes(stage, kept)
        planner.temps(stage)
        planner.temps(location("checkpoint", artifacts, stage=stage.name, key="x").parent)


def _require_dirs(data_dir: str | Path, artifacts_dir: str | Path) -> tuple[Path, Path]:
    data_dir, artifacts_dir = Path(data_dir), Path(artifacts_dir)
    for name, folder in (("data", data_dir), ("artifacts", artifacts_dir)):
        if not folder.is_dir():
            raise MissingFileError(f"{folder}: no such {name} folder; give the --{name}-dir "
                                   "that the runs use")
    return data_dir, artifacts_dir


def plan(data_dir: str | Path, artifacts_dir: str | Path, min_age: float = DEFAULT_MIN_AGE_S,
         now: float | None = None) -> Plan:
    """What gc would remove now (call it holding ``gc_lock``, as ``collect`` does)."""
    data_dir, artifacts_dir = _require_dirs(data_dir, artifacts_dir)
    result = Plan(data_dir, artifacts_dir)
    leases, dead = read_leases(data_dir)
    planner = _Planner(data_dir, artifacts_dir, min_age,
                       time.time() if now is None else now, result, leases)
    for held in leases:
        result.notes.append(f"lease {Path(held['lease']).name}: {held.get('flow') or 'a run'} "
                            f"on {held.get('dataset') or 'any dataset'}, snapshot "
                            f"{held.get('snapshot') or '?'}, since {held.get('started_at') or '?'}"
                            ": what it uses is kept")
    wanted_splits, outputs = _registry_references(artifacts_dir)
    births = _plan_data(planner, wanted_splits)
    _plan_stamps(planner)
    _plan_artifacts(planner, outputs, births, _datasets(data_dir))
    for path in dead:
        planner.add(path, "lease of a run that is gone", check_age=False)
    planner.temps(_lease_dir(data_dir))
    return result


def remove(path: Path) -> None:
    """Rename ``path`` to a hidden ``.gc-*`` name, then delete it (module docstring)."""
    target = path
    if not path.name.startswith(GC_PREFIX):
        target = path.with_name(f"{GC_PREFIX}{path.name}.{secrets.token_hex(4)}")
        os.replace(path, target)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    else:
        target.unlink()


def collect(data_dir: str | Path, artifacts_dir: str | Path, dry_run: bool = False,
            min_age: float = DEFAULT_MIN_AGE_S, now: float | None = None) -> Plan:
    """Plan and (unless ``dry_run``) remove, holding ``gc_lock``; return the plan.

    A path that cannot be removed is listed in ``failed``; the others still are.
    """
    data_dir, artifacts_dir = _require_dirs(data_dir, artifacts_dir)
    with _flocked(location("gc_lock", data_dir), fcntl.LOCK_EX):
        result = plan(data_dir, artifacts_dir, min_age, now)
        if dry_run:
            return result
        for item in result.items:
            try:
                remove(item.path)
            except FileNotFoundError:
                continue
            except OSError as error:
                result.failed.append((item.path, str(error.strerror or error)))
        result.removed = True
    return result
