"""The linear probe: how linearly the digit can be read from a representation.

A probe is standardisation followed by multinomial logistic regression
(scikit-learn, L-BFGS). From scratch it runs to L-BFGS's tolerance (at most
``PROBE_MAX_ITER`` iterations). A retrain can start it from an earlier probe of
the same features (``warm``): the earlier solution is mapped onto the new
standardisation, so it is the same function of the raw features, and at most
``WARM_MAX_ITER`` iterations refine it. Measured on the raw-pixel probe, 40,500
MNIST training images started from a probe of their first 36,000: from scratch
184 iterations and 24 s, warm 20 iterations and 1.6 s, 0.03 points apart; in the
retrain benchmark's pipeline runs, 0.18 points (docs/retraining.md).
"""

from __future__ import annotations

import warnings

import numpy as np

PROBE_MAX_ITER = 300
WARM_MAX_ITER = 20
STATE_FIELDS = ("mean", "scale", "coef", "intercept", "classes")


def probe_state(scaler, model) -> dict[str, np.ndarray]:
    """What a later probe needs to start from this one (the scaler and the solution), and
    how this one was fitted (``n_iter``; ``warm``: started from an earlier probe)."""
    return {"mean": scaler.mean_, "scale": scaler.scale_, "coef": model.coef_,
            "intercept": model.intercept_, "classes": model.classes_,
            "n_iter": np.asarray(model.n_iter_[0]), "warm": np.asarray(model.warm_start)}


def describe_fit(state: dict[str, np.ndarray]) -> str:
    """E.g. ``20 iterations, warm-started``."""
    return f"{int(state['n_iter'])} iterations" + (", warm-started" if state["warm"] else "")


def usable_state(state: dict[str, np.ndarray] | None, n_features: int,
                 classes: np.ndarray) -> bool:
    """True when ``state`` is a probe of ``n_features`` features over the same classes."""
    return (state is not None and all(k in state for k in STATE_FIELDS)
            and state["coef"].shape == (len(classes), n_features)
            and np.array_equal(state["classes"], classes))


def warm_solution(state: dict[str, np.ndarray], mean: np.ndarray,
                  scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An earlier probe's (coef, intercept) for features standardised with ``mean``/``scale``.

    The logits stay the same function of the raw features:
    ``w' = w * s' / s`` and ``b' = b + (w / s) . (m' - m)``.
    """
    weights = state["coef"] / state["scale"]
    return weights * scale, state["intercept"] + weights @ (mean - state["mean"])


def linear_probe(train_features: np.ndarray, train_labels: np.ndarray,
                 test_features: np.ndarray, test_labels: np.ndarray, seed: int,
                 warm: dict[str, np.ndarray] | None = None
                 ) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
    """Standardise, fit logistic regression; return (test accuracy, confusion matrix, state).

    ``warm`` is the ``state`` of an earlier probe; it is used when it fits these
    features and classes, and ignored otherwise.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_features)
    classes = np.unique(train_labels)
    model = LogisticRegression(max_iter=PROBE_MAX_ITER, random_state=seed)
    if usable_state(warm, train_features.shape[1], classes):
        model.set_params(warm_start=True, max_iter=WARM_MAX_ITER)
        model.coef_, model.intercept_ = warm_solution(warm, scaler.mean_, scaler.scale_)
    with warnings.catch_warnings():
        if model.warm_start:  # a warm probe stops at its iteration cap by design
            warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(scaler.transform(train_features), train_labels)
    predicted = model.predict(scaler.transform(test_features))
    labels = np.unique(np.concatenate([train_labels, test_labels]))
    return (float(np.mean(predicted == test_labels)),
            confusion_matrix(test_labels, predicted, labels=labels), probe_state(scaler, model))


def states_file(states: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Probe states by name as one ``.npz`` mapping (``<name>/<field>``)."""
    return {f"{name}/{k}": v for name, state in states.items() for k, v in state.items()}


def read_states(arrays: dict[str, np.ndarray] | None) -> dict[str, dict[str, np.ndarray]]:
    """The inverse of ``states_file``; {} for None."""
    states: dict[str, dict[str, np.ndarray]] = {}
    for key, value in (arrays or {}).items():
        name, _, field = key.rpartition("/")
        states.setdefault(name, {})[field] = value
    return states

