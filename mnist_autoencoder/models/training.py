"""Training one model of any variant, with per-epoch checkpoints: shared by train and sweeps.

TensorFlow is imported when ``train_model`` runs, not when this module is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class TrainingConfig(BaseModel):
    """How a model is fitted: a parameter group of the flows (``params``), defined where it is
    used, so that the train stage's code version does not cover the flows' validation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(50, description="maximum number of epochs")
    batch_size: int = Field(256, description="samples per gradient step")
    learning_rate: float = Field(1e-3, description="Adam's learning rate")
    patience: int = Field(5, description="epochs without a lower training loss before stopping "
                          "early")

@dataclass
class TrainedModel:
    models: dict[str, Any]  # MODEL_FILES name -> Keras model
    history: list[dict[str, Any]]  # one {epoch, loss, val_loss, seconds} row per epoch run
    parameters: int

    @property
    def encoder(self):
        return self.models["encoder.keras"]

    @property
    def decoder(self):
        return self.models["decoder.keras"]

    def summary(self, epochs: int) -> dict[str, Any]:
        return {"epochs_run": len(self.history), "stopped_early": len(self.history) < epochs,
                "final_loss": self.history[-1]["loss"],
                "final_val_loss": self.history[-1]["val_loss"]}


def train_model(variant: str, x_train: np.ndarray | Any, x_val: np.ndarray, *, latent_dim: int,
                epochs: int, batch_size: int, learning_rate: float, patience: int, seed: int,
                checkpoint: Path | None = None, init: Path | None = None, log=print,
                label: str = "") -> TrainedModel:
    """Build ``variant`` and fit it on ``x_train``; log one line per epoch.

    ``x_train`` and ``x_val``: rows of pixels, uint8 (scaled inside the compiled step) or
    float in [0, 1]; ``x_train`` may also be a streamed source (``data.splits.Rows``).

    With ``init``, a saved model's folder of the same variant and code size, training
    starts from its weights (a warm start; the optimizer starts fresh). With
    ``checkpoint``, a killed run resumes from its last finished epoch.
    """
    from mnist_autoencoder.models.inference import load_model, model_outputs
    from mnist_autoencoder.models.model import fit_autoencoder
    from mnist_autoencoder.models.variants import JIT_COMPILE, build_variant

    autoencoder, encoder, decoder = build_variant(variant, x_val.shape[1], latent_dim,
                                                  learning_rate, seed)
    if init is not None:
        for name, model in (("encoder.keras", encoder), ("decoder.keras", decoder)):
            model.set_weights(load_model(init, name).get_weights())
        log(f"{label}Starting from the weights of {init}")
    if checkpoint is not None and checkpoint.is_file():
        log(f"{label}Resuming from the checkpoint {checkpoint}")
    log(f"{label}Training {variant} on {len(x_train)} samples, validating on {len(x_val)}, "
        f"up to {epochs} epochs of batch {batch_size}")

    def report_epoch(epoch: int, row: dict[str, float]) -> None:
        log(f"{label}epoch {epoch}/{epochs}: loss {row['loss']:.4f}, "
            f"val_loss {row['val_loss']:.4f} ({row['seconds']:.2f} s)")

    history = fit_autoencoder(autoencoder, x_train, x_val, epochs=epochs, batch_size=batch_size,
                              patience=patience, seed=seed, checkpoint=checkpoint,
                              on_epoch_end=report_epoch,
                              jit_compile=JIT_COMPILE.get(variant, True))
    return TrainedModel(model_outputs(autoencoder, encoder, decoder), history,
                        int(autoencoder.count_params()))
