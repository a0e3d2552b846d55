"""evaluate: test-set metrics of the trained model (``evaluation.reconstruction``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import task

from mnist_autoencoder.evaluation.reconstruction import evaluate_reconstruction
from mnist_autoencoder.models.inference import reconstruct
from mnist_autoencoder.paths import stage_root
from tasks.caching import stage_task_options
from tasks.io import StageIO, read_splits


@task(**stage_task_options("evaluate"))
def evaluate(trained: dict[str, Any], splits: dict[str, Any],
             artifacts_dir: str) -> dict[str, Any]:
    """Evaluate the trained model on the test split (and the snapshot's recent holdout).

    Returns ``{dir, files, hash, metrics}``.
    """
    io = StageIO(stage_root(artifacts_dir, "evaluate"), trained, splits)
    data = read_splits(splits, ("test", "recent"))
    test, recent, n = data["test"], data["recent"], len(data["test"].y)
    codes, rebuilt = reconstruct(trained["dir"], np.concatenate([test.x, recent.x]))  # one load
    outputs, metrics = evaluate_reconstruction(
        test, codes[:n], rebuilt[:n], (recent, rebuilt[n:]) if len(recent.y) else None)
    io.log(f"Test metrics: {metrics}")
    return io.write(outputs, metrics=metrics)
