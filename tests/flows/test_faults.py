"""Faults in whole runs: a training process killed mid-way, two identical runs at once."""

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests import helpers
from tests.helpers import (
    PROJECT,
    cli_command,
    cli_env,
    expect,
    pipeline,
    states,
    summary_states,
)

LARGE = "synthetic-large"


@pytest.fixture(autouse=True)
def alarm_raises():
    def fail(signum, frame):
        raise TimeoutError("the run did not finish in time: is a lock held forever?")

    previous = signal.signal(signal.SIGALRM, fail)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def large_source(prefect_api, tmp_path_factory):
    """20,000 synthetic images: epochs slow enough (about 0.2 s) to kill one mid-run."""
    directory = tmp_path_factory.mktemp("large-source")
    helpers.write_dataset(directory, n_train=20_000, n_test=500, seed=7)
    helpers.register(directory, LARGE)
    return directory


def params_for(source, root, **changes):
    return {"dataset": LARGE, "source": str(source), "val_size": 1000, "epochs": 30,
            "batch_size": 32, "latent_dim": 8, "learning_rate": 0.001, "patience": 30,
            "data_dir": str(root / "data"), "artifacts_dir": str(root / "artifacts")} | changes


def checkpoint_epochs(artifacts: Path) -> int:
    for path in (artifacts / "train" / ".checkpoints").glob("*.npz"):
        try:
            with np.load(path) as archive:
                return len(json.loads(str(archive["state"]))["history"])
        except (OSError, ValueError, KeyError):
            pass  # replaced while we read it
    return 0


def test_training_killed_mid_way_resumes_from_its_checkpoint(large_source, prefect_api,
                                                              tmp_path):
    params = params_for(large_source, tmp_path / "killed")
    proc = subprocess.Popen(cli_command(params), cwd=PROJECT,
                            env=cli_env(prefect_api), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    artifacts = Path(params["artifacts_dir"])
    deadline = time.monotonic() + 240
    while checkpoint_epochs(artifacts) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline, "training never reached epoch 3"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    killed_at = checkpoint_epochs(artifacts)
    assert 3 <= killed_at < params["epochs"], "the run finished before it could be killed"
    assert not [p for p in (artifacts / "train").iterdir() if p.name.startswith("train-")]

    signal.alarm(300)  # a lock left by the dead run must not make this wait forever
    try:
        resumed = pipeline(**params)  # takes over the dead run's lock and checkpoint
    finally:
        signal.alarm(0)
    assert states(resumed)["train"] == "ran"
    train_dir = Path(resumed["outputs"]["train"])
    history = (train_dir / "history.csv").read_text().splitlines()
    assert len(history) == 1 + params["epochs"]
    assert not list((artifacts / "train" / ".checkpoints").glob("*.npz"))

    uninterrupted = pipeline(**params_for(large_source, tmp_path / "straight"))
    # Resuming restores weights, Adam's state and the batch order: the same trajectory up
    # to float rounding. Stated tolerance: 1% of the test BCE.
    assert resumed["metrics"]["test_bce"] == pytest.approx(
        uninterrupted["metrics"]["test_bce"], rel=0.01)


def test_two_identical_runs_at_once_both_complete_and_compute_each_stage_once(
        large_source, prefect_api, tmp_path):
    params = params_for(large_source, tmp_path, epochs=3)
    procs = [subprocess.Popen(cli_command(params), cwd=PROJECT,
                              env=cli_env(prefect_api), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (_, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr[-3000:]
    runs = [summary_states(stdout) for stdout, _ in outputs]
    for stage in runs[0]:
        assert sorted(run[stage] for run in runs) == ["cached", "ran"], (stage, runs)

    again = pipeline(**params)  # every record's files are re-hashed before a hit
    assert states(again) == expect()
    artifacts = Path(params["artifacts_dir"])
    assert not [p for p in artifacts.rglob("*") if p.name.endswith((".tmp", ".old"))]
    models = Path(again["outputs"]["train"])
    assert sorted(p.name for p in models.iterdir()) == [
        "autoencoder.keras", "calibration.json", "decoder.keras", "encoder.keras",
        "history.csv"]
