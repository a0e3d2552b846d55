"""Anomaly scores and their calibration, on a small model trained here on synthetic digits."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from mnist_autoencoder.data.preprocessing import normalize  # noqa: E402
from mnist_autoencoder.evaluation.metrics import per_sample_bce, per_sample_mse  # noqa: E402
from mnist_autoencoder.models.training import train_model  # noqa: E402
from mnist_autoencoder.scoring.scores import (  # noqa: E402
    DEFAULT_SCORE,
    SCORES,
    Calibration,
    Scorer,
    calibrate,
    make_error_function,
)
from tests.helpers import make_digits  # noqa: E402


@pytest.fixture(scope="module")
def model():
    x = normalize(make_digits(6000, seed=0)[0])
    fitted = train_model("shallow", x[:3000], x[3000:4000], latent_dim=8, epochs=3,
                         batch_size=64, learning_rate=0.01, patience=3, seed=0,
                         log=lambda _: None)
    return fitted, x[:3000], x[3000:4000], x[4000:]


def test_xla_errors_match_the_numpy_metrics(model):
    fitted, _, _, test = model
    codes, parts = make_error_function(fitted.encoder, fitted.decoder, chunk=512)(test)
    rebuilt = np.asarray(fitted.decoder(fitted.encoder(test)))
    np.testing.assert_allclose(parts["bce"], per_sample_bce(test, rebuilt), atol=2e-6)
    np.testing.assert_allclose(parts["mse"], per_sample_mse(test, rebuilt), atol=2e-6)
    own = per_sample_bce(test, test)  # an image's own pixel entropy
    np.testing.assert_allclose(parts["kl"], parts["bce"] - own, atol=5e-6)
    assert codes.shape == (len(test), 8) and (parts["kl"] > -1e-6).all()  # KL >= 0


def test_calibrated_threshold_flags_the_chosen_share_of_unseen_normal_images(model):
    fitted, _, val, test = model
    errors = make_error_function(fitted.encoder, fitted.decoder)
    calibration = calibrate(errors, val)
    assert calibration.score == DEFAULT_SCORE and calibration.n_validation == 1000
    scorer = Scorer(fitted.encoder, fitted.decoder, calibration)
    for fpr in (0.01, 0.05, 0.1):
        flagged = scorer.flag(test, fpr).mean()
        # 2,000 test images: the binomial standard error at 5% is 0.5 points
        assert abs(flagged - fpr) < max(0.5 * fpr, 0.01), (fpr, flagged)
    thresholds = [calibration.threshold(f) for f in (0.1, 0.05, 0.01, 0.001)]
    assert thresholds == sorted(thresholds)  # rarer flags need higher scores
    again = Calibration.from_json(calibration.to_json())
    assert again == calibration and again.threshold(0.01) == calibration.threshold(0.01)


def test_images_unlike_the_training_data_score_higher(model):
    fitted, _, val, test = model
    scorer = Scorer(fitted.encoder, fitted.decoder,
                    calibrate(make_error_function(fitted.encoder, fitted.decoder), val))
    inverted = 1 - test
    assert scorer.flag(inverted).mean() > 0.9
    assert np.median(scorer.score(inverted)) > np.median(scorer.score(test))
    # uint8 and 28x28 input are the same images
    as_uint8 = np.round(test * 255).astype(np.uint8).reshape(-1, 28, 28)
    np.testing.assert_allclose(scorer.score(as_uint8), scorer.score(test), atol=1e-4)


def test_every_named_score_calibrates(model):
    fitted, _, val, _ = model
    errors = make_error_function(fitted.encoder, fitted.decoder)
    for name in SCORES:
        assert np.isfinite(calibrate(errors, val, name).threshold(0.01))
    with pytest.raises(ValueError, match="unknown score"):
        calibrate(errors, val, "psnr")
