"""Anomaly scores of new images under a trained model, calibrated on its validation split.

Per image the model gives a code, the reconstruction errors BCE and MSE, and
``kl``: the BCE minus the image's own pixel entropy (the BCE of the image with
itself), a complexity correction in the manner of Serra et al. (2020). The
default anomaly score, ``typicality``, is two-sided: a Gaussian mixture fitted
on four statistics of validation images (log BCE, log MSE, the code's log
Mahalanobis distance, the image's log entropy) scores an image by how unlikely
its statistics are, so an image reconstructed atypically well is as foreign as
one reconstructed badly (DoSE, Morningstar et al. 2021). The one-sided scores
stay selectable by name (``SCORES``). The measurements behind the choice are in
``docs/scoring.md``.

``calibrate`` fits every score on one half of the validation split and stores
the quantiles of its scores on the other half, from which the threshold for any
false-positive rate follows (default 1%): no threshold comes from images a score
was fitted on. It all goes beside the model as ``calibration.json``.

Codes, errors and the default score come from one XLA-compiled function over
fixed-size chunks: the reconstructions never leave it, which is what makes
scoring fast (other scores are applied in NumPy after it).
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


# ---- the scores: each is fitted on the FIT half of the validation split, then applied ------

Columns = dict[str, np.ndarray]  # per image: codes, bce, mse, kl
Params = dict[str, Any]  # what a score fitted, JSON-ready


@dataclass(frozen=True)
class Score:
    """One anomaly score: what it fits on validation images, and how it scores an image."""

    name: str
    fit: Callable[[Columns], Params]
    apply: Callable[[Columns, Params], np.ndarray]
    check: Callable[[Params], str | None] = lambda params: None  # what is wrong with params
    # the same score as TensorFlow ops, compiled into the error function (params -> a
    # function of codes, bce, mse, kl); None: applied in NumPy after it
    graph: Callable[[Params], Callable] | None = None


def _nothing(columns: Columns) -> Params:
    return {}


def _column(name: str) -> Score:
    return Score(name, _nothing, lambda columns, params: columns[name])


def _max_z(*names: str) -> Score:
    """The largest of the named components, each standardised on the validation split."""
    def fit(columns: Columns) -> Params:
        return {"mean": {n: float(columns[n].mean()) for n in names},
                "std": {n: float(columns[n].std()) or 1.0 for n in names}}

    def apply(columns: Columns, params: Params) -> np.ndarray:
        return np.max([(columns[n] - params["mean"][n]) / params["std"][n] for n in names],
                      axis=0)
    return Score(f"max_z({','.join(names)})", fit, apply)


# ---- typicality: how unlikely an image's reconstruction statistics are, in either direction --
#
# DoSE (Morningstar et al., AISTATS 2021): per image, four statistics of the model; a
# Gaussian mixture fitted on those of validation images; the score is the negative log
# density. An image reconstructed atypically *well* (MNIST digits under a Fashion-MNIST
# model: BCE 0.20 AUROC one-sided) is as foreign as one reconstructed badly. Chosen on
# validation images and anomalies made from them only (docs/scoring.md).

STAT_EPS = 1e-6
STATISTICS = ("log_bce", "log_mse", "log_mahalanobis", "log_entropy")
COMPONENTS = 8  # mixture components with 1,000 or more fitting images (measured stable)
IMAGES_PER_COMPONENT = 125  # fewer fitting images: one component per 125 (119 parameters at 8)
MIN_FIT = 50  # one full-covariance Gaussian of 4 statistics: 14 parameters
# The fitting and calibrating halves of the validation split: a fixed permutation, so that a
# retrain on the same split fits the same density.
SPLIT_SEED = 23


def code_whitening(codes: np.ndarray) -> Params:
    """Mean and whitening matrix of the codes: ``|(c - mean) @ W|^2`` is the Mahalanobis d^2."""
    codes = np.asarray(codes, np.float64)
    covariance = np.cov(codes, rowvar=False) + STAT_EPS * np.eye(codes.shape[1])
    whitening = np.linalg.inv(np.linalg.cholesky(covariance)).T
    return {"code_mean": codes.mean(0).tolist(), "code_whitening": whitening.tolist()}


def statistics(columns: Columns, params: Params) -> np.ndarray:
    """(n, 4): log BCE, log MSE, log Mahalanobis d^2 of the code, log of the image's entropy."""
    # float32: the scores agree with float64 to about 1e-5, at half the time
    y = (np.asarray(columns["codes"], np.float32) - np.asarray(params["code_mean"], np.float32)) \
        @ np.asarray(params["code_whitening"], np.float32)
    entropy = np.maximum(columns["bce"] - columns["kl"], 0)  # the BCE of the image with itself
    return np.stack([np.log(columns["bce"] + STAT_EPS), np.log(columns["mse"] + STAT_EPS),
                     np.log(np.einsum("ij,ij->i", y, y) + STAT_EPS),
                     np.log(entropy + STAT_EPS)], axis=1)


