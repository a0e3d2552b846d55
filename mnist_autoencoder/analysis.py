"""Analysis: how good is the representation? Linear probe, latent statistics, anomalies.

- a linear probe: logistic regression trained on training-set codes and scored
  on test codes, next to the same probe on raw pixels and PCA codes (from
  ``baselines``, which does not depend on the model);
- the test-set codes as a table, 2-D projections of the codes (PCA, and t-SNE on
  a seeded sample), per-unit statistics with the count of dead ReLU units;
- per-sample reconstruction errors, and the worst and best reconstructions.

The test codes and errors come from the evaluation, so the test set is
reconstructed once per model. The report turns these outputs into figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mnist_autoencoder.probes import linear_probe
from mnist_autoencoder.splits import Split

TSNE_SAMPLE = 2000
GALLERY_SIZE = 8


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


def analyze_representation(train: Split, test: Split, train_codes: np.ndarray,
                           test_errors: dict[str, np.ndarray],
                           decode: Callable[[np.ndarray], np.ndarray],
                           baselines: dict[str, Any], seed: int,
                           log=print) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run every analysis; return (``{file name: value}`` to write, summary).

    ``test_errors`` holds the test set's ``codes``, ``bce`` and ``mse`` per image;
    ``decode`` maps codes to reconstructions (used for the gallery only).
    """
    from sklearn.decomposition import PCA

    test_codes, bce, mse = test_errors["codes"], test_errors["bce"], test_errors["mse"]
    latent_dim = test_codes.shape[1]
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
    outputs = {
        "analysis.json": summary,
        "latent_codes.parquet": latent,
        "unit_stats.csv": units,
        "views.npz": {
            "probe_confusion": confusion,
            "pca_2d": PCA(n_components=2, random_state=seed).fit_transform(test_codes),
            "tsne_2d": tsne_projection(test_codes, sample, seed), "tsne_sample": sample,
            "labels": test.y, "bce": bce, "worst": worst, "best": best,
            "worst_x": test.x[worst], "worst_reconstruction": decode(test_codes[worst]),
            "best_x": test.x[best], "best_reconstruction": decode(test_codes[best])},
    }
    return outputs, summary


def anomaly_table(score: Callable[[np.ndarray], np.ndarray], threshold: float,
                  x_test: np.ndarray, seed: int) -> pd.DataFrame:
    """How the model's anomaly score separates corrupted test digits from clean ones.

    One row per MNIST-C-style corruption of the test split: AUROC against the
    clean test images, and the share flagged at ``threshold``; first a row with
    the clean test split's own flagged share (the false alarms).
    """
    from sklearn.metrics import roc_auc_score

    from mnist_autoencoder.corruptions import CORRUPTIONS, MILD, corrupt

    normal = score(x_test)
    rows = [("test split, clean", "", float("nan"), float(np.mean(normal > threshold)))]
    truth = np.r_[np.zeros(len(normal)), np.ones(len(normal))]
    for name in CORRUPTIONS:
        scores = score(corrupt(x_test, name, seed))
        rows.append((name, "mild" if name in MILD else "", roc_auc_score(truth, np.r_[
            normal, scores]), float(np.mean(scores > threshold))))
    return pd.DataFrame(rows, columns=["images", "kind", "AUROC", "flagged"])
