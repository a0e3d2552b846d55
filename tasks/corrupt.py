"""corrupt: MNIST-C-style corruptions of the test split (``evaluation.corruptions``).

Model-independent, and keyed on the test split's content alone (not the whole
splits): every snapshot of a dataset shares its test split, so a retrain on new
data reuses them and only scores them with its model (``analyze``).
"""

from __future__ import annotations

from typing import Any

from prefect import task

from mnist_autoencoder.evaluation.corruptions import corrupted_images
from mnist_autoencoder.paths import stage_root
from tasks.caching import stage_task_options
from tasks.io import StageIO, read_splits

CORRUPTED_FILE = "corrupted.npz"


@task(**stage_task_options("corrupt", ignore=("splits",)))
def corrupt(splits: dict[str, Any], test_sha256: str, seed: int,
            artifacts_dir: str) -> dict[str, Any]:
    """Every corruption of the test split as 8-bit images; return ``{dir, files, hash}``."""
    io = StageIO(stage_root(artifacts_dir, "corrupt"), splits)
    test = read_splits(splits, ("test",))["test"]
    io.log(f"Corrupting the {len(test.y)} test images (test split {test_sha256[:12]})")
    return io.write({CORRUPTED_FILE: corrupted_images(test.x, seed)})
