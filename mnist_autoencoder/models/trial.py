"""A sweep trial: a model variant at one code size and seed, trained and scored.

A trial trains with the pipeline's training code (``training.train_model``,
checkpointed per epoch) and is scored with the pipeline's metrics: test-set BCE
and MSE per image (``metrics``) and the linear probe (``probes``) on the codes.
The reference variant ``pca`` is PCA with as many components as the code, scored
the same way (reconstructions clipped to [0, 1] for BCE), so every code size has
a classical point of comparison.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mnist_autoencoder.data.splits import Split
from mnist_autoencoder.errors import ParameterError
from mnist_autoencoder.evaluation.baselines import fit_pca
from mnist_autoencoder.evaluation.metrics import mean_errors
from mnist_autoencoder.paths import HISTORY_FILE

VARIANTS = ("shallow", "sparse", "deep", "conv", "vae")  # built by ``variants``
REFERENCE = "pca"


def _fit_pca(train: Split, test: Split, latent_dim: int, seed: int) -> dict[str, Any]:
    pca = fit_pca(train.x, latent_dim, seed)
    test_codes = pca.transform(test.x)
    return {"reconstruction": pca.inverse_transform(test_codes),
            "train_codes": pca.transform(train.x), "test_codes": test_codes, "outputs": {},
            "parameters": int(pca.components_.size + pca.mean_.size), "epochs_run": 0,
            "final_loss": None}


def _fit_network(variant: str, train: Split, val: Split, test: Split, latent_dim: int,
                 seed: int, training: dict[str, Any], checkpoint: Path | None,
                 log) -> dict[str, Any]:
    import pandas as pd

    from mnist_autoencoder.models.inference import apply_in_chunks
    from mnist_autoencoder.models.training import train_model

    fitted = train_model(variant, train.x, val.x, latent_dim=latent_dim, seed=seed,
                         checkpoint=checkpoint, log=log,
                         label=f"{variant}/{latent_dim}/seed {seed} ", **training)
    test_codes = apply_in_chunks(fitted.encoder, test.x)
    return {"reconstruction": apply_in_chunks(fitted.decoder, test_codes),
            "train_codes": apply_in_chunks(fitted.encoder, train.x), "test_codes": test_codes,
            "outputs": fitted.models | {HISTORY_FILE: pd.DataFrame(fitted.history)},
            "parameters": fitted.parameters, "epochs_run": len(fitted.history),
            "final_loss": fitted.history[-1]["loss"]}


def run_trial(splits: dict[str, Split], *, variant: str, latent_dim: int, seed: int,
              training: dict[str, Any] | None, probe: bool, checkpoint: Path | None = None,
              log=print) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit ``variant`` (or PCA) and score it; return (``{file name: value}``, metrics).

    ``splits`` holds train and test (and val for networks); ``training`` holds
    ``epochs, batch_size, learning_rate, patience`` (PCA takes none).
    """
    if variant not in (*VARIANTS, REFERENCE):
        raise ParameterError(f"unknown variant {variant!r}; choose one of {[*VARIANTS, REFERENCE]}")
    train, test = splits["train"], splits["test"]
    started = time.perf_counter()
    if variant == REFERENCE:
        fitted = _fit_pca(train, test, latent_dim, seed)
    else:
        fitted = _fit_network(variant, train, splits["val"], test, latent_dim, seed, training,
                              checkpoint, log)
    seconds = time.perf_counter() - started
    metrics = mean_errors(test.x, fitted["reconstruction"]) | {
        "variant": variant, "latent_dim": latent_dim, "seed": seed,
        "parameters": fitted["parameters"], "epochs_run": fitted["epochs_run"],
        "final_loss": fitted["final_loss"], "fit_seconds": round(seconds, 2),
        "probe_accuracy": None,
    }
    if probe:
        from mnist_autoencoder.evaluation.probes import linear_probe

        log(f"Linear probe on {latent_dim}-d {variant} codes")
        metrics["probe_accuracy"] = linear_probe(fitted["train_codes"], train.y,
                                                 fitted["test_codes"], test.y, seed)[0]
    log(f"{variant} latent {latent_dim} seed {seed}: test BCE {metrics['test_bce']:.4f}, "
        f"MSE {metrics['test_mse']:.4f}, probe {metrics['probe_accuracy']}")
    return fitted["outputs"] | {"metrics.json": metrics}, metrics
