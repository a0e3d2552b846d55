"""ingest: a batch of labelled images becomes a new snapshot (``mnist_autoencoder.data.snapshots``).

Not cached: ingesting changes state, and the manifest itself makes a repeated
batch a no-op (every image a duplicate). A new snapshot is announced as the
Prefect event ``mnist.snapshot.created``, which the retraining deployment's
trigger turns into a run on that snapshot.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from mnist_autoencoder.data import ingestion, snapshots
from mnist_autoencoder.data.catalog import get_dataset
from mnist_autoencoder.data.inputs import open_input
from mnist_autoencoder.data.pixels import InputError
from mnist_autoencoder.data.preprocessing import base_shard
from mnist_autoencoder.paths import download_dir
from mnist_autoencoder.roots import publish
from mnist_autoencoder.storage import require_valid, sha256_file

EVENT = "mnist.snapshot.created"
RESOURCE_PREFIX = "mnist.snapshot."  # the event's resource id: mnist.snapshot.<snapshot id>


def snapshot_of(value: str) -> str:
    """A snapshot id from a snapshot parameter, which a trigger fills with the resource id."""
    return value.removeprefix(RESOURCE_PREFIX)


@task(name="ingest", cache_policy=NO_CACHE)
def ingest(raw: dict[str, Any], batch: str, dataset: str, data_dir: str) -> dict[str, Any]:
    """Validate the batch, skip what the dataset already holds, append the rest."""
    require_valid(raw)
    log = get_run_logger()
    files: list[Path] = []
    base, _, _ = base_shard(Path(data_dir), dataset, Path(raw["dir"]),
                            get_dataset(dataset).file_names(), raw["files"])
    try:
        found = open_input(batch, download_dir=download_dir(data_dir, batch))
        files = found.files
        result = ingestion.ingest(Path(data_dir), dataset, ingestion.labelled_chunks(found),
                                  [base], batch, {p.name: sha256_file(p) for p in files})
    except InputError as exc:
        if not files and Path(batch).is_dir():
            files = [p for p in Path(batch).rglob("*") if p.is_file()]
        folder = ingestion.quarantine(Path(data_dir), files, batch, str(exc))
        raise InputError(f"{exc} (batch refused; kept with the reason in {folder})") from None
    if result.created:
        publish(data_dir)  # on a store: the snapshot is there before the event says so
        emit_event(event=EVENT,
                   resource={"prefect.resource.id": f"{RESOURCE_PREFIX}{result.snapshot}",
                             "prefect.resource.name": result.snapshot, "dataset": dataset},
                   payload=dataclasses.asdict(result))
        log.info(f"Batch {result.batch}: {result.new} new images, {result.duplicates} "
                 f"duplicates; snapshot {result.snapshot}; event {EVENT} emitted")
    else:
        log.info(f"Nothing new: all {result.offered} images are already in {dataset}")
    return dataclasses.asdict(result)


@task(name="snapshot", cache_policy=NO_CACHE)
def resolve_snapshot(dataset: str, snapshot: str, data_dir: str) -> dict[str, Any]:
    """The snapshot to train on, its batches checked (a changed one is refused)."""
    return snapshots.resolve(Path(data_dir), dataset, snapshot_of(snapshot)).describe()
