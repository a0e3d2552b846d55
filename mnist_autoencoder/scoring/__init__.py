"""Putting a trained model to work on new images: anomaly scores, batch scoring, drift.

``scores`` holds the anomaly scores, their calibration and the ``Scorer``; ``batch``
scores a whole input chunk by chunk; ``drift`` tests whether a batch still looks
like a model's validation split; ``champion`` loads a dataset's champion from Python.
"""