def _fit_typicality(columns: Columns) -> Params:
    from sklearn.mixture import GaussianMixture

    n = len(columns["bce"])
    params = code_whitening(columns["codes"])
    values = statistics(columns, params)
    mean, std = values.mean(0), values.std(0)
    std[std == 0] = 1.0
    k = max(1, min(COMPONENTS, n // IMAGES_PER_COMPONENT))
    mixture = GaussianMixture(n_components=k, covariance_type="full", random_state=0)
    mixture.fit((values - mean) / std)
    return params | {"mean": mean.tolist(), "std": std.tolist(),
                     "weights": mixture.weights_.tolist(), "means": mixture.means_.tolist(),
                     "precisions_cholesky": mixture.precisions_cholesky_.tolist()}


def _mixture(params: Params) -> dict[str, np.ndarray]:
    """The fitted parameters as float32 arrays, the mixture's per-component products folded.

    Component k's whitened residual is ``(z - m_k) @ P_k``; all components come from one
    product, ``z @ factors - offsets`` with ``factors = [P_1 .. P_K]`` and ``offsets =
    [m_1 P_1 .. m_K P_K]`` (5% of scoring's time, not 30%); ``constants`` hold each
    component's log weight + log det P_k - d/2 log 2 pi.
    """
    means = np.asarray(params["means"], np.float32)
    cholesky = np.asarray(params["precisions_cholesky"], np.float32)
    k, d = means.shape
    constants = (np.log(np.asarray(params["weights"])) - 0.5 * d * np.log(2 * np.pi)
                 + np.log(np.diagonal(cholesky, axis1=1, axis2=2)).sum(1))
    return {"code_mean": np.asarray(params["code_mean"], np.float32),
            "code_whitening": np.asarray(params["code_whitening"], np.float32),
            "mean": np.asarray(params["mean"], np.float32),
            "std": np.asarray(params["std"], np.float32),
            "factors": cholesky.transpose(1, 0, 2).reshape(d, k * d),
            "offsets": np.einsum("kd,kde->ke", means, cholesky).reshape(k * d),
            "constants": constants.astype(np.float32)}


def _typicality(columns: Columns, params: Params) -> np.ndarray:
    """The negative log density of the standardised statistics under the fitted mixture."""
    mixture = _mixture(params)
    z = (statistics(columns, mixture) - mixture["mean"]) / mixture["std"]
    y = z @ mixture["factors"] - mixture["offsets"]
    constants = mixture["constants"]
    log_prob = constants - 0.5 * np.square(y).reshape(len(z), len(constants), -1).sum(2)
    top = log_prob.max(1)
    return -(top + np.log(np.exp(log_prob - top[:, None]).sum(1)))


def _typicality_graph(params: Params) -> Callable:
    """``_typicality`` as TensorFlow ops, so XLA fuses it into the error function: in NumPy
    it ran between two XLA calls on one core (15% of scoring's time), here on both."""
    import tensorflow as tf

    mixture = {name: tf.constant(value) for name, value in _mixture(params).items()}
    k = int(mixture["constants"].shape[0])

    def score(codes, bce, mse, kl):
        y = tf.matmul(codes - mixture["code_mean"], mixture["code_whitening"])
        statistics = tf.math.log(tf.stack([bce, mse, tf.reduce_sum(y * y, axis=1),
                                           tf.maximum(bce - kl, 0.0)], axis=1) + STAT_EPS)
        z = (statistics - mixture["mean"]) / mixture["std"]
        u = tf.matmul(z, mixture["factors"]) - mixture["offsets"]
        log_prob = mixture["constants"] - 0.5 * tf.reduce_sum(
            tf.reshape(u * u, [-1, k, len(STATISTICS)]), axis=2)
        return -tf.reduce_logsumexp(log_prob, axis=1)
    return score


def _check_typicality(params: Params) -> str | None:
    """What makes fitted typicality parameters unusable; None when they are sound."""
    try:
        d, codes = len(STATISTICS), len(params["code_mean"])
        weights = np.asarray(params["weights"], np.float64)
        shapes = {"code_whitening": (codes, codes), "mean": (d,), "std": (d,),
                  "means": (len(weights), d), "precisions_cholesky": (len(weights), d, d)}
        for name, shape in shapes.items():
            value = np.asarray(params[name], np.float64)
            if value.shape != shape or not np.all(np.isfinite(value)):
                return f"{name} is not a finite array of shape {shape}"
        if not (np.all(weights > 0) and abs(weights.sum() - 1) < 1e-6):
            return "the mixture weights are not positive numbers summing to 1"
        if not np.all(np.diagonal(np.asarray(params["precisions_cholesky"]), axis1=1,
                                  axis2=2) > 0):
            return "a precision factor has a diagonal entry that is not positive"
        if not np.all(np.asarray(params["std"]) > 0):
            return "a standard deviation is not positive"
    except (KeyError, TypeError, ValueError) as exc:
        return f"a parameter is missing or malformed ({exc})"
    return None


SCORES: dict[str, Score] = {score.name: score for score in (
    Score("typicality", _fit_typicality, _typicality, _check_typicality, _typicality_graph),
    _max_z("bce", "kl"),
    _max_z("bce", "mse"),
    _column("bce"),
    _column("mse"),
    _column("kl"),
)}
DEFAULT_SCORE = "typicality"
MIN_VALIDATION = 2 * MIN_FIT  # a fitting half and a calibrating half


@dataclass(frozen=True)
class Calibration:
    """What scoring needs besides the model: each score's fitted parameters and the quantiles
    of its scores on the calibrating half of the validation split."""

    score: str  # the default
    scores: dict[str, dict[str, Any]]  # name -> {"params": ..., "quantiles": [QUANTILES]}
    n_fit: int
    n_calibration: int
    version: int = 2  # 1: one score, fitted and calibrated on the whole split (refused)

    def name(self, name: str | None = None) -> str:
        """``name``, or the default when None; refused when this calibration lacks it."""
        name = name or self.score
        if name not in self.scores:
            raise ParameterError(f"Invalid parameter score={name!r}: choose one of "
                                 f"{sorted(self.scores)}.")
        return name

    def quantiles(self, name: str | None = None) -> np.ndarray:
        return np.asarray(self.scores[self.name(name)]["quantiles"])

    def threshold(self, fpr: float, name: str | None = None) -> float:
        """The score above which a share ``fpr`` of the calibrating images lies."""
        check_fpr(fpr)
        quantiles = self.quantiles(name)
        return float(np.interp(1 - fpr, np.linspace(0, 1, len(quantiles)), quantiles))

    def apply(self, columns: Columns, name: str | None = None) -> np.ndarray:
        name = self.name(name)
        return SCORES[name].apply(columns, self.scores[name]["params"])

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"thresholds": {str(f): self.threshold(f)
                                              for f in (0.001, 0.005, 0.01, 0.05, 0.1)}}

    @classmethod
    def from_json(cls, value: dict[str, Any], path: str | Path = CALIBRATION_FILE
                  ) -> Calibration:
        """The calibration ``value`` (read from ``path``); refused, naming the fix, if unusable."""
        if isinstance(value, dict) and "scores" not in value and "quantiles" in value:
            raise StateError(f"{path} predates the two-sided anomaly score ({DEFAULT_SCORE}): "
                             "train the model again to recalibrate it (make run, i.e. python "
                             "-m flows.autoencoder; an unchanged model is promoted again)")
        try:
            calibration = cls(**{k: v for k, v in value.items()
                                 if k in cls.__dataclass_fields__})
            calibration.name()  # the default is among the scores
            problems = [f"{name}: {problem}" for name, entry in calibration.scores.items()
                        if (problem := _entry_problem(name, entry))]
        except (TypeError, KeyError, AttributeError, ParameterError) as exc:
            problems = [f"{type(exc).__name__}: {exc}"]
        if problems:
            raise StateError(f"{path} is damaged ({problems[0]}): train the model again "
                             "(make run) to write a new calibration")
        return calibration


def make_error_function(encoder, decoder, chunk: int = CHUNK, score: Callable | None = None):
    """An XLA-compiled ``x -> (codes, {bce, mse, kl})`` for one model, chunk by chunk.

    BCE is the pixel mean with Keras' clipping, in float32 (within 2e-7 of
    ``metrics.per_sample_bce``); the last chunk is padded to the same shape so the
    function compiles once. ``score``: a ``Score.graph`` function, compiled in too; its
    values come back as ``score``.
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
        mse, kl = tf.reduce_mean(tf.square(x - p), axis=1), error - bce(x, x)
        if score is None:
            return codes, error, mse, kl
        return codes, error, mse, kl, score(codes, error, mse, kl)

    def apply(x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        parts = []
        for start in range(0, len(x), chunk):
            part = x[start:start + chunk]
            n = len(part)
            if n < chunk:
                part = np.concatenate([part, np.zeros((chunk - n, x.shape[1]), x.dtype)])
            parts.append([t.numpy()[:n] for t in errors(tf.constant(part))])
        codes, *values = (np.concatenate(p) for p in zip(*parts))
        return codes, dict(zip(("bce", "mse", "kl", "score"), values))

    return apply


def _entry_problem(name: str, entry: dict[str, Any]) -> str | None:
    """What makes one score's stored calibration unusable (a score unknown here is ignored)."""
    if len(entry["quantiles"]) < 2:
        return "fewer than 2 quantiles"
    return SCORES[name].check(entry["params"]) if name in SCORES else None


def calibrate(errors: Callable, x_val: np.ndarray, score: str = DEFAULT_SCORE) -> Calibration:
    """Fit every score on half the validation images; take its quantiles on the other half.

    No threshold is computed on images a score was fitted on. ``score`` is the default.
    """
    if score not in SCORES:
        raise ParameterError(f"Invalid parameter score={score!r}: choose one of "
                             f"{sorted(SCORES)}.")
    check_validation_size(len(x_val))
    codes, parts = errors(x_val)
    columns = {"codes": codes, **parts}
    fit, held = validation_halves(len(x_val))
    entries = {}
    for name, kind in SCORES.items():
        params = kind.fit({k: v[fit] for k, v in columns.items()})
        values = kind.apply({k: v[held] for k, v in columns.items()}, params)
        entries[name] = {"params": params, "quantiles": np.quantile(
            values, np.linspace(0, 1, QUANTILES)).tolist()}
    return Calibration(score, entries, len(fit), len(held))


def validation_halves(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(fitting rows, calibrating rows) of a validation split of ``n`` images.

    Thresholds and the drift gate's reference come from the calibrating rows only,
    so nothing is measured on the images a score's density was fitted on.
    """
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    return order[:n // 2], order[n // 2:]


def check_validation_size(n: int) -> None:
    """Refuse a validation split too small to fit the density and calibrate its thresholds."""
    if n < MIN_VALIDATION:
        raise ParameterError(
            f"the validation split holds {n} images; the anomaly score needs at least "
            f"{MIN_VALIDATION}: half of them fit its density (a Gaussian of "
            f"{len(STATISTICS)} statistics needs {MIN_FIT}), the other half set its thresholds")


class Scorer:
    """A trained model ready to encode, reconstruct and score images (see ``load_scorer``)."""

    def __init__(self, encoder, decoder, calibration: Calibration | None):
        self.encoder, self.decoder, self.calibration = encoder, decoder, calibration
        kind = SCORES.get(calibration.score) if calibration else None
        fused = (kind.graph(calibration.scores[calibration.score]["params"])
                 if kind and kind.graph else None)
        self.errors = make_error_function(encoder, decoder, score=fused)

    def encode(self, x: np.ndarray) -> np.ndarray:
        from mnist_autoencoder.models.inference import apply_in_chunks

        return apply_in_chunks(self.encoder, _pixels(x))

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        from mnist_autoencoder.models.inference import apply_in_chunks

        return apply_in_chunks(self.decoder, self.encode(x))

    def columns(self, x: np.ndarray, name: str | None = None,
                checked: bool = False) -> dict[str, np.ndarray]:
        """Per image: ``codes``, ``bce``, ``mse``, ``kl`` and ``score`` (``name``'s, or the
        calibration's default). ``checked``: ``x`` is already (n, 784) float32 in [0, 1], as
        ``data.inputs`` chunks are (checking again cost 1.2 s per million images)."""
        if self.calibration is None:
            raise StateError("this model has no calibration.json: train it again "
                             "(make run) to calibrate its anomaly score")
        codes, parts = self.errors(x if checked else _pixels(x))
        columns = {"codes": codes, **parts}
        if "score" in parts and self.calibration.name(name) == self.calibration.score:
            return columns  # the default score, computed inside the error function
        columns.pop("score", None)
        return columns | {"score": self.calibration.apply(columns, name)}

    def score(self, x: np.ndarray, name: str | None = None) -> np.ndarray:
        """The calibrated anomaly score of each image (higher: less like the training data);
        ``name``: one of ``SCORES`` (default: the calibration's, ``typicality``)."""
        return self.columns(x, name)["score"]

    def flag(self, x: np.ndarray, fpr: float = DEFAULT_FPR,
             name: str | None = None) -> np.ndarray:
        """True for images scored above the threshold that flags ``fpr`` of validation images."""
        return self.score(x, name) > self.calibration.threshold(fpr, name)


def _pixels(x: np.ndarray) -> np.ndarray:
    """Images as (n, 784) float32 in [0, 1], from uint8 or float, flat or 28x28."""
    x = np.asarray(x)
    return as_unit_pixels(x.reshape(len(x), -1), "images")


def read_calibration(model_dir: str | Path) -> Calibration | None:
    """The calibration saved beside a model (None without one); refused in one line if it
    is damaged or older than the two-sided score. Loads no model: a flow checks it first."""
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except ValueError as exc:
        raise StateError(f"{path} is damaged (not JSON: {exc}): train the model again "
                         "(make run) to write a new calibration") from None
    return Calibration.from_json(value, path)


def load_scorer(model_dir: str | Path) -> Scorer:
    """The model saved in ``model_dir`` (a training run's or a champion's folder)."""
    from mnist_autoencoder.models.inference import load_model

    model_dir = Path(model_dir)
    calibration = read_calibration(model_dir)
    return Scorer(load_model(model_dir, "encoder.keras"), load_model(model_dir, "decoder.keras"),
                  calibration)
