"""The command line as a user meets it: bad values refused in one line before Prefect starts."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.flowrun import PROJECT, cli_command


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
