"""baselines: PCA and raw-pixel references that need no model (``evaluation.baselines``)."""

from __future__ import annotations

from typing import Any

from prefect import task

from mnist_autoencoder.evaluation.baselines import baselines_content, compute_baselines
from mnist_autoencoder.evaluation.probes import read_states
from mnist_autoencoder.paths import SOURCE_FILE, stage_root
from tasks.caching import stage_task_options
from tasks.io import StageIO, read, read_splits


@task(**stage_task_options("baselines"))
def baselines(splits: dict[str, Any], latent_dim: int, seed: int,
              artifacts_dir: str, warm: dict[str, Any] | None = None) -> dict[str, Any]:
    """PCA with ``latent_dim`` components and the probes; return ``{dir, files, hash, summary}``.

    ``warm``: the parent run's baselines output, whose probes these start from.
    """
    io = StageIO(stage_root(artifacts_dir, "baselines"), splits, *([warm] if warm else []))
    data = read_splits(splits, ("train", "test"))
    outputs, summary = compute_baselines(data["train"], data["test"], latent_dim, seed,
                                         log=io.log,
                                         warm=read_states(warm and read(warm, "probes.npz")))
    source = {"splits_sha256": splits["hash"], "n_components": latent_dim, "seed": seed}
    written = io.write(outputs | {SOURCE_FILE: source}, summary=summary)
    io.index(baselines_content(splits["hash"], latent_dim), written)  # a retrain's start
    return written
