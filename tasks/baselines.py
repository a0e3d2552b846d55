"""baselines: PCA and raw-pixel references that need no model (``mnist_autoencoder.baselines``)."""

from __future__ import annotations

from typing import Any

from prefect import task

from mnist_autoencoder.baselines import compute_baselines
from mnist_autoencoder.paths import stage_root
from tasks.caching import stage_task_options
from tasks.io import StageIO, read_splits


@task(**stage_task_options("baselines", ignore=("cache_format",)))
def baselines(splits: dict[str, Any], cache_format: str, latent_dim: int, seed: int,
              artifacts_dir: str) -> dict[str, Any]:
    """PCA with ``latent_dim`` components and the probes; return ``{dir, files, hash, summary}``.

    ``cache_format`` is not part of the cache key: both formats hold identical arrays.
    """
    io = StageIO(stage_root(artifacts_dir, "baselines"), splits)
    data = read_splits(splits, cache_format, ("train", "test"))
    summary = compute_baselines(data["train"], data["test"], latent_dim, seed, log=io.log)
    return io.write({"baselines.json": summary}, summary=summary)
