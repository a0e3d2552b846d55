"""Baselines: what the autoencoder is compared with, computed once per split and code size.

- PCA with as many components as the code, fitted on the training split: test
  MSE and BCE of its reconstructions;
- the linear probe (``probes.linear_probe``) on raw pixels and on PCA codes.

None of this depends on the trained model, so retraining the same split never
recomputes it. A new snapshot changes the training split; its probes then start
from an earlier snapshot's (``warm``, see ``probes``): the raw-pixel probe takes
about 25 s from scratch on 2 cores and under 2 s warm.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnist_autoencoder.data.splits import Split
from mnist_autoencoder.evaluation.metrics import mean_errors
from mnist_autoencoder.evaluation.probes import describe_fit, linear_probe, states_file


def fit_pca(x_train: np.ndarray, n_components: int, seed: int):
    from sklearn.decomposition import PCA

    return PCA(n_components=n_components, random_state=seed).fit(x_train)


def compute_baselines(train: Split, test: Split, n_components: int, seed: int, log=print,
                      warm: dict[str, dict[str, np.ndarray]] | None = None
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """PCA's test errors and the probes on PCA codes and raw pixels.

    ``warm`` maps a probe's name to an earlier probe's state to start from.
    Returns (``{file name: value}`` to write, summary); ``probes.npz`` holds the
    probes' states for the next warm start.
    """
    log(f"PCA with {n_components} components")
    pca = fit_pca(train.x, n_components, seed)
    pca_test = pca.transform(test.x)
    errors = mean_errors(test.x, pca.inverse_transform(pca_test))
    summary: dict[str, Any] = {"n_components": n_components, "pca_test_mse": errors["test_mse"],
                               "pca_test_bce": errors["test_bce"], "probe_accuracy": {}}
    features = {"PCA codes": (pca.transform(train.x), pca_test), "raw pixels": (train.x, test.x)}
    states = {}
    for name, (train_features, test_features) in features.items():
        log(f"Linear probe on {name} ({train_features.shape[1]} features)")
        accuracy, _, states[name] = linear_probe(train_features, train.y, test_features, test.y,
                                                 seed, (warm or {}).get(name))
        summary["probe_accuracy"][name] = accuracy
        log(f"Probe on {name}: accuracy {accuracy:.4f} ({describe_fit(states[name])})")
    return {"baselines.json": summary, "probes.npz": states_file(states)}, summary


def baselines_content(splits_sha256: str, n_components: int) -> str:
    """What a baselines output is indexed by: the splits it was fitted on, and its code size
    (a retrain on a grown snapshot starts from its parent's, ``lifecycle.lineage``)."""
    return f"splits-{splits_sha256[:24]}-k{n_components}"
