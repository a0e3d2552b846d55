"""The drift flow on the real Prefect engine: verdicts, the event, skipped labels, errors."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flows.cli import group_params
from flows.drift import mnist_drift
from mnist_autoencoder.scoring.drift import MIN_BATCH
from tests import helpers
from tests.helpers import PROJECT, api, pipeline, wait_for_event, write_idx


def check(batch, params, **changes):
    where = {"batch": str(batch), "dataset": helpers.NAME, "data_dir": params["data_dir"],
             "artifacts_dir": params["artifacts_dir"]} | changes
    return mnist_drift(**group_params(mnist_drift, where))


def cli(*args, api_url):
    return subprocess.run([sys.executable, "-m", "flows.drift", *args], cwd=PROJECT,
                          env=os.environ | {"PREFECT_API_URL": api_url}, capture_output=True,
                          text=True, timeout=300)





@pytest.fixture(scope="module")
def champion(prefect_api, synthetic_source, tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    params = {"dataset": helpers.NAME, "source": str(synthetic_source), "val_size": 200,
              "epochs": 2, "batch_size": 64, "latent_dim": 8, "learning_rate": 0.01,
              "data_dir": str(root / "data"), "artifacts_dir": str(root / "artifacts")}
    assert pipeline(**params)["decision"]["promoted"]
    return params, root


@pytest.fixture(scope="module")
def digits():
    return helpers.make_digits(400, seed=11)  # drawn like the training images


def test_a_clean_batch_does_not_drift_and_a_second_check_is_cached(champion, digits):
    params, root = champion
    batch = write_idx(root / "clean", *digits, gz=False)
    result = check(batch, params)
    last = result["summary"].splitlines()[-1]
    assert not result["drift"] and last.startswith("Drift: no (score KS p="), last
    assert "codes min p=" in last and "labels chi2 p=" in last
    assert result["result"]["reference"]["kind"] == "exact"  # the champion's own split
    # the reference: the calibrating half of the 200-image validation split (the score's
    # density was fitted on the other half)
    assert result["result"]["n_reference"] == 100 and result["result"]["n_batch"] == 400
    assert (Path(result["dir"]) / "drift.md").is_file()
    again = check(batch, params)
    assert [s["state"] for s in again["stages"] if s["stage"] == "drift"] == ["Cached"]
    assert again["result"] == result["result"]


def test_an_inverted_batch_drifts_and_emits_an_event(champion, digits, prefect_api):
    params, root = champion
    images, labels = digits
    result = check(write_idx(root / "inverted", 255 - images, labels, gz=False), params)
    assert result["drift"] and result["summary"].splitlines()[-1].startswith("Drift: yes (")
    tripped = {t["name"] for t in result["result"]["tests"] if t["drift"]}
    assert {"score", "codes"} <= tripped and "labels" not in tripped
    resource = f"mnist.drift.{helpers.NAME}.{result['result']['fingerprint'][:12]}"
    (event,) = wait_for_event(prefect_api, "mnist.drift.detected", resource)
    assert event["payload"]["drift"] is True and event["payload"]["n_batch"] == 400
    artifacts = api(prefect_api, "/artifacts/filter", {"artifacts": {"key": {
        "any_": ["mnist-drift"]}}})
    assert any("Drift: yes" in (a.get("description") or "") for a in artifacts)


def test_a_batch_without_labels_skips_the_label_test(champion, digits):
    params, root = champion
    np.save(root / "unlabelled.npy", digits[0])
    result = check(root / "unlabelled.npy", params)
    (labels,) = [t for t in result["result"]["tests"] if t["name"] == "labels"]
    assert labels["skipped"] == "the batch has no labels"
    assert "labels skipped: the batch has no labels" in result["summary"].splitlines()[-1]


def test_without_the_processed_split_the_reference_is_rebuilt_from_the_raw_files(
        champion, digits):
    params, root = champion
    batch = root / "clean"  # written by the first test, or now
    if not batch.exists():
        write_idx(batch, *digits, gz=False)
    exact = check(batch, params)
    raw = Path(params["data_dir"]) / "raw" / helpers.NAME
    shutil.copytree(raw, root / "raw-only" / "raw" / helpers.NAME)
    rebuilt = check(batch, params, data_dir=str(root / "raw-only"))
    assert rebuilt["result"]["reference"]["kind"] == "rebuilt"
    assert "rebuilt from the raw files" in rebuilt["summary"]
    # the base split with the recorded seed and size: the same images, the same statistics
    assert rebuilt["result"]["tests"] == exact["result"]["tests"]


def test_bad_batches_fail_with_what_is_wrong(champion, digits):
    params, root = champion
    images, labels = digits
    with pytest.raises(Exception, match="32x32"):
        check(write_idx(root / "big", *helpers.make_digits(150, 3, side=32), gz=False), params)
    np.save(root / "small.npy", images[:MIN_BATCH - 1])
    with pytest.raises(Exception, match=f"holds {MIN_BATCH - 1} images; a drift check needs "
                                        f"at least {MIN_BATCH}: below that"):
        check(root / "small.npy", params)


def test_the_command_line_refuses_with_exit_2_and_what_to_do(champion, prefect_api, tmp_path):
    params, root = champion
    np.save(root / "small-cli.npy", helpers.make_digits(20, 4)[0])
    dirs = ["--data-dir", params["data_dir"], "--artifacts-dir", params["artifacts_dir"]]
    small = cli("--batch", str(root / "small-cli.npy"), "--dataset", helpers.NAME, *dirs,
                api_url=prefect_api)
    assert small.returncode == 2 and f"needs at least {MIN_BATCH}" in small.stderr
    assert small.stderr.count("\n") == 1
    no_champion = cli("--batch", str(root / "small-cli.npy"), "--dataset", "mnist", *dirs,
                      api_url=prefect_api)
    assert no_champion.returncode == 2
    assert "no champion for dataset mnist yet: train one with" in no_champion.stderr
    no_data = cli("--batch", str(root / "small-cli.npy"), "--dataset", helpers.NAME,
                  "--data-dir", str(tmp_path), "--artifacts-dir", params["artifacts_dir"],
                  api_url=prefect_api)
    assert no_data.returncode == 2 and "give the --data-dir the champion was trained with" in \
        no_data.stderr
