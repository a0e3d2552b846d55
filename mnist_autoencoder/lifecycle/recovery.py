"""Rebuilding the state database from the storage (``python -m flows.state --rebuild``).

The database holds the manifests and the registry; the storage holds, beside the
files they name, a record of each of their rows:

- each accepted batch's row, with the snapshot it extends (``batch_record``, written
  beside its shard before the row commits and removed if it does not);
- each registry row (``decision_record``, written once it committed);
- every promoted model by hash with its run's columns (``model_store``).

``survey`` reads what the storage holds and compares it with the database;
``rebuild`` writes it into a database that holds nothing of those datasets yet.
The manifest is the chain of batch records from the base snapshot: each next batch
is the one whose record extends the snapshot so far (its id is checked: the hash
of the chain). Two records that extend the same snapshot mean an ingest was killed
between its record and its commit: the one that later batches extend is taken,
else the older one, and the other is reported. The registry is every decision
record in commit order (time, then id), its rows given new ids, and each dataset's
champion pointer replayed from them; a stored model that no record names (promoted
before records were kept) becomes a ``promoted`` row of its own, from its
``champion.json``. docs/database.md says what cannot be recovered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_autoencoder import database as db
from mnist_autoencoder.data.shards import DESCRIPTION, shard_sha256
from mnist_autoencoder.data.snapshots import (
    COLUMNS,
    base_id,
    batch_path,
    manifest_url,
    read_manifest,
    snapshot_id,
)
from mnist_autoencoder.errors import StateError
from mnist_autoencoder.lifecycle.registry import (
    POINTER_EVENTS,
    RegistryRow,
    read_champion,
    read_registry,
    registered_champion,
    restore_rows,
)
from mnist_autoencoder.paths import CHAMPION_INFO, location, models_dir
from mnist_autoencoder.roots import ensure


class RecoveryError(StateError):
    """The database cannot be rebuilt as asked; the message says what to do."""


@dataclass
class Found:
    """What the storage holds of one dataset, and what the database holds of it."""

    dataset: str
    batches: list[dict[str, Any]] = field(default_factory=list)  # manifest rows, in order
    decisions: list[RegistryRow] = field(default_factory=list)  # in commit order
    notes: list[str] = field(default_factory=list)  # records left out, and why
    in_database: dict[str, Any] = field(default_factory=dict)

    @property
    def champion(self) -> str | None:
        """The model sha256 the decisions make champion (replayed as the database does)."""
        sha = None
        for row in self.decisions:
            if row.event in POINTER_EVENTS:
                sha = row.model_sha256 if POINTER_EVENTS[row.event] else None
        return sha

    @property
    def matches(self) -> bool:
        held = self.in_database
        return (held.get("batches") == [b["batch_id"] for b in self.batches]
                and held.get("decisions") == len(self.decisions)
                and held.get("champion") == self.champion)


def survey(data_dir: Path, artifacts_dir: Path) -> list[Found]:
    """Every dataset the storage holds records of, with what the database holds of it."""
    models = models_dir(artifacts_dir)
    names = sorted({p.parent.parent.name for p in data_dir.glob("snapshots/*/records/*.json")}
                   | {p.parent.name for p in models.glob("*/decisions")}
                   | {p.parent.name for p in models.glob("*/store")})
    found = [_batches(data_dir, name) for name in names]
    registry = read_registry(models)
    for item in found:
        _decisions(models, item)
        manifest = read_manifest(data_dir, item.dataset)
        champion = registered_champion(models, item.dataset)
        item.in_database = {
            "batches": list(manifest["batch_id"]),
            "decisions": int((registry["dataset"] == item.dataset).sum()) if len(registry) else 0,
            "champion": champion.model_sha256 if champion else None}
    return found


def rebuild(data_dir: Path, artifacts_dir: Path) -> list[Found]:
    """Write what ``survey`` found into the database, which must hold nothing of those
    datasets: the manifests' rows, then the registry's rows and pointers, each in one
    transaction."""
    found = survey(data_dir, artifacts_dir)
    held = [f"{item.dataset} ({len(item.in_database['batches'])} batches, "
            f"{item.in_database['decisions']} registry rows)"
            for item in found if item.in_database["batches"] or item.in_database["decisions"]]
    if held:
        raise RecoveryError(
            f"the database already holds {', '.join(held)}: a rebuild only fills a database "
            f"that holds nothing of them; point {db.DATABASE_ENV} at a new database, or move "
            "the SQLite files (registry.db, manifest.db) aside, then run it again")
    for item in found:
        if item.batches:
            with db.writing(manifest_url(data_dir, item.dataset)) as conn:
                for row in item.batches:
                    conn.execute(db.batches.insert().values(dataset=item.dataset, **row))
    restore_rows(models_dir(artifacts_dir), [row for item in found for row in item.decisions])
    return survey(data_dir, artifacts_dir)


def _read(path: Path, notes: list[str]) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        notes.append(f"{path}: unreadable ({exc}), left out")
        return None


def _batches(data_dir: Path, dataset: str) -> Found:
    """The chain of batch records from the base snapshot (see the module docstring)."""
    item = Found(dataset)
    folder = location("batch_record", data_dir, dataset=dataset, batch_id="x").parent
    records = [r for p in sorted(folder.glob("*.json")) if (r := _read(p, item.notes))]
    by_parent: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_parent.setdefault(record.get("parent"), []).append(record)
    ids: list[str] = []
    current = base_id(dataset)
    while by_parent.get(current):
        candidates = [r for r in by_parent.pop(current)
                      if r.get("snapshot_id") == snapshot_id(dataset, [*ids, r["batch_id"]])]
        if not candidates:
            break
        # the one later batches extend, else the older
        candidates.sort(key=lambda r: (not by_parent.get(r["snapshot_id"]), r.get("seq") or 0,
                                       r.get("time") or ""))
        chosen, *others = candidates
        item.notes += [f"batch {r['batch_id']} also extends {current} (its ingest did not "
                       f"commit, or was killed before it did): left out" for r in others]
        path = batch_path(data_dir, dataset, chosen["batch_id"])
        ensure(path / DESCRIPTION)  # on a store: fetched now (shards are fetched when used)
        if not (path / DESCRIPTION).is_file() or shard_sha256(path) != chosen["payload_sha256"]:
            item.notes.append(f"batch {chosen['batch_id']}: its shard {path} is missing or "
                              "changed; its row is rebuilt, restore the shard before using it")
        ids.append(chosen["batch_id"])
        item.batches.append({k: chosen.get(k) for k in COLUMNS} | {"seq": len(ids)})
        current = chosen["snapshot_id"]
    item.notes += [f"batch {r.get('batch_id')} extends {parent}, which is not in the chain "
                   "from the base: left out" for parent, rest in by_parent.items() for r in rest]
    return item


def _decisions(models: Path, item: Found) -> None:
    """The dataset's registry records in commit order, and a row for each stored model that
    no record names."""
    folder = location("decision_record", models, dataset=item.dataset, stamp="x").parent
    records = [r for p in sorted(folder.glob("*.json")) if (r := _read(p, item.notes))]
    named = {r.get("model_sha256") for r in records}
    stored = []
    for info_path in sorted(location("model_store", models, dataset=item.dataset,
                                     sha="x").parent.glob(f"*/{CHAMPION_INFO}")):
        info = read_champion(info_path.parent)
        if not info or info.get("model_sha256") in named or "promoted_at" not in info:
            continue
        stored.append(info | {
            "dataset": item.dataset, "event": "promoted", "promoted": True,
            "time": info["promoted_at"], "reason": "rebuilt from its stored copy "
            f"({info_path.parent}): the decision's record was not found"})
        item.notes.append(f"model {info['model_sha256'][:12]}: no record; a promoted row is "
                          f"rebuilt from {info_path}")
    rows = sorted(records + stored, key=lambda r: (r.get("time") or "", r.get("id") or 0))
    item.decisions = [RegistryRow.from_record(r) for r in rows]  # inserted with new ids


def describe(item: Found) -> list[str]:
    """Lines for one dataset: what the storage holds, what the database holds."""
    held = item.in_database
    champion = item.champion
    lines = [f"{item.dataset}: storage holds {len(item.batches)} batches and "
             f"{len(item.decisions)} registry rows (champion "
             f"{champion[:12] if champion else 'none'}); the database holds "
             f"{len(held['batches'])} batches and {held['decisions']} rows (champion "
             f"{held['champion'][:12] if held['champion'] else 'none'}): "
             + ("the same" if item.matches else "they differ")]
    return lines + [f"  note: {note}" for note in item.notes]
