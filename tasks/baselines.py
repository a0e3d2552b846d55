"""baselines: what the autoencoder is compared with, computed once per split and code size.

- PCA with as many components as the code, fitted on the training split: test
  MSE and BCE of its reconstructions;
- the linear probe (see ``tasks.analyze.linear_probe``) on raw pixels and on PCA
  codes.

None of this depends on the trained model, so retraining never recomputes it
(the raw-pixel probe alone takes about 30 s on 2 cores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from prefect import get_run_logger, task

from tasks.analyze import linear_probe
from tasks.caching import current_cache_key, stage_task_options
from tasks.evaluate import per_sample_bce, per_sample_mse
from tasks.paths import stage_dir
from tasks.storage import atomic_dir, describe_outputs, require_valid, write_json_atomic


def fit_pca(x_train: np.ndarray, n_components: int, seed: int):
    from sklearn.decomposition import PCA

    return PCA(n_components=n_components, random_state=seed).fit(x_train)


def compute_baselines(splits_dir: Path, cache_format: str, n_components: int, seed: int,
                      out_dir: Path, log=print) -> dict[str, Any]:
    from tasks.preprocess import load_splits

    splits = load_splits(splits_dir, cache_format, names=("train", "test"))
    train, test = splits["train"], splits["test"]
    log(f"PCA with {n_components} components")
    pca = fit_pca(train.x, n_components, seed)
    pca_test = pca.transform(test.x)
    reconstruction = pca.inverse_transform(pca_test)
    summary: dict[str, Any] = {
        "n_components": n_components,
        "pca_test_mse": float(per_sample_mse(test.x, reconstruction).mean()),
        # PCA reconstructions leave [0, 1]; BCE needs probabilities, so they are clipped
        "pca_test_bce": float(per_sample_bce(test.x, np.clip(reconstruction, 0, 1)).mean()),
        "probe_accuracy": {},
    }
    features = {"PCA codes": (pca.transform(train.x), pca_test), "raw pixels": (train.x, test.x)}
    for name, (train_features, test_features) in features.items():
        log(f"Linear probe on {name} ({train_features.shape[1]} features)")
        summary["probe_accuracy"][name] = linear_probe(train_features, train.y, test_features,
                                                       test.y, seed)[0]
    with atomic_dir(out_dir) as tmp:
        write_json_atomic(tmp / "baselines.json", summary)
    return describe_outputs(out_dir, ["baselines.json"]) | {"summary": summary}


MODULES = ("tasks.baselines", "tasks.analyze", "tasks.evaluate", "tasks.preprocess",
           "tasks.storage")


@task(**stage_task_options("baselines", MODULES, packages=("scikit-learn",),
                           ignore=("cache_format",)))
def baselines(splits: dict[str, Any], cache_format: str, latent_dim: int, seed: int,
              artifacts_dir: str) -> dict[str, Any]:
    """PCA and raw-pixel references; return ``{dir, files, hash, summary}``."""
    require_valid(splits)
    logger = get_run_logger()
    return compute_baselines(Path(splits["dir"]), cache_format, latent_dim, seed,
                             stage_dir(Path(artifacts_dir), "baselines", current_cache_key()),
                             log=logger.info)
