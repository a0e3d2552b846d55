"""analyze: how good is the representation? Linear probe, latent statistics, anomalies.

- a linear probe: logistic regression trained on training-set codes and scored
  on test codes, next to the same probe on raw pixels and PCA codes (computed
  once per split by ``tasks.baselines``, which does not depend on the model);
- the test-set codes as a table, 2-D projections of the codes (PCA, and t-SNE on
  a seeded sample), per-unit statistics with the count of dead ReLU units;
- per-sample reconstruction errors, and the worst and best reconstructions.

Pure NumPy/scikit-learn functions; only ``encode`` and ``reconstruct`` touch Keras.
The report stage turns these outputs into figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task

from tasks.caching import current_cache_key, stage_task_options
from tasks.evaluate import per_sample_bce, per_sample_mse, reconstruct
from tasks.paths import stage_dir
from tasks.storage import atomic_dir, describe_outputs, require_valid, write_json_atomic

PROBE_MAX_ITER = 300
TSNE_SAMPLE = 2000
GALLERY_SIZE = 8


def linear_probe(train_features: np.ndarray, train_labels: np.ndarray,
                 test_features: np.ndarray, test_labels: np.ndarray,
                 seed: int) -> tuple[float, np.ndarray]:
    """Standardise, fit logistic regression; return (test accuracy, confusion matrix)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER,
                                                               random_state=seed))
    predicted = probe.fit(train_features, train_labels).predict(test_features)
    labels = np.unique(np.concatenate([train_labels, test_labels]))
    return (float(np.mean(predicted == test_labels)),
            confusion_matrix(test_labels, predicted, labels=labels))


def unit_statistics(codes: np.ndarray) -> pd.DataFrame:
    """Per latent unit: mean, std, max and the fraction of samples where it is active (> 0)."""
    frame = pd.DataFrame({
        "unit": np.arange(codes.shape[1]),
        "mean": codes.mean(axis=0), "std": codes.std(axis=0), "max": codes.max(axis=0),
        "active_fraction": (codes > 0).mean(axis=0),
    })
    frame["dead"] = frame["max"] <= 0  # a ReLU unit that never fires on the test set
    return frame


def tsne_projection(codes: np.ndarray, sample: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    return TSNE(n_components=2, random_state=seed, init="pca",
                perplexity=30).fit_transform(codes[sample])


def extremes(errors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the k largest and the k smallest errors (worst first, best first)."""
    order = np.argsort(errors, kind="stable")
    return order[::-1][:k], order[:k]


def encode(model_dir: Path, x: np.ndarray) -> np.ndarray:
    import keras

    from tasks.evaluate import apply_in_chunks

    return apply_in_chunks(keras.models.load_model(model_dir / "encoder.keras"), x)


def analyze_representation(model_dir: Path, splits_dir: Path, cache_format: str, out_dir: Path,
                           baselines: dict[str, Any], seed: int, log=print) -> dict[str, Any]:
    """Run every analysis and write its data to ``out_dir``; return their description."""
    from sklearn.decomposition import PCA

    from tasks.preprocess import load_splits

    splits = load_splits(splits_dir, cache_format, names=("train", "test"))
    train, test = splits["train"], splits["test"]
    train_codes = encode(model_dir, train.x)
    test_codes, reconstruction = reconstruct(model_dir, test.x)
    latent_dim = test_codes.shape[1]
    bce, mse = per_sample_bce(test.x, reconstruction), per_sample_mse(test.x, reconstruction)

    units = unit_statistics(test_codes)
    log(f"Linear probe on {latent_dim}-d codes")
    accuracy, confusion = linear_probe(train_codes, train.y, test_codes, test.y, seed)
    summary: dict[str, Any] = {
        "latent_dim": latent_dim,
        "autoencoder_test_mse": float(mse.mean()), "autoencoder_test_bce": float(bce.mean()),
        "pca_test_mse": baselines["pca_test_mse"], "pca_test_bce": baselines["pca_test_bce"],
        "dead_units": int(units["dead"].sum()),
        "probe_accuracy": {"autoencoder codes": accuracy, **baselines["probe_accuracy"]},
    }

    sample = np.sort(np.random.default_rng(seed).choice(
        len(test.y), min(TSNE_SAMPLE, len(test.y)), replace=False))
    log(f"t-SNE of {len(sample)} test codes")
    worst, best = extremes(bce, GALLERY_SIZE)
    latent = pd.DataFrame(test_codes, columns=[f"z{i}" for i in range(latent_dim)])
    latent = latent.assign(index=test.index, label=test.y, bce=bce, mse=mse)
    with atomic_dir(out_dir) as tmp:
        write_json_atomic(tmp / "analysis.json", summary)
        latent.to_parquet(tmp / "latent_codes.parquet", index=False)
        units.to_csv(tmp / "unit_stats.csv", index=False)
        np.savez(tmp / "views.npz",
                 probe_confusion=confusion,
                 pca_2d=PCA(n_components=2, random_state=seed).fit_transform(test_codes),
                 tsne_2d=tsne_projection(test_codes, sample, seed), tsne_sample=sample,
                 labels=test.y, bce=bce,
                 worst=worst, best=best, worst_x=test.x[worst], worst_reconstruction=
                 reconstruction[worst], best_x=test.x[best], best_reconstruction=
                 reconstruction[best])
    files = ["analysis.json", "latent_codes.parquet", "unit_stats.csv", "views.npz"]
    return describe_outputs(out_dir, files) | {"summary": summary}


MODULES = ("tasks.analyze", "tasks.evaluate", "tasks.preprocess", "tasks.storage")


@task(**stage_task_options("analyze", MODULES,
                           packages=("tensorflow", "keras", "scikit-learn"),
                           ignore=("cache_format",)))
def analyze(trained: dict[str, Any], splits: dict[str, Any], baselines: dict[str, Any],
            cache_format: str, seed: int, artifacts_dir: str) -> dict[str, Any]:
    """Probe, latent views and anomalies; return ``{dir, files, hash, summary}``."""
    require_valid(trained)
    require_valid(splits)
    logger = get_run_logger()
    result = analyze_representation(
        Path(trained["dir"]), Path(splits["dir"]), cache_format,
        stage_dir(Path(artifacts_dir), "analyze", current_cache_key()), baselines["summary"],
        seed, log=logger.info)
    logger.info("Representation summary: %s", json.dumps(result["summary"]))
    return result
