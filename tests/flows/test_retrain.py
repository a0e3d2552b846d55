"""Retraining on a grown snapshot, on the real Prefect engine: the parent, the drift gate
before training, the warm starts, and what a drift does to the promotion.

One growing synthetic dataset for the module; each test builds on the state the
previous one left (a new batch, a new run), as a user's history would.
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from flows.cli import group_params
from flows.ingest import mnist_ingest
from mnist_autoencoder.lifecycle.registry import champion_dir, read_champion, read_registry
from mnist_autoencoder.paths import models_dir
from mnist_autoencoder.scoring.drift import MIN_BATCH
from tests import helpers
from tests.helpers import (
    PROJECT,
    cli_command,
    cli_env,
    cli_run,
    expect,
    growing_run,
    pipeline,
    pipeline_stages,
    states,
    summary_states,
    wait_for_event,
    write_idx,
)

DATASET = "synthetic-retrain"


@pytest.fixture(scope="module")
def history(prefect_api, tmp_path_factory):
    root = tmp_path_factory.mktemp("retrain")
    params = growing_run(DATASET, root, n_train=800, val_size=200, warm_epochs=2,
                         warm_replay=300)
    base = pipeline(**params)
    assert set(states(base).values()) == {"ran"} and base["decision"]["promoted"]
    return root, params, base


def ingest(root, params, name, images, labels):
    batch = write_idx(root / name, images, labels, stem="new")
    flat = {"batch": str(batch), "dataset": DATASET, "source": params["source"],
            "data_dir": params["data_dir"], "artifacts_dir": params["artifacts_dir"]}
    return mnist_ingest(**group_params(mnist_ingest, flat))["snapshot"]


def registry(params):
    return read_registry(models_dir(params["artifacts_dir"]))


def test_a_base_run_has_no_parent_and_checks_no_drift(history):
    _, _, base = history
    assert base["drift"]["line"].startswith("Drift: not checked (") and "base snapshot" in \
        base["drift"]["line"]
    assert "Training: from scratch" in base["summary"]
    assert registry(history[1])["init"].tolist() == ["scratch"]


def test_a_new_snapshot_is_gated_then_warm_started_from_the_parent(history, prefect_api):
    root, params, base = history
    snapshot = ingest(root, params, "clean", *helpers.make_digits(300, seed=21))
    run = pipeline(**params)
    assert states(run) == expect(*(s for s in pipeline_stages()
                                   if s not in ("download", "corrupt")))
    assert run["drift"]["checked"] and run["drift"]["drift"]["n_batch"] == 300
    assert run["drift"]["drift"]["reference"]["kind"] == "exact"  # the parent's own split
    # warm: the parent's weights, warm_epochs at the warm learning rate, recorded as such
    config = json.loads(registry(params)["parameters"].iloc[-1])
    assert config["init"] == "warm" and config["epochs"] == 2 and config["learning_rate"] == 3e-4
    # it trained on the new batch's training rows plus 300 of the 600 earlier ones, not all
    rows, counts = config["rows"], config["counts"]
    assert rows["replay"] == 300 and 150 < rows["new"] < 300
    assert rows["train"] == rows["new"] + 300 < counts["train"] == 600 + rows["new"]
    last = registry(params).iloc[-1]
    assert last["snapshot"] == snapshot and last["init"] == "warm"
    assert last["parent_model_sha256"] == registry(params)["model_sha256"].iloc[0]
    assert last["drift"] == run["drift"]["line"]
    assert "Training: warm start from run" in run["summary"]
    assert run["metrics"]["n_recent"] > 0 and run["metrics"]["recent_bce"] > 0
    for stage, probe in (("baselines", "raw pixels"), ("analyze", "codes")):
        with np.load(Path(run["outputs"][stage]) / "probes.npz") as probes:
            assert bool(probes[f"{probe}/warm"]), stage
    report = Path(run["report"]).read_text()
    assert "Drift gate: the new data against the parent model" in report
    assert "warm start from the parent model" in report


def test_an_unchanged_retrain_is_all_cached_and_never_imports_tensorflow(history, prefect_api):
    _, params, _ = history
    assert states(pipeline(**params)) == expect()
    stdout = cli_run(params, prefect_api)
    assert summary_states(stdout) == expect() and "TensorFlow: not imported" in stdout
    assert "  parent       checked" in stdout


def test_a_drifted_batch_holds_the_promotion_and_announces_itself(history, prefect_api):
    root, params, _ = history
    champion_before = read_champion(champion_dir(Path(params["artifacts_dir"]) / "models",
                                                 DATASET))["model_sha256"]
    images, labels = helpers.make_digits(300, seed=22)
    ingest(root, params, "inverted", 255 - images, labels)
    # a tolerance that would let it in: what keeps it out is the drift, not its test BCE
    run = pipeline(**params | {"promotion_tolerance": 0.9})
    gate = run["drift"]
    assert gate["tripped"] and gate["drift"]["flagged"]["batch"] > 0.5
    assert run["decision"]["held"] and not run["decision"]["promoted"]
    assert "drift gate tripped on the new data" in run["decision"]["reason"]
    assert registry(params)["event"].iloc[-1] == "held"
    after = read_champion(champion_dir(Path(params["artifacts_dir"]) / "models", DATASET))
    assert after["model_sha256"] == champion_before
    assert "Held for review" in Path(run["report"]).read_text()
    resource = f"mnist.drift.{DATASET}.{gate['drift']['fingerprint'][:12]}"
    (event,) = wait_for_event(prefect_api, "mnist.drift.detected", resource)
    assert event["payload"]["n_batch"] == 300 and event["payload"]["batches"]


def test_recording_the_drift_instead_reruns_only_the_decision(history):
    _, params, _ = history
    run = pipeline(**params | {"drift_policy": "record", "promotion_tolerance": 0.9})
    assert states(run) == expect("promote", "report")
    assert run["decision"]["promoted"] and not run["decision"]["held"]
    assert registry(params)["drift_policy"].iloc[-1] == "record"


def test_without_warm_start_the_same_snapshot_trains_from_scratch(history):
    _, params, _ = history
    run = pipeline(**params | {"warm_start": False, "drift_policy": "record"})
    assert states(run) == expect("baselines", "train", "evaluate", "analyze", "promote",
                                 "report")
    assert json.loads(registry(params)["parameters"].iloc[-1])["init"] == "scratch"
    assert "Training: from scratch" in run["summary"]


def test_too_few_new_images_are_not_gated_and_say_why(history):
    root, params, _ = history
    trained_on = ingest(root, params, "few", *helpers.make_digits(300, seed=23))
    assert pipeline(**params | {"snapshot": trained_on, "drift_policy": "record",
                                "promotion_tolerance": 0.9})["decision"]["promoted"]
    ingest(root, params, "fewer", *helpers.make_digits(MIN_BATCH - 10, seed=24))
    run = pipeline(**params | {"drift_policy": "record"})
    assert f"on snapshot {trained_on} " in run["parent"]
    assert run["drift"]["line"].startswith(
        f"Drift: not checked ({MIN_BATCH - 10} new images since the parent's snapshot; the "
        f"gate needs at least {MIN_BATCH}: below that the tests have almost no power")
    assert not run["drift"]["checked"] and not run["decision"]["held"]


def test_a_changed_batch_shard_is_named_in_one_line_before_any_work(history, prefect_api):
    _, params, _ = history
    batches = Path(params["data_dir"]) / "snapshots" / DATASET / "batches"
    pixels = next(batches.glob("*/images.u8"))
    original = pixels.read_bytes()
    stages_before = {p for p in Path(params["artifacts_dir"]).rglob("*") if p.is_dir()}
    pixels.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
    try:  # same size, one bit: only the hash can tell, and it must, though a stamp exists
        proc = subprocess.run(cli_command(params | {"drift_policy": "record"}), cwd=PROJECT,
                              env=cli_env(prefect_api), capture_output=True, text=True,
                              timeout=300)
    finally:
        pixels.write_bytes(original)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert lines[-1].startswith("python -m flows.autoencoder: ") and str(pixels) in lines[-1]
    assert "changed since it was written" in lines[-1]
    assert {p for p in Path(params["artifacts_dir"]).rglob("*") if p.is_dir()} == stages_before
