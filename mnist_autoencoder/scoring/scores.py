"""Anomaly scores of new images under a trained model, calibrated on its validation split.

Per image the model gives a code, the reconstruction errors BCE and MSE, and
``kl``: the BCE minus the image's own pixel entropy (the BCE of the image with
itself), a complexity correction in the manner of Serra et al. (2020) that needs
no compressor. The default anomaly score is the larger of BCE and ``kl``, each
standardised on the validation split: BCE catches corrupted digits (blur,
rotation), ``kl`` stops simpler images than the training data from looking
normal (MNIST digits under a Fashion-MNIST model). The measurements behind the
choice are in ``docs/scoring.md``.

``calibrate`` stores the statistics a score needs and the quantiles of its
validation scores, from which the threshold for any false-positive rate
follows (default 1%); they go beside the model as ``calibration.json``.

Codes and errors come from one XLA-compiled function over fixed-size chunks:
the reconstructions never leave it, which is what makes scoring fast.
TensorFlow is imported when a ``Scorer`` is built, not when this module is imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_autoencoder.data.pixels import as_unit_pixels
from mnist_autoencoder.errors import ParameterError, StateError
from mnist_autoencoder.evaluation.metrics import EPSILON
from mnist_autoencoder.paths import CALIBRATION_FILE

CHUNK = 8192
DEFAULT_FPR = 0.01
QUANTILES = 2001  # validation-score quantiles stored: thresholds for any rate >= 0.0005
# The false-positive rates a threshold can be asked for, open at both ends: above 0 (a
# threshold past every validation score flags nothing), below 0.5 (flagging half or
# more of the normal images puts the threshold below the median score: the "anomalies"
# would be the majority). The one range: params.validate_score checks it with check_fpr.
FPR_RANGE = (0.0, 0.5)


def check_fpr(fpr: float) -> None:
    """Raise ``ParameterError`` unless ``fpr`` lies inside ``FPR_RANGE``."""
    low, high = FPR_RANGE
    if not low < fpr < high:
        raise ParameterError(f"Invalid parameter fpr={fpr!r}: the share of normal images to "
                             f"flag: in ({low:g}, {high:g}).")


def _max_z(*names: str) -> Callable[[dict[str, np.ndarray], dict[str, Any]], np.ndarray]:
    """The largest of the named components, each standardised on the validation split."""
    def score(parts: dict[str, np.ndarray], stats: dict[str, Any]) -> np.ndarray:
        return np.max([(parts[n] - stats["mean"][n]) / stats["std"][n] for n in names], axis=0)
    return score


# name -> score from the per-image components (bce, mse, kl) and the calibration statistics
SCORES: dict[str, Callable[[dict[str, np.ndarray], dict[str, Any]], np.ndarray]] = {
    "bce": lambda parts, stats: parts["bce"],
    "mse": lambda parts, stats: parts["mse"],
    "kl": lambda parts, stats: parts["kl"],
    "max_z(bce,kl)": _max_z("bce", "kl"),
    "max_z(bce,mse)": _max_z("bce", "mse"),
}
DEFAULT_SCORE = "max_z(bce,kl)"


@dataclass(frozen=True)
class Calibration:
    """What scoring needs besides the model: score statistics and validation quantiles."""

    score: str
    mean: dict[str, float]  # per component, on the validation split
    std: dict[str, float]
    quantiles: list[float]  # QUANTILES evenly spaced quantiles of validation scores
    n_validation: int

    def stats(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def threshold(self, fpr: float) -> float:
        """The score above which a share ``fpr`` of the validation split lies."""
        check_fpr(fpr)
        grid = np.linspace(0, 1, len(self.quantiles))
        return float(np.interp(1 - fpr, grid, self.quantiles))

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"thresholds": {str(f): self.threshold(f)
                                              for f in (0.001, 0.005, 0.01, 0.05, 0.1)}}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Calibration:
        fields = {k: v for k, v in value.items() if k in cls.__dataclass_fields__}
        return cls(**fields)


def make_error_function(encoder, decoder, chunk: int = CHUNK):
    """An XLA-compiled ``x -> (codes, {bce, mse, kl})`` for one model, chunk by chunk.

    BCE is the pixel mean with Keras' clipping, in float32 (within 2e-7 of
    ``metrics.per_sample_bce``); the last chunk is padded to the same shape so the
    function compiles once.
    """
    import tensorflow as tf

    def bce(x, p):
        p = tf.clip_by_value(p, EPSILON, 1 - EPSILON)
        return -tf.reduce_mean(x * tf.math.log(p) + (1 - x) * tf.math.log(1 - p), axis=1)

    @tf.function(jit_compile=True, reduce_retracing=True)
    def errors(x):
        codes = encoder(x, training=False)
        p = decoder(codes, training=False)
        error = bce(x, p)
        return codes, error, tf.reduce_mean(tf.square(x - p), axis=1), error - bce(x, x)

    def apply(x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        parts = []
        for start in range(0, len(x), chunk):
            part = x[start:start + chunk]
            n = len(part)
            if n < chunk:
                part = np.concatenate([part, np.zeros((chunk - n, x.shape[1]), x.dtype)])
            parts.append([t.numpy()[:n] for t in errors(tf.constant(part))])
        codes, bce_, mse, kl = (np.concatenate(p) for p in zip(*parts))
        return codes, {"bce": bce_, "mse": mse, "kl": kl}

    return apply


def calibrate(errors: Callable, x_val: np.ndarray, score: str = DEFAULT_SCORE) -> Calibration:
    """Fit the score's statistics and distribution on the validation images ``x_val``."""
    if score not in SCORES:
        raise ParameterError(f"unknown score {score!r}; choose one of {sorted(SCORES)}")
    parts = errors(x_val)[1]
    mean = {k: float(v.mean()) for k, v in parts.items()}
    std = {k: float(v.std()) or 1.0 for k, v in parts.items()}
    values = SCORES[score](parts, {"mean": mean, "std": std})
    return Calibration(score, mean, std,
                       np.quantile(values, np.linspace(0, 1, QUANTILES)).tolist(), len(x_val))


