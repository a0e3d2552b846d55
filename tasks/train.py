"""train: fit the autoencoder on the cached splits (``mnist_autoencoder.models.training``).

TensorFlow is imported by the core when training starts, not when this module
is imported: a fully cached run must not pay the 5-12 s TensorFlow import.
With ``init`` (the parent model, ``mnist_autoencoder.lifecycle.lineage``) training starts
from its weights: a warm start, which the config and the registry record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from mnist_autoencoder.codeversion import code_version
from mnist_autoencoder.models.training import TrainingConfig, train_model
from mnist_autoencoder.paths import CALIBRATION_FILE, HISTORY_FILE, stage_root
from mnist_autoencoder.scoring.scores import DEFAULT_FPR, calibrate, make_error_function
from tasks.caching import stage_task_options
from tasks.io import StageIO, read_splits


@task(**stage_task_options("train", ignore=("cache_format",)),
      retries=1, retry_delay_seconds=5)  # a retry resumes from the last epoch's checkpoint
def train(splits: dict[str, Any], cache_format: str, latent_dim: int, seed: int,
          training: TrainingConfig, artifacts_dir: str,
          init: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the seed autoencoder; return ``{dir, files, hash, epochs_run, config, ...}``.

    ``init``: the stored model to start from (its ``{dir, files, hash, model_sha256}``); None
    trains from scratch. Progress is checkpointed after every epoch; a run killed
    mid-way resumes there.
    """
    io = StageIO(stage_root(artifacts_dir, "train"), splits, *([init] if init else []))
    data = read_splits(splits, cache_format, ("train", "val"))
    config = {"latent_dim": latent_dim, **training.model_dump(), "seed": seed}
    fitted = train_model("shallow", data["train"].x, data["val"].x, checkpoint=io.checkpoint,
                         init=init and Path(init["dir"]), log=io.log, **config)
    config |= ({"init": "warm", "parent_model_sha256": init["model_sha256"]} if init
               else {"init": "scratch"})
    calibration = calibrate(make_error_function(fitted.encoder, fitted.decoder), data["val"].x)
    io.log(f"Anomaly score {calibration.score} (fitted on {calibration.n_fit} validation "
           f"images, calibrated on {calibration.n_calibration}): threshold "
           f"{calibration.threshold(DEFAULT_FPR):.4g} flags {DEFAULT_FPR:.0%} of those images")
    return io.write(fitted.models | {HISTORY_FILE: pd.DataFrame(fitted.history),
                                     CALIBRATION_FILE: calibration.to_json()},
                    **fitted.summary(training.epochs), config=config,
                    code_version=code_version((__name__,))[:16])
