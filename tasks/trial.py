"""trial: one cell of a sweep, a model variant at one code size and seed, trained and scored.

A trial trains with the pipeline's training loop (``tasks.model.fit_autoencoder``,
checkpointed per epoch) and is scored with the pipeline's evaluation code:
test-set BCE and MSE per sample as in ``tasks.evaluate``, and the linear probe of
``tasks.analyze`` on the codes. The reference variant ``pca`` is PCA with as many
components as the code, scored the same way (reconstructions clipped to [0, 1]
for BCE), so every latent size has a classical point of comparison.

Each trial is its own cached stage: a sweep whose grid grows by one value trains
only the new trials. TensorFlow is imported only inside a trial that trains.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task

from tasks.caching import current_cache_key, stage_task_options
from tasks.paths import checkpoint_path, stage_dir
from tasks.storage import atomic_dir, describe_outputs, require_valid, write_json_atomic
from tasks.train import MODEL_FILES

VARIANTS = ("shallow", "sparse", "deep", "conv", "vae")  # built by tasks.variants
REFERENCE = "pca"


def run_trial(splits_dir: Path, cache_format: str, out_dir: Path, *, variant: str,
              latent_dim: int, seed: int, training: dict[str, Any] | None, probe: bool,
              log=print) -> dict[str, Any]:
    """Fit ``variant`` (or PCA), score it on the test split, write its outputs to ``out_dir``.

    ``training`` holds ``epochs, batch_size, learning_rate, patience``; PCA takes none.
    Returns the outputs' description with ``metrics``.
    """
    from tasks.preprocess import load_splits

    if variant not in (*VARIANTS, REFERENCE):
        raise ValueError(f"unknown variant {variant!r}; choose one of {[*VARIANTS, REFERENCE]}")
    names = ("train", "test") if variant == REFERENCE else ("train", "val", "test")
    splits = load_splits(splits_dir, cache_format, names=names)
    train, test = splits["train"], splits["test"]
    started = time.perf_counter()
    if variant == REFERENCE:
        fitted = _fit_pca(train.x, test.x, latent_dim, seed)
    else:
        fitted = _fit_network(variant, train.x, splits["val"].x, test.x, latent_dim, seed,
                              training, checkpoint_path(out_dir), log)
    seconds = time.perf_counter() - started
    metrics = score(test.x, fitted["reconstruction"]) | {
        "variant": variant, "latent_dim": latent_dim, "seed": seed,
        "parameters": fitted["parameters"], "epochs_run": fitted["epochs_run"],
        "final_loss": fitted["final_loss"], "fit_seconds": round(seconds, 2),
        "probe_accuracy": None,
    }
    if probe:
        from tasks.analyze import linear_probe

        log(f"Linear probe on {latent_dim}-d {variant} codes")
        metrics["probe_accuracy"] = linear_probe(fitted["train_codes"], train.y,
                                                 fitted["test_codes"], test.y, seed)[0]
    log(f"{variant} latent {latent_dim} seed {seed}: test BCE {metrics['test_bce']:.4f}, "
        f"MSE {metrics['test_mse']:.4f}, probe {metrics['probe_accuracy']}")
    with atomic_dir(out_dir) as tmp:
        for name, model in fitted["models"].items():
            model.save(tmp / name)
        if fitted["history"]:
            pd.DataFrame(fitted["history"]).to_csv(tmp / "history.csv", index=False)
        write_json_atomic(tmp / "metrics.json", metrics)
    checkpoint_path(out_dir).unlink(missing_ok=True)
    files = [*fitted["models"], *(["history.csv"] if fitted["history"] else []), "metrics.json"]
    return describe_outputs(out_dir, files) | {"metrics": metrics}


def score(x, reconstruction) -> dict[str, float]:
    """Test-set reconstruction metrics of a trial, computed as the evaluate stage does."""
    import numpy as np

    from tasks.evaluate import per_sample_bce, per_sample_mse

    clipped = np.clip(reconstruction, 0, 1)  # only PCA leaves [0, 1]
    return {"test_bce": float(per_sample_bce(x, clipped).mean()),
            "test_mse": float(per_sample_mse(x, reconstruction).mean())}


def _fit_pca(x_train, x_test, latent_dim: int, seed: int) -> dict[str, Any]:
    from tasks.baselines import fit_pca

    pca = fit_pca(x_train, latent_dim, seed)
    test_codes = pca.transform(x_test)
    return {"reconstruction": pca.inverse_transform(test_codes), "train_codes":
            pca.transform(x_train), "test_codes": test_codes, "models": {}, "history": [],
            "parameters": int(pca.components_.size + pca.mean_.size), "epochs_run": 0,
            "final_loss": None}


def _fit_network(variant: str, x_train, x_val, x_test, latent_dim: int, seed: int,
                 training: dict[str, Any], checkpoint: Path, log) -> dict[str, Any]:
    from tasks.evaluate import apply_in_chunks
    from tasks.model import fit_autoencoder
    from tasks.variants import JIT_COMPILE, build_variant

    autoencoder, encoder, decoder = build_variant(variant, x_train.shape[1], latent_dim,
                                                  training["learning_rate"], seed)
    epochs = training["epochs"]

    def report_epoch(epoch: int, row: dict[str, float]) -> None:
        log(f"{variant}/{latent_dim}/seed {seed} epoch {epoch}/{epochs}: loss {row['loss']:.4f}, "
            f"val_loss {row['val_loss']:.4f} ({row['seconds']:.2f} s)")

    history = fit_autoencoder(autoencoder, x_train, x_val, epochs=epochs,
                              batch_size=training["batch_size"], patience=training["patience"],
                              seed=seed, checkpoint=checkpoint, on_epoch_end=report_epoch,
                              jit_compile=JIT_COMPILE.get(variant, True))
    test_codes = apply_in_chunks(encoder, x_test)
    return {"reconstruction": apply_in_chunks(decoder, test_codes),
            "train_codes": apply_in_chunks(encoder, x_train), "test_codes": test_codes,
            "models": dict(zip(MODEL_FILES, (autoencoder, encoder, decoder))),
            "history": history, "parameters": int(autoencoder.count_params()),
            "epochs_run": len(history), "final_loss": history[-1]["loss"]}


MODULES = ("tasks.trial", "tasks.variants", "tasks.model", "tasks.evaluate", "tasks.analyze",
           "tasks.baselines", "tasks.preprocess", "tasks.storage", "tasks.train")


@task(**stage_task_options("trial", MODULES,
                           packages=("tensorflow", "keras", "scikit-learn"),
                           ignore=("cache_format",)),
      task_run_name="trial-{variant}-{latent_dim}-seed{seed}",
      retries=1, retry_delay_seconds=5)  # a retry resumes from the last epoch's checkpoint
def trial(splits: dict[str, Any], cache_format: str, variant: str, latent_dim: int, seed: int,
          training: dict[str, Any] | None, probe: bool, artifacts_dir: str) -> dict[str, Any]:
    """Train and score one sweep trial; return ``{dir, files, hash, metrics}``."""
    require_valid(splits)
    logger = get_run_logger()
    return run_trial(Path(splits["dir"]), cache_format,
                     stage_dir(Path(artifacts_dir), "trial", current_cache_key()),
                     variant=variant, latent_dim=latent_dim, seed=seed, training=training,
                     probe=probe, log=logger.info)
