"""The linear probe: how linearly the digit can be read from a representation."""

from __future__ import annotations

import numpy as np

PROBE_MAX_ITER = 300


def linear_probe(train_features: np.ndarray, train_labels: np.ndarray,
                 test_features: np.ndarray, test_labels: np.ndarray,
                 seed: int) -> tuple[float, np.ndarray]:
    """Standardise, fit logistic regression; return (test accuracy, confusion matrix)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER,
                                                               random_state=seed))
    predicted = probe.fit(train_features, train_labels).predict(test_features)
    labels = np.unique(np.concatenate([train_labels, test_labels]))
    return (float(np.mean(predicted == test_labels)),
            confusion_matrix(test_labels, predicted, labels=labels))
