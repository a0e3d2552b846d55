"""Where things live: one catalog of every location the project reads or writes.

Each entry names a dataset or artifact, the folder it lives under (the data
folder, the artifacts folder, or the registry's ``models`` folder inside it),
its relative pattern, its format and what it is for. Every path is derived from
this table; no other module joins folder names by hand. The Kedro DataCatalog
and Dagster's IO managers hold the same idea: locations are declared data, so a
change of layout, or of storage, is a change here.

``python -m mnist_autoencoder.paths`` prints the table. Nothing is created at
import time; stages create the folders they write to.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Prefect cache records (small JSON-like results and their locks). Override with
# MNIST_AE_CACHE_DIR, e.g. to share one cache between clones or to isolate tests.
CACHE_DIR_ENV = "MNIST_AE_CACHE_DIR"

# The files of a trained model's directory (a training run's, a trial's, a champion's).
MODEL_FILES = ("autoencoder.keras", "encoder.keras", "decoder.keras")
HISTORY_FILE = "history.csv"
CALIBRATION_FILE = "calibration.json"  # the anomaly score's statistics and thresholds
CHAMPION_INFO = "champion.json"  # a champion's record: run, hashes, parameters
# In baselines and analyze outputs: what they were computed from (the splits, the model).
SOURCE_FILE = "source.json"


@dataclass(frozen=True)
class Entry:
    """One location: under which folder, at which relative pattern, in which format, why."""

    # "data", "artifacts", "models" (artifacts/models), "stage" (a stage's folder:
    # artifacts/<stage>, or processed/<dataset> for preprocess) or "project"
    root: str
    pattern: str  # relative to the root; {fields} are filled in by ``location``
    format: str
    what: str


CATALOG: MappingProxyType[str, Entry] = MappingProxyType({
    # ---- the data folder (--data-dir) ----
    "raw": Entry("data", "raw/{dataset}", "the dataset's four IDX .gz files",
                 "downloaded and verified files (download)"),
    "processed": Entry("data", "processed/{dataset}", "one folder per preprocess cache key: "
                       "splits.json, metadata.json",
                       "a snapshot's train/val/test (and recent) splits: which rows of "
                       "which shards (a few KB, whatever the snapshot's size)"),
    "base_shard": Entry("data", "shards/{dataset}/base-{key}", "shard (data/shards.py)",
                        "the base dataset's images, train file then test file, as uint8; "
                        "one per content of the raw files"),
    "assignment": Entry("data", "shards/{dataset}/splits/{key}.u8",
                        "one byte per image: 0 train, 1 val, 2 test, 3 recent",
                        "a shard's split assignment for one seed and validation share"),
    "verified": Entry("data", "shards/.verified/{sha}.json", "JSON: the files' stat",
                      "a shard hashed in full on this machine; unchanged since if the stat "
                      "matches (scratch: safe to delete)"),
    "snapshots": Entry("data", "snapshots/{dataset}", "folder",
                       "a growing dataset: its manifest, batches and lock"),
    "manifest": Entry("data", "snapshots/manifest.db",
                      "SQLite: table batches, one row per accepted batch (docs/database.md)",
                      "the history of the snapshots, where MNIST_AE_DATABASE_URL is not set"),
    "legacy_manifest": Entry("data", "snapshots/{dataset}/manifest.parquet",
                             "Parquet, one row per accepted batch",
                             "the manifest before the database: imported once, then renamed "
                             "*.imported"),
    "manifest_lock": Entry("data", "snapshots/{dataset}/.lock", "flock",
                           "held by an ingest on this machine while it stages a batch "
                           "(make gc leaves its staging folder alone)"),
    "batch": Entry("data", "snapshots/{dataset}/batches/{batch_id}",
                   "shard (data/shards.py): uint8 images, labels, image hashes",
                   "an accepted batch, stored once (immutable)"),
    "batch_record": Entry("data", "snapshots/{dataset}/records/{batch_id}.json",
                          "JSON: the batch's manifest row",
                          "the row an accepted batch committed, beside its shard, for "
                          "python -m flows.state --rebuild (docs/database.md)"),
    "legacy_batch": Entry("data", "snapshots/{dataset}/batches/{batch_id}.npz",
                          "NPZ: uint8 images, labels, hex hashes",
                          "a batch in the format before shards: migrated on first use"),
    "quarantine": Entry("data", "quarantine/{key}", "the refused files and reason.json",
                        "a batch that ingest refused, kept with why"),
    "lease": Entry("data", "leases/{run}.json", "JSON, flock-held by its run",
                   "what a running flow uses (folders, dataset, snapshot): make gc keeps it; "
                   "the lock dies with the run's process (lifecycle/gc.py)"),
    "gc_lock": Entry("data", "leases/.gc.lock", "flock",
                     "held by make gc while it runs; a run taking a lease waits for it"),
    "downloads": Entry("data", "inputs/{url_hash}", "as served",
                       "images given by URL, downloaded once per URL"),
    "simulate": Entry("data", "simulate", "IDX pairs: base/, batches/batch-NN/, shifted/",
                      "make simulate's cut of MNIST"),
    # ---- the artifacts folder (--artifacts-dir) ----
    "stage": Entry("artifacts", "{stage}", "one folder per cache key (docs/caching.md)",
                   "a stage's outputs: models (train), metrics (evaluate), scores (score), "
                   "reports (report), ..."),
    "index": Entry("stage", "by-content/{content}.json", "JSON: an output's {dir, files, hash}",
                   "which output of a stage holds, or was computed from, given content: the "
                   "drift gate finds a model's validation split by it, lineage a parent's "
                   "baselines and analysis"),
    "checkpoint": Entry("artifacts", "{stage}/.checkpoints/{key}.npz", "NPZ of weights",
                        "training's per-epoch checkpoint of the run that fills {stage}/{key}"),
    "models": Entry("artifacts", "models", "folder", "the champion registry"),
    "registry": Entry("models", "registry.db",
                      "SQLite: tables decisions and champions (docs/database.md)",
                      "every champion decision, reinstatement and loss, and each dataset's "
                      "champion, where MNIST_AE_DATABASE_URL is not set"),
    "legacy_registry": Entry("models", "registry.parquet", "Parquet, one row per event",
                             "the registry before the database: imported once, then renamed "
                             "*.imported"),
    "registry_lock": Entry("models", ".lock", "flock",
                           "held during a champion decision on this machine (its champion/)"),
    "champion": Entry("models", "{dataset}/champion", f"{', '.join(MODEL_FILES)}, "
                      f"{CALIBRATION_FILE}, {CHAMPION_INFO}", "the dataset's model in use"),
    "displaced": Entry("models", "{dataset}/champion.displaced-{stamp}", "as it was",
                       "whatever stood in champion/ when the registry reinstated it"),
    "legacy_champion": Entry("models", "champion", "model files, champion.json",
                             "the old single-champion layout (refused, with what to do)"),
    "model_store": Entry("models", "{dataset}/store/{sha}", "model files, calibration",
                         "every model ever promoted, by hash (reinstatement, retrain parents)"),
    "decision_record": Entry("models", "{dataset}/decisions/{stamp}.json",
                             "JSON: the registry row",
                             "each registry row of the dataset, written once it committed, "
                             "for python -m flows.state --rebuild (docs/database.md)"),
    # ---- the project ----
    "datasets": Entry("project", "data/catalog.json", "JSON",
                      "datasets declared beside the built-in ones (MNIST_AE_CATALOG overrides)"),
    "cache": Entry("project", ".cache/prefect", "Prefect result records and locks",
                   "the stage cache (MNIST_AE_CACHE_DIR overrides)"),
})


URL_SCHEMES = ("http://", "https://")  # inputs fetched over the network, never paths


def is_url(location: str | Path) -> bool:
    """Whether ``location`` is an http(s) URL (fetched) rather than a path on this machine."""
    return str(location).startswith(URL_SCHEMES)


def location(name: str, root: str | Path, **fields: str) -> Path:
    """The path of catalog entry ``name`` under ``root`` (the folder its entry names)."""
    return Path(root) / CATALOG[name].pattern.format(**fields)


def cache_dir() -> Path:
    default = location("cache", PROJECT_ROOT)
    return Path(os.environ.get(CACHE_DIR_ENV, default)).resolve()


def resolve_dir(path: str | Path) -> Path:
    """Resolve a user-given directory relative to the project root, not the CWD.

    A Prefect worker may start the flow from another working directory; anchoring
    relative paths at the project keeps local runs and deployment runs identical.
    """
    path = Path(path).expanduser()
    return (path if path.is_absolute() else PROJECT_ROOT / path).resolve()


# ---- the entries every caller uses, by name ------------------------------------------------

def raw_dir(data_dir: str | Path, dataset: str) -> Path:
    return location("raw", data_dir, dataset=dataset)


def processed_dir(data_dir: str | Path, dataset: str) -> Path:
    """Cached splits of ``dataset``, one directory per preprocess cache key below it."""
    return location("processed", data_dir, dataset=dataset)


def stamps_dir(data_dir: str | Path) -> Path:
    """Where shards hashed in full on this machine are recorded (``data.shards.verify``)."""
    return location("verified", data_dir, sha="x").parent


def download_dir(data_dir: str | Path, url: str) -> Path:
    """Where images given by URL are downloaded to, once per URL."""
    return location("downloads", data_dir, url_hash=hashlib.sha256(url.encode()).hexdigest()[:16])


def stage_root(artifacts_dir: str | Path, stage: str) -> Path:
    """Where one stage's outputs go, one directory per cache key below it."""
    return location("stage", artifacts_dir, stage=stage)


def models_dir(artifacts_dir: str | Path) -> Path:
    """The champion registry: the root of the catalog's ``models`` entries."""
    return location("models", artifacts_dir)


def checkpoint_path(out_dir: Path) -> Path:
    """Where training checkpoints the run that will fill ``out_dir`` (beside it, not in it)."""
    return location("checkpoint", Path(out_dir).parent.parent, stage=Path(out_dir).parent.name,
                    key=Path(out_dir).name)


def index_path(stage_folder: str | Path, content: str) -> Path:
    """Where a stage folder records which of its outputs belongs to ``content``."""
    return location("index", stage_folder, content=content)


def main() -> None:
    """Print the catalog: every location, under which folder, in which format, and why."""
    roots = {"data": "<data>/", "artifacts": "<artifacts>/", "models": "<artifacts>/models/",
             "stage": "<stage folder>/", "project": ""}
    for name, entry in CATALOG.items():
        print(f"{name:<16} {roots[entry.root] + entry.pattern}\n{'':<16} {entry.format}; "
              f"{entry.what}")


if __name__ == "__main__":
    main()
