"""The flow on the real Prefect engine and API: which stages rerun when what changes.

Runs share one data and artifacts directory, so each test starts from the cache
state the baseline run left. The synthetic dataset keeps every training run to
a few seconds.
"""

import json
import shutil
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import (
    PROJECT,
    cli_run,
    expect,
    pipeline,
    pipeline_stages,
    small_run,
    states,
    summary_states,
)


@pytest.fixture(scope="module")
def base(prefect_api, synthetic_source, tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    params = small_run(helpers.NAME, synthetic_source, root)
    first = pipeline(**params)
    assert states(first) == dict.fromkeys(pipeline_stages(), "ran")
    return params, first


def test_baseline_produces_model_metrics_and_report(base):
    _, result = base
    report = Path(result["report"])
    assert report.is_file() and "binary cross-entropy" in report.read_text()
    assert 0 < result["metrics"]["test_bce"] < 0.69  # below the loss of predicting 0.5 everywhere
    for figure in ("loss_curves.png", "samples.png", "argmax_confusion.png"):
        assert (report.parent / figure).stat().st_size > 1000


def test_identical_rerun_is_all_cached(base):
    params, first = base
    again = pipeline(**params)
    assert states(again) == expect()
    assert again["metrics"] == first["metrics"] and again["report"] == first["report"]


def test_cached_rerun_in_a_fresh_process_never_imports_tensorflow(base, prefect_api):
    params, _ = base
    stdout = cli_run(params, prefect_api)
    assert summary_states(stdout) == expect()
    assert "TensorFlow: not imported" in stdout


def test_changing_epochs_reruns_train_evaluate_report_only(base):
    params, first = base
    result = pipeline(**params | {"epochs": 3})
    assert states(result) == expect("train", "evaluate", "analyze", "promote", "report")
    assert result["report"] != first["report"]  # the first run's outputs stay where they were
    assert Path(first["report"]).is_file()
    assert states(pipeline(**params)) == expect()


# The corrupted test images depend on the test split and the seed only; the drift gate of a
# base snapshot (nothing earlier to compare with) on neither.
@pytest.mark.parametrize("change, kept", [({"seed": 1}, ("drift",)),
                                          ({"val_size": 150}, ("corrupt", "drift"))])
def test_changing_the_split_reruns_preprocess_onward(base, change, kept):
    params, _ = base
    rerun = [s for s in pipeline_stages() if s != "download" and s not in kept]
    assert states(pipeline(**params | change)) == expect(*rerun)


def test_a_deleted_base_shard_is_rebuilt_and_nothing_downstream_reruns(base):
    params, first = base
    view = json.loads((Path(first["outputs"]["preprocess"]) / "splits.json").read_text())
    shard = Path(view["parts"][0]["shard"])
    shutil.rmtree(shard)
    result = pipeline(**params | {"epochs": 4})  # train reads the shard again
    assert states(result) == expect("preprocess", "train", "evaluate", "analyze", "promote",
                                    "report")
    assert (shard / "shard.json").is_file()  # rebuilt byte for byte: the same view, same hash
    assert result["outputs"]["preprocess"] == first["outputs"]["preprocess"]


def test_deleted_model_is_rebuilt_not_returned_stale(base):
    params, first = base
    model = Path(first["outputs"]["train"]) / "autoencoder.keras"
    model.unlink()
    result = pipeline(**params)
    assert states(result)["train"] == "ran" and states(result)["preprocess"] == "cached"
    assert result["outputs"]["train"] == first["outputs"]["train"] and model.is_file()
    # the saved model embeds its save time, so what depends on its content reruns too
    assert states(result) == expect("train", "evaluate", "analyze", "promote", "report")
    assert Path(result["report"]).is_file()


def test_deleted_split_is_rebuilt_and_identical_content_keeps_training_cached(base):
    params, first = base
    view = Path(first["outputs"]["preprocess"]) / "splits.json"
    view.unlink()
    result = pipeline(**params)
    assert states(result) == expect("preprocess")  # rebuilt byte for byte: nothing downstream
    assert view.is_file()


def test_corrupted_split_is_detected_by_hash_and_rebuilt(base):
    params, first = base
    view = Path(first["outputs"]["preprocess"]) / "splits.json"
    text = view.read_text()
    view.write_text(text.replace('"val_size": ', '"val_size": 1'))
    assert states(pipeline(**params)) == expect("preprocess")
    assert view.read_text() == text


def test_corrupted_model_and_raw_file_are_detected_by_hash_and_rebuilt(base):
    params, first = base
    encoder = Path(first["outputs"]["train"]) / "encoder.keras"
    encoder.write_bytes(encoder.read_bytes()[:-10] + bytes(10))
    raw_images = Path(first["outputs"]["download"]) / "train-images-idx3-ubyte.gz"
    raw_images.write_bytes(raw_images.read_bytes()[:100])
    result = pipeline(**params)
    # download refetches the same verified bytes, so preprocess stays cached
    assert states(result) == expect("download", "train", "evaluate", "analyze", "promote", "report")
    assert len(raw_images.read_bytes()) > 100


@pytest.mark.parametrize("module, marker, edit, stages", [
    # reached through tasks.preprocess -> mnist_autoencoder.data.preprocessing -> idx, and through
    # tasks.drift -> mnist_autoencoder.scoring.drift (imported in a function: a rebuilt reference)
    ("mnist_autoencoder/data/idx.py", "    if len(data) < 4:\n",
     "    data = bytes(data)  # edited\n", ("preprocess", "drift")),
    # reached only through tasks.report -> mnist_autoencoder.reports.run (imported in a function)
    ("mnist_autoencoder/reports/figures.py", "def plot_loss_curves(",
     "EDITED_BY_THE_TEST = True\n\n\n", ("report",)),
])
def test_changing_a_helper_module_invalidates_its_stage_only(base, prefect_api, tmp_path,
                                                              module, marker, edit, stages):
    """Edit a module in a copy of the project: only the stages whose imports reach it rerun."""
    params, _ = base
    copy = tmp_path / "project"
    for package in ("flows", "tasks", "tests", "mnist_autoencoder"):
        shutil.copytree(PROJECT / package, copy / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / module
    source = path.read_text()
    assert source.count(marker) == 1
    path.write_text(source.replace(marker, edit + marker))
    stdout = cli_run(params, prefect_api, cwd=copy)
    assert summary_states(stdout) == expect(*stages)
    assert "TensorFlow: not imported" in stdout


def test_a_deleted_champion_is_reinstated_not_left_missing(base):
    """The stale-champion defect: every stage cached, promote included, and no champion."""
    params, first = base
    champion = Path(params["artifacts_dir"]) / "models" / helpers.NAME / "champion"
    assert (champion / "encoder.keras").is_file()
    shutil.rmtree(champion)
    result = pipeline(**params)
    assert states(result) == expect("promote", "report")  # the report shows the decision
    assert (champion / "encoder.keras").is_file()
    assert result["decision"]["repaired"].startswith("Champion reinstated")
    assert states(pipeline(**params)) == expect()  # and the next run is a no-op again
