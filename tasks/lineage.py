"""parent: the earlier model a run on a grown snapshot starts from (``lifecycle.lineage``).

An uncached look-up, like ``snapshot``: it reads the registry as it is now. Its
answer changes only when the registry gains a model promoted on one of the
snapshot's ancestors, so an unchanged rerun finds the same parent.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist_autoencoder.lifecycle.lineage import find_parent


@task(name="parent", cache_policy=NO_CACHE)
def resolve_parent(snapshot: dict[str, Any], latent_dim: int,
                   artifacts_dir: str) -> dict[str, Any]:
    """The parent model of a run on ``snapshot``, its analyses and the batches added since."""
    parent = find_parent(artifacts_dir, snapshot, latent_dim)
    new = sum(b["count"] for b in parent["new_batches"])
    get_run_logger().info(f"Parent: {parent['reason']}"
                          + (f"; {new} images added since" if parent["run_id"] else ""))
    return parent
