"""Where things live. Every path the pipeline reads or writes is derived here.

Nothing is created at import time; stages create the directories they write to.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Prefect cache records (small JSON-like results and their locks). Override with
# MNIST_AE_CACHE_DIR, e.g. to share one cache between clones or to isolate tests.
CACHE_DIR_ENV = "MNIST_AE_CACHE_DIR"

# The files of a trained model's directory (a training run's, a trial's, a champion's).
MODEL_FILES = ("autoencoder.keras", "encoder.keras", "decoder.keras")
HISTORY_FILE = "history.csv"
CALIBRATION_FILE = "calibration.json"  # the anomaly score's statistics and thresholds
# In baselines and analyze outputs: what they were computed from (the splits, the model), by
# which a later run finds its parent's (``lineage``).
SOURCE_FILE = "source.json"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV, PROJECT_ROOT / ".cache" / "prefect")).resolve()


def resolve_dir(path: str | Path) -> Path:
    """Resolve a user-given directory relative to the project root, not the CWD.

    A Prefect worker may start the flow from another working directory; anchoring
    relative paths at the project keeps local runs and deployment runs identical.
    """
    path = Path(path).expanduser()
    return (path if path.is_absolute() else PROJECT_ROOT / path).resolve()


def raw_dir(data_dir: Path, dataset: str) -> Path:
    return data_dir / "raw" / dataset


def processed_dir(data_dir: Path, dataset: str) -> Path:
    """Cached splits of ``dataset``, one directory per preprocess cache key below it."""
    return data_dir / "processed" / dataset


def download_dir(data_dir: str | Path, location: str) -> Path:
    """Where images given by URL are downloaded to, once per URL."""
    import hashlib

    return Path(data_dir) / "inputs" / hashlib.sha256(location.encode()).hexdigest()[:16]


def stage_root(artifacts_dir: str | Path, stage: str) -> Path:
    """Where one stage's outputs go, one directory per cache key below it."""
    return Path(artifacts_dir) / stage


def models_dir(artifacts_dir: str | Path) -> Path:
    """The champion registry: ``registry.parquet`` and one folder per dataset."""
    return Path(artifacts_dir) / "models"


def checkpoint_path(out_dir: Path) -> Path:
    """Where training checkpoints the run that will fill ``out_dir`` (beside it, not in it)."""
    return out_dir.parent / ".checkpoints" / f"{out_dir.name}.npz"
