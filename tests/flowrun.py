"""Helpers to run the flow and read which stages ran, in-process or as a fresh process."""

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
STAGES = ("download", "preprocess", "baselines", "corrupt", "drift", "train", "evaluate",
          "analyze", "promote", "report")


def small_run(dataset, source, root, **changes):
    """Parameters of a pipeline run on a small synthetic dataset that trains in seconds."""
    return {"dataset": dataset, "source": str(source), "val_size": 100, "epochs": 2,
            "batch_size": 64, "latent_dim": 8, "learning_rate": 0.01,
            "data_dir": str(root / "data"), "artifacts_dir": str(root / "artifacts")} | changes


def growing_run(dataset, root, n_train, **changes):
    """A synthetic dataset of its own under ``root`` (so batches can be ingested into it),
    registered as ``dataset``, and ``small_run``'s parameters for it."""
    from tests import synthetic

    synthetic.write_dataset(root / "source", n_train=n_train, n_test=100, seed=0)
    synthetic.register(root / "source", dataset)
    return small_run(dataset, root / "source", root, **changes)


def pipeline(**params):
    """Run the pipeline flow in this process with flat parameters, as the CLI takes them."""
    from flows.autoencoder import mnist_autoencoder
    from flows.cli import group_params

    return mnist_autoencoder(**group_params(mnist_autoencoder, params))


def cli_command(params, module="flows.autoencoder"):
    """argv for a fresh interpreter running a flow's command line.

    The session's synthetic datasets reach it through ``MNIST_AE_CATALOG``.
    """
    args = [f"--{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
            for k, v in params.items()]
    return [sys.executable, "-m", module, *args]


def cli_env(api_url, cwd=PROJECT):
    return os.environ | {"PREFECT_API_URL": api_url, "PYTHONPATH": str(cwd)}


def states(result):
    """Ran or cached, per cached stage (not the uncached look-ups: snapshot, model, input)."""
    return {s["stage"]: "cached" if s["state"] == "Cached" else "ran" for s in result["stages"]
            if s["stage"] in STAGES + ("score",)}


def expect(*ran):
    return {stage: "ran" if stage in ran else "cached" for stage in STAGES}


def cli_run(params, api_url, cwd=PROJECT, **changes):
    """Run the flow's command line in a fresh interpreter against the same API and caches."""
    params = params | changes
    proc = subprocess.run(cli_command(params), cwd=cwd,
                          env=cli_env(api_url, cwd), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def summary_states(stdout):
    lines = [line.split() for line in stdout.splitlines() if line.startswith("  ")]
    return {parts[0]: parts[1] for parts in lines if parts[0] in STAGES}