class Scorer:
    """A trained model ready to encode, reconstruct and score images (see ``load_scorer``)."""

    def __init__(self, encoder, decoder, calibration: Calibration | None):
        self.encoder, self.decoder, self.calibration = encoder, decoder, calibration
        self.errors = make_error_function(encoder, decoder)

    def encode(self, x: np.ndarray) -> np.ndarray:
        from mnist_autoencoder.models.inference import apply_in_chunks

        return apply_in_chunks(self.encoder, _pixels(x))

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        from mnist_autoencoder.models.inference import apply_in_chunks

        return apply_in_chunks(self.decoder, self.encode(x))

    def columns(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Per image: ``codes``, ``bce``, ``mse``, ``kl`` and ``score``."""
        if self.calibration is None:
            raise StateError("this model has no calibration.json: train it again "
                             "(make run) to calibrate its anomaly score")
        codes, parts = self.errors(_pixels(x))
        return {"codes": codes, **parts,
                "score": SCORES[self.calibration.score](parts, self.calibration.stats())}

    def score(self, x: np.ndarray) -> np.ndarray:
        """The calibrated anomaly score of each image (higher: less like the training data)."""
        return self.columns(x)["score"]

    def flag(self, x: np.ndarray, fpr: float = DEFAULT_FPR) -> np.ndarray:
        """True for images scored above the threshold that flags ``fpr`` of validation images."""
        return self.score(x) > self.calibration.threshold(fpr)


def _pixels(x: np.ndarray) -> np.ndarray:
    """Images as (n, 784) float32 in [0, 1], from uint8 or float, flat or 28x28."""
    x = np.asarray(x)
    return as_unit_pixels(x.reshape(len(x), -1), "images")


def load_scorer(model_dir: str | Path) -> Scorer:
    """The model saved in ``model_dir`` (a training run's or a champion's folder)."""
    from mnist_autoencoder.models.inference import load_model

    model_dir = Path(model_dir)
    path = model_dir / CALIBRATION_FILE
    calibration = Calibration.from_json(json.loads(path.read_text())) if path.is_file() else None
    return Scorer(load_model(model_dir, "encoder.keras"), load_model(model_dir, "decoder.keras"),
                  calibration)
