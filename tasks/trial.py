"""trial: one cell of a sweep, trained and scored (``mnist_autoencoder.models.trial``).

Each trial is its own cached stage: a sweep whose grid grows by one value trains
only the new trials. TensorFlow is imported only inside a trial that trains.
"""

from __future__ import annotations

from typing import Any

from prefect import task

from mnist_autoencoder.models.trial import REFERENCE, run_trial
from mnist_autoencoder.paths import stage_root
from mnist_autoencoder.roots import task_roots
from tasks.caching import stage_task_options
from tasks.io import StageIO, read_splits


@task(**stage_task_options("trial"),
      task_run_name="trial-{variant}-{latent_dim}-seed{seed}",
      retries=1, retry_delay_seconds=5)  # a retry resumes from the last epoch's checkpoint
def trial(splits: dict[str, Any], variant: str, latent_dim: int, seed: int,
          training: dict[str, Any] | None, probe: bool, artifacts_dir: str) -> dict[str, Any]:
    """Train and score one sweep trial; return ``{dir, files, hash, metrics}``."""
    with task_roots():  # on a Dask worker: the store's mirrors (docs/storage.md)
        io = StageIO(stage_root(artifacts_dir, "trial"), splits)
        names = ("train", "test") if variant == REFERENCE else ("train", "val", "test")
        outputs, metrics = run_trial(read_splits(splits, names), variant=variant,
                                     latent_dim=latent_dim, seed=seed, training=training,
                                     probe=probe, checkpoint=io.checkpoint, log=io.log)
        return io.write(outputs, metrics=metrics)
