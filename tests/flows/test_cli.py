"""The command line as a user meets it: bad values refused in one line before Prefect starts."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import PROJECT, cli_command


def run_cli(*args, module="flows.autoencoder", **env):
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT,
                          env=os.environ | env, capture_output=True, text=True, timeout=120)
    return proc, time.monotonic() - started


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "Invalid parameter epochs=0: must be at least 1."),
    (["--epochs", "many"], "argument --epochs: invalid int value: 'many'"),
    (["--dataset", "cifar"], "Invalid parameter dataset='cifar': choose one of"),
    (["--val-size", "70000"], "must leave training data: 1 <= val_size < 60000 (mnist)"),
    (["--no-such-option", "1"], "unrecognized arguments: --no-such-option"),
])
def test_a_bad_parameter_is_one_line_and_exit_2_before_any_server(args, message):
    proc, seconds = run_cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "temporary server" not in proc.stderr + proc.stdout.lower()
    assert seconds < 30  # no Prefect server was started (10-25 s here)


def test_sweep_grids_are_checked_the_same_way():
    proc, _ = run_cli("--latent-dims", "0,4", module="flows.sweep")
    assert proc.returncode == 2 and "Invalid parameter latent_dims=[0, 4]" in proc.stderr


def test_the_old_champion_layout_is_refused_before_work(tmp_path):
    legacy = tmp_path / "artifacts" / "models" / "champion"
    legacy.mkdir(parents=True)
    (legacy / "champion.json").write_text("{}")
    proc, _ = run_cli("--artifacts-dir", str(tmp_path / "artifacts"))
    assert proc.returncode == 2 and "old single-champion layout" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_ctrl_c_prints_one_line_on_how_to_resume(prefect_api, synthetic_source, tmp_path):
    params = {"dataset": "synthetic", "source": str(synthetic_source), "val_size": 100,
              "epochs": 1000, "patience": 1000, "batch_size": 16, "latent_dim": 8,
              "data_dir": str(tmp_path / "data"), "artifacts_dir": str(tmp_path / "artifacts")}
    # SIGINT restored for the child: under a background job (nohup, `&` in a script) it is
    # inherited as ignored, and Python then installs no KeyboardInterrupt handler at all.
    proc = subprocess.Popen(cli_command(params), cwd=PROJECT,
                            env=os.environ | {"PREFECT_API_URL": prefect_api},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoints = tmp_path / "artifacts" / "train" / ".checkpoints"
    deadline = time.monotonic() + 180
    while not any(checkpoints.glob("*.npz")):  # training has started
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].endswith("run the same command again to resume.")


# One error path: a UserError from anywhere is one line and exit 2, never a traceback.

def one_line_refusal(proc, prog, message):
    """rc 2; the last stderr line, the only one of ours, is ``prog: ...message``; no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert lines[-1].startswith(f"python -m {prog}: ") and message in lines[-1], lines[-1]
    assert sum(line.startswith("python -m ") for line in lines) == 1
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("module, option", [
    ("flows.autoencoder", None), ("flows.score", "--input"), ("flows.ingest", "--batch"),
    ("flows.drift", "--batch"), ("flows.sweep", None),
])
def test_an_unknown_dataset_is_one_line_and_exit_2(module, option, synthetic_source):
    images = [option, str(synthetic_source)] if option else []
    proc, _ = run_cli(*images, "--dataset", "no_such_set", module=module)
    one_line_refusal(proc, module, "Invalid parameter dataset='no_such_set': choose one of")
    assert proc.stderr.count("\n") == 1


@pytest.fixture(scope="module")
def champion(prefect_api, synthetic_source, tmp_path_factory):
    from tests.helpers import pipeline, small_run

    params = small_run("synthetic", synthetic_source, tmp_path_factory.mktemp("cli-champion"))
    assert pipeline(**params)["decision"]["promoted"]
    return params


def last_flow_run(name):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name])),
                                     sort=FlowRunSort.START_TIME_DESC, limit=1)[0]


def test_a_nan_in_a_scoring_input_is_one_line_and_exit_2_and_the_run_failed(
        champion, prefect_api, tmp_path):
    import numpy as np

    images = np.random.default_rng(0).random((8, 28, 28), dtype=np.float32)
    images[3, 5, 5] = np.nan
    np.save(tmp_path / "nan.npy", images)
    proc, _ = run_cli("--input", str(tmp_path / "nan.npy"), "--dataset", "synthetic",
                      "--data-dir", champion["data_dir"],
                      "--artifacts-dir", champion["artifacts_dir"],
                      module="flows.score", PREFECT_API_URL=prefect_api)
    one_line_refusal(proc, "flows.score", f"{tmp_path / 'nan.npy'}: pixels contain NaN")
    run = last_flow_run("mnist-score")
    assert run.state.is_failed() and "pixels contain NaN" in run.state.message


def test_a_missing_drift_reference_is_one_line_and_exit_2(champion, prefect_api, synthetic_source,
                                                         tmp_path):
    import shutil
    from pathlib import Path

    processed = Path(champion["data_dir"]) / "processed" / "synthetic"
    elsewhere = tmp_path / "data" / "processed" / "synthetic"
    for split in processed.glob("*/splits.json"):  # a split, but not the champion's, no raw files
        shutil.copytree(split.parent, elsewhere / split.parent.name)
    proc, _ = run_cli("--batch", str(synthetic_source), "--dataset", "synthetic",
                      "--data-dir", str(tmp_path / "data"),
                      "--artifacts-dir", champion["artifacts_dir"],
                      module="flows.drift", PREFECT_API_URL=prefect_api)
    one_line_refusal(proc, "flows.drift", "no validation split of synthetic to compare with")


# Under load: the temporary server gets time to start.

SETTING = """
import flows.cli
from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as S
before = S.value()
flows.cli.patient_server_startup()
print(before, S.value())
"""


def test_the_command_line_waits_long_enough_for_the_temporary_server():
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")}
    proc = subprocess.run([sys.executable, "-c", SETTING], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=120)
    before, after = map(int, proc.stdout.split())
    assert before == 20 and after >= 120  # Prefect's default, then the command line's


def test_a_run_with_a_temporary_server_completes_with_both_cores_busy(champion, tmp_path):
    """No PREFECT_API_URL: the run starts its own server while two busy loops load the cores."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "flows.score", "--input", champion["source"],
             "--dataset", "synthetic", "--data-dir", champion["data_dir"],
             "--artifacts-dir", champion["artifacts_dir"]],
            cwd=PROJECT, env=env, capture_output=True, text=True, timeout=240)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Timed out while attempting to connect" not in proc.stderr
