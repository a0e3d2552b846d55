"""train: fit the autoencoder on the cached splits; save the three models and the history.

TensorFlow is imported inside the task body, not at module level: the flow
imports this module on every run, and a fully cached run must not pay the
7-12 s TensorFlow import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task

from tasks.caching import current_cache_key, stage_task_options
from tasks.paths import checkpoint_path, stage_dir
from tasks.storage import atomic_dir, describe_outputs, require_valid

MODEL_FILES = ("autoencoder.keras", "encoder.keras", "decoder.keras")
HISTORY_FILE = "history.csv"


def train_autoencoder(splits_dir: Path, cache_format: str, out_dir: Path, *, latent_dim: int,
                      epochs: int, batch_size: int, learning_rate: float, patience: int,
                      seed: int, log=print) -> dict[str, Any]:
    """Train on ``splits_dir``; write models and history to ``out_dir``; describe them.

    Progress is checkpointed beside ``out_dir`` after every epoch; a run killed
    mid-way resumes from there. The final directory appears only when complete.
    """
    from tasks.model import build_autoencoder, fit_autoencoder
    from tasks.preprocess import load_splits

    splits = load_splits(splits_dir, cache_format, names=("train", "val"))
    x_train, x_val = splits["train"].x, splits["val"].x
    autoencoder, encoder, decoder = build_autoencoder(x_train.shape[1], latent_dim,
                                                      learning_rate, seed)
    checkpoint = checkpoint_path(out_dir)
    if checkpoint.is_file():
        log(f"Resuming from the checkpoint {checkpoint}")
    log(f"Training on {len(x_train)} samples, validating on {len(x_val)}, "
        f"up to {epochs} epochs of batch {batch_size}")

    def report_epoch(epoch: int, row: dict[str, float]) -> None:
        log(f"epoch {epoch}/{epochs}: loss {row['loss']:.4f}, val_loss {row['val_loss']:.4f} "
            f"({row['seconds']:.2f} s)")

    history = fit_autoencoder(autoencoder, x_train, x_val, epochs=epochs, batch_size=batch_size,
                              patience=patience, seed=seed, checkpoint=checkpoint,
                              on_epoch_end=report_epoch)
    with atomic_dir(out_dir) as tmp:
        for model, name in zip((autoencoder, encoder, decoder), MODEL_FILES):
            model.save(tmp / name)
        pd.DataFrame(history).to_csv(tmp / HISTORY_FILE, index=False)
    checkpoint.unlink(missing_ok=True)
    return describe_outputs(out_dir, [*MODEL_FILES, HISTORY_FILE]) | {
        "epochs_run": len(history),
        "stopped_early": len(history) < epochs,
        "final_loss": history[-1]["loss"],
        "final_val_loss": history[-1]["val_loss"],
        "config": {"latent_dim": latent_dim, "epochs": epochs, "batch_size": batch_size,
                   "learning_rate": learning_rate, "patience": patience, "seed": seed},
    }


MODULES = ("tasks.train", "tasks.model", "tasks.preprocess", "tasks.storage")


@task(**stage_task_options("train", MODULES, packages=("tensorflow", "keras"),
                           ignore=("cache_format",)),
      retries=1, retry_delay_seconds=5)  # a retry resumes from the last epoch's checkpoint
def train(splits: dict[str, Any], cache_format: str, latent_dim: int, epochs: int,
          batch_size: int, learning_rate: float, patience: int, seed: int,
          artifacts_dir: str) -> dict[str, Any]:
    """Train the autoencoder; return ``{dir, files, hash, epochs_run, ...}``.

    ``cache_format`` is not part of the cache key: both formats hold identical arrays.
    """
    require_valid(splits)
    logger = get_run_logger()
    return train_autoencoder(
        Path(splits["dir"]), cache_format,
        stage_dir(Path(artifacts_dir), "train", current_cache_key()),
        latent_dim=latent_dim, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, patience=patience, seed=seed, log=logger.info)
