"""The benchmark's plain-Keras side must keep doing the pipeline's work as the pipeline changes.

`make bench` is not part of the suite (its time is in docs/benchmarks.md); this
runs its "same work" half on a tiny synthetic split so an API change that breaks
it fails here rather than in the next benchmark run.
"""

import numpy as np

from benchmarks.training import same_work_as_pipeline
from mnist_autoencoder.data.preprocessing import build_splits
from mnist_autoencoder.models.model import build_autoencoder, fit_autoencoder
from tests.helpers import make_digits


def test_plain_script_does_every_analysis_and_draws_every_figure(tmp_path):
    splits = build_splits(*make_digits(500, seed=0), *make_digits(120, seed=1),
                          val_size=100, seed=0)
    autoencoder, encoder, decoder = build_autoencoder(784, 8, 1e-3, seed=0)
    rows = fit_autoencoder(autoencoder, splits["train"].x, splits["val"].x, epochs=2,
                           batch_size=64, patience=5, seed=0)

    png_bytes = same_work_as_pipeline(splits, encoder, decoder, rows, tmp_path)

    # eight figures, each a real PNG of some kilobytes
    assert png_bytes > 8 * 5_000
    assert np.isfinite([row["loss"] for row in rows]).all()
