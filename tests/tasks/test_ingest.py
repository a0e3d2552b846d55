"""The Prefect side of snapshots: the event's resource id, which the core does not know."""

import pytest

from mnist_autoencoder.data import snapshots
from tasks.ingest import RESOURCE_PREFIX, snapshot_of


def test_a_triggered_runs_resource_id_names_its_snapshot_and_the_core_knows_only_ids(tmp_path):
    assert snapshot_of(f"{RESOURCE_PREFIX}mnist-abc123") == "mnist-abc123"
    assert snapshot_of("latest") == "latest" and snapshot_of("mnist-abc123") == "mnist-abc123"
    base = snapshots.base_id("mnist")
    assert snapshots.resolve(tmp_path, "mnist", snapshot_of(RESOURCE_PREFIX + base)).id == base
    with pytest.raises(snapshots.SnapshotError, match="no snapshot"):
        snapshots.resolve(tmp_path, "mnist", RESOURCE_PREFIX + base)
