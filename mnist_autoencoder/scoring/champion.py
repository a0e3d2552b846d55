"""The champion at work from Python, no Prefect needed.

    from mnist_autoencoder import load_champion
    m = load_champion("mnist")
    m.encode(x); m.reconstruct(x); m.score(x); m.flag(x, fpr=0.01)

``x`` holds 28x28 images, flat or not, as uint8 0-255 or float 0-1.
"""

from __future__ import annotations

from pathlib import Path

from mnist_autoencoder.lifecycle.registry import scoring_model_dir
from mnist_autoencoder.paths import models_dir, resolve_dir
from mnist_autoencoder.scoring.scores import Scorer, load_scorer


def load_champion(dataset: str = "mnist", artifacts_dir: str | Path = "artifacts",
                  model: str = "champion") -> Scorer:
    """The dataset's champion (or the registered run ``model``), checked against the registry.

    Raises ``registry.RegistryError`` saying what to do when there is none or it is damaged.
    """
    return load_scorer(scoring_model_dir(models_dir(resolve_dir(artifacts_dir)), dataset, model))
