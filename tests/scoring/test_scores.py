"""Anomaly scores and their calibration, on a small model trained here on synthetic digits."""

import json
import re

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from mnist_autoencoder.data.splits import normalize  # noqa: E402
from mnist_autoencoder.errors import ParameterError, StateError  # noqa: E402
from mnist_autoencoder.evaluation.metrics import per_sample_bce, per_sample_mse  # noqa: E402
from mnist_autoencoder.models.training import train_model  # noqa: E402
from mnist_autoencoder.scoring.scores import (  # noqa: E402
    DEFAULT_SCORE,
    MIN_VALIDATION,
    SCORES,
    Calibration,
    Scorer,
    calibrate,
    check_validation_size,
    load_scorer,
    make_error_function,
    validation_halves,
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
    assert calibration.score == DEFAULT_SCORE == "typicality"
    assert (calibration.n_fit, calibration.n_calibration) == (500, 500)
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


def test_every_named_score_is_fitted_on_one_half_and_thresholded_on_the_other(model):
    fitted, _, val, test = model
    errors = make_error_function(fitted.encoder, fitted.decoder)
    calibration = calibrate(errors, val)
    scorer = Scorer(fitted.encoder, fitted.decoder, calibration)
    fit, held = validation_halves(len(val))
    assert not set(fit) & set(held) and len(fit) + len(held) == len(val)
    for name in SCORES:
        # the quantiles are those of the calibrating half's scores, never the fitting half's
        held_scores = scorer.score(val[held], name)
        np.testing.assert_allclose(calibration.quantiles(name)[[0, 1000, 2000]],
                                   np.quantile(held_scores, [0, 0.5, 1]), rtol=1e-5, atol=1e-6)
        assert np.isfinite(calibration.threshold(0.01, name))
        assert scorer.flag(test, 0.05, name).mean() < 0.15, name
    with pytest.raises(ParameterError, match="score='psnr'"):
        calibrate(errors, val, "psnr")
    with pytest.raises(ParameterError, match="score='psnr'"):
        scorer.score(test, "psnr")


def test_typicality_is_two_sided_where_a_one_sided_score_is_not():
    """Images reconstructed atypically *well* are as foreign as those reconstructed badly."""
    rng = np.random.default_rng(0)
    n = 2000
    bce = np.exp(rng.normal(np.log(0.1), 0.1, n))
    columns = {"codes": rng.normal(size=(n, 8)), "bce": bce,
               "mse": np.exp(rng.normal(np.log(0.01), 0.1, n)), "kl": bce * 0.3}
    typical = SCORES["typicality"]
    params = typical.fit(columns)
    assert typical.check(params) is None
    normal = typical.apply(columns, params)
    for factor in (0.3, 3.0):  # BCE and MSE three times smaller, or larger
        odd = columns | {"bce": columns["bce"] * factor, "mse": columns["mse"] * factor,
                         "kl": columns["kl"] * factor}
        assert np.quantile(typical.apply(odd, params), 0.05) > np.quantile(normal, 0.99)
    low = columns | {"bce": columns["bce"] * 0.3, "kl": columns["kl"] * 0.3}
    assert np.median(low["bce"]) < np.quantile(columns["bce"], 0.01)  # bce calls them normal


def test_a_validation_split_too_small_for_the_density_is_refused():
    check_validation_size(MIN_VALIDATION)
    with pytest.raises(ParameterError, match=f"needs at least {MIN_VALIDATION}"):
        check_validation_size(MIN_VALIDATION - 1)


def test_a_damaged_or_old_calibration_file_is_refused_in_one_line(model, tmp_path):
    fitted, _, val, _ = model
    calibration = calibrate(make_error_function(fitted.encoder, fitted.decoder), val)
    good = calibration.to_json()
    broken = json.loads(json.dumps(good))
    broken["scores"]["typicality"]["params"]["weights"][0] = -1.0
    old = {"score": "max_z(bce,kl)", "mean": {}, "std": {}, "quantiles": [0, 1],
           "n_validation": 10}
    for value, words in ((broken, "is damaged (typicality: the mixture weights"),
                         (old, "predates the two-sided anomaly score")):
        with pytest.raises(StateError, match=re.escape(words)) as refused:
            Calibration.from_json(value, tmp_path / "calibration.json")
        assert str(tmp_path / "calibration.json") in str(refused.value)
        assert "make run" in str(refused.value) and "\n" not in str(refused.value)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    fitted.encoder.save(model_dir / "encoder.keras")
    fitted.decoder.save(model_dir / "decoder.keras")
    (model_dir / "calibration.json").write_text("{not json")
    with pytest.raises(StateError, match="calibration.json is damaged"):
        load_scorer(model_dir)


def test_the_default_score_compiled_into_the_error_function_matches_numpy(model):
    fitted, _, val, test = model
    calibration = calibrate(make_error_function(fitted.encoder, fitted.decoder), val)
    scorer = Scorer(fitted.encoder, fitted.decoder, calibration)
    fused = scorer.columns(test)
    assert set(fused) == {"codes", "bce", "mse", "kl", "score"}
    in_numpy = calibration.apply({k: fused[k] for k in ("codes", "bce", "mse", "kl")})
    np.testing.assert_allclose(fused["score"], in_numpy, rtol=1e-4, atol=1e-3)
