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
from mnist_autoencoder.data.splits import (
    SAMPLE_LIMITS,
    normalize,
    select_training_rows,
    training_rows,
)
from mnist_autoencoder.models.training import TrainingConfig, train_model
from mnist_autoencoder.paths import CALIBRATION_FILE, HISTORY_FILE, stage_root
from mnist_autoencoder.scoring.scores import DEFAULT_FPR, calibrate, make_error_function
from tasks.caching import stage_task_options
from tasks.io import StageIO, open_splits


@task(**stage_task_options("train"),
      retries=1, retry_delay_seconds=5)  # a retry resumes from the last epoch's checkpoint
def train(splits: dict[str, Any], latent_dim: int, seed: int,
          training: TrainingConfig, artifacts_dir: str,
          init: dict[str, Any] | None = None, new_batches: list[str] | None = None,
          replay: int = 0) -> dict[str, Any]:
    """Train the seed autoencoder; return ``{dir, files, hash, epochs_run, config, ...}``.

    ``init``: the stored model to start from (its ``{dir, files, hash, model_sha256}``); None
    trains from scratch, on every training row. A warm start trains on the rows of
    ``new_batches`` (the batches since the parent) plus ``replay`` rows drawn from the
    rest: its cost follows the new data, not the history. Progress is checkpointed
    after every epoch; a run killed mid-way resumes there.
    """
    io = StageIO(stage_root(artifacts_dir, "train"), splits, *([init] if init else []))
    view = open_splits(splits)
    rows, counts = select_training_rows(view, set(new_batches) if init else None, replay, seed)
    val = view.pixels("val", view.sample_ranks("val", SAMPLE_LIMITS["val"]))
    config = {"latent_dim": latent_dim, **training.model_dump(), "seed": seed}
    fitted = train_model("shallow", training_rows(view, rows), val, checkpoint=io.checkpoint,
                         init=init and Path(init["dir"]), log=io.log, **config)
    config |= ({"init": "warm", "parent_model_sha256": init["model_sha256"]} if init
               else {"init": "scratch"}) | {"rows": counts | {"val": len(val)}}
    calibration = calibrate(make_error_function(fitted.encoder, fitted.decoder),
                            normalize(val))
    io.log(f"Anomaly score {calibration.score} (fitted on {calibration.n_fit} validation "
           f"images, calibrated on {calibration.n_calibration}): threshold "
           f"{calibration.threshold(DEFAULT_FPR):.4g} flags {DEFAULT_FPR:.0%} of those images")
    return io.write(fitted.models | {HISTORY_FILE: pd.DataFrame(fitted.history),
                                     CALIBRATION_FILE: calibration.to_json()},
                    **fitted.summary(training.epochs), config=config,
                    code_version=code_version((__name__,))[:16])
