"""The scoring flow on the real Prefect engine: outputs, caching, model choice, errors."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flows.cli import group_params
from flows.score import mnist_score
from mnist_autoencoder.lifecycle.registry import read_registry
from mnist_autoencoder.paths import models_dir
from tests import helpers
from tests.helpers import PROJECT, pipeline, small_run, states

FASHION = Path("/usr/share/datasets/fashion-mnist")


def score(**params):
    return mnist_score(**group_params(mnist_score, params))


def cli(*args, api_url, timeout=600):
    return subprocess.run([sys.executable, "-m", "flows.score", *args], cwd=PROJECT,
                          env=os.environ | {"PREFECT_API_URL": api_url}, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def champion(prefect_api, synthetic_source, tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    params = small_run(helpers.NAME, synthetic_source, root)
    trained = pipeline(**params)
    assert trained["decision"]["promoted"]
    return params, trained


def test_scores_every_image_with_codes_errors_and_flags(champion, synthetic_source):
    params, _ = champion
    result = score(input=str(synthetic_source), dataset=helpers.NAME,
                   data_dir=params["data_dir"], artifacts_dir=params["artifacts_dir"])
    table = pd.read_parquet(result["scores"])
    assert len(table) == 700 and result["counts"]["count"] == 700
    assert list(table.columns) == ["source", "index", "label", *[f"z{i}" for i in range(8)],
                                   "bce", "mse", "kl", "score", "flagged"]
    assert table["label"].between(0, 9).all()  # labels files were read
    assert set(table["source"]) == {"train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"}
    assert (table["flagged"] == (table["score"] > result["counts"]["threshold"])).all()
    assert result["summary"].splitlines()[-1] == f"Scores: {result['scores']}"
    html = (Path(result["scores"]).parent / "summary.html").read_text()
    assert "Most anomalous inputs" in html and "data:image/png;base64" in html


def test_same_input_and_champion_is_a_cached_no_op_and_a_new_champion_rescores(
        champion, synthetic_source):
    params, _ = champion
    where = {"input": str(synthetic_source), "dataset": helpers.NAME,
             "data_dir": params["data_dir"], "artifacts_dir": params["artifacts_dir"]}
    first = score(**where)
    again = score(**where)
    assert states(again)["score"] == "cached" and again["scores"] == first["scores"]
    retrained = pipeline(**params | {"epochs": 3, "promotion_tolerance": 0.9})
    assert retrained["decision"]["promoted"]
    rescored = score(**where)
    assert states(rescored)["score"] == "ran" and rescored["scores"] != first["scores"]


def test_a_registered_run_can_score_and_unknown_ids_and_datasets_are_refused(
        champion, synthetic_source, prefect_api):
    params, trained = champion
    run_id = read_registry(models_dir(params["artifacts_dir"]))[
        "run_id"].iloc[0]
    result = score(input=str(synthetic_source), dataset=helpers.NAME, model=run_id,
                   data_dir=params["data_dir"], artifacts_dir=params["artifacts_dir"])
    assert result["counts"]["count"] == 700
    common = ["--input", str(synthetic_source), "--artifacts-dir", params["artifacts_dir"]]
    bad_id = cli(*common, "--dataset", helpers.NAME, "--model", "no-such-run",
                 api_url=prefect_api)
    assert bad_id.returncode == 2 and "no stored model with run id 'no-such-run'" in bad_id.stderr
    assert bad_id.stderr.count("\n") == 1
    no_champion = cli(*common, "--dataset", "mnist", api_url=prefect_api)
    assert no_champion.returncode == 2
    assert "no champion for dataset mnist yet: train one with" in no_champion.stderr


def test_a_bad_input_fails_naming_it_and_writes_nothing_under_a_final_name(champion, tmp_path):
    params, _ = champion
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "t10k-images-idx3-ubyte").write_bytes(helpers.idx_bytes(
        helpers.make_digits(5, 0, side=32)[0]))
    with pytest.raises(Exception, match="32x32"):
        score(input=str(bad), dataset=helpers.NAME, data_dir=params["data_dir"],
              artifacts_dir=params["artifacts_dir"])
    written = Path(params["artifacts_dir"]) / "score"
    assert all((d / "scores.parquet").is_file() for d in written.iterdir()
               if not d.name.startswith("."))


@pytest.mark.integration
@pytest.mark.skipif(not FASHION.is_dir(), reason=f"Fashion-MNIST not installed at {FASHION} "
                    "(apt-get install dataset-fashion-mnist)")
def test_a_fashion_champion_flags_mnist_digits_as_a_user_types_it(mnist_mirror, prefect_api,
                                                                   tmp_path):
    dirs = ["--data-dir", str(tmp_path / "data"), "--artifacts-dir", str(tmp_path / "art")]
    train = subprocess.run(
        [sys.executable, "-m", "flows.autoencoder", "--dataset", "fashion_mnist", "--source",
         str(FASHION), "--epochs", "5", "--train-subset", "10000", *dirs], cwd=PROJECT,
        env=os.environ | {"PREFECT_API_URL": prefect_api}, capture_output=True, text=True,
        timeout=900)
    assert train.returncode == 0, train.stderr[-2000:]
    scored = cli("--input", str(mnist_mirror), "--dataset", "fashion_mnist", *dirs,
                 api_url=prefect_api)
    assert scored.returncode == 0, scored.stderr[-2000:]
    table = pd.read_parquet(scored.stdout.strip().splitlines()[-1].removeprefix("Scores: "))
    assert len(table) == 70_000
    # measured: 5 epochs on 10,000 images flag 31% of MNIST at the 1% threshold
    assert table["flagged"].mean() > 0.15


def test_shards_on_a_dask_cluster_give_the_same_scores(champion, synthetic_source, prefect_api,
                                                       tmp_path):
    import distributed

    params, _ = champion
    whole = score(input=str(synthetic_source), dataset=helpers.NAME,
                  data_dir=params["data_dir"], artifacts_dir=params["artifacts_dir"])
    with pytest.MonkeyPatch.context() as env:  # the workers report to the same API
        env.setenv("PREFECT_API_URL", prefect_api)
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        proc = subprocess.run(
            [sys.executable, "-m", "flows.score", "--input", str(synthetic_source), "--dataset",
             helpers.NAME, "--data-dir", params["data_dir"], "--artifacts-dir",
             params["artifacts_dir"]], cwd=PROJECT, capture_output=True, text=True, timeout=600,
            env=os.environ | {"PREFECT_API_URL": prefect_api,
                              "MNIST_AE_DASK_ADDRESS": cluster.scheduler_address,
                              "MNIST_AE_SCORE_SHARDS": "3"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        ran = client.run(lambda dask_worker: dask_worker.state.transition_counter)
    assert all(n > 0 for n in ran.values())  # both workers scored shards
    assert "TensorFlow: imported" in proc.stdout  # the merge draws the gallery here
    sharded = pd.read_parquet(proc.stdout.strip().splitlines()[-1].removeprefix("Scores: "))
    key = ["source", "index"]
    pd.testing.assert_frame_equal(
        sharded.sort_values(key).reset_index(drop=True),
        pd.read_parquet(whole["scores"]).sort_values(key).reset_index(drop=True),
        check_categorical=False)
