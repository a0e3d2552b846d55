"""The sweep flow: trials cached one by one, on the thread pool and on a real Dask cluster.

The first sweep runs in-process on the default thread-pool runner; the second,
with one more code size, runs as a fresh process whose runner is prefect-dask's
DaskTaskRunner on a dask.distributed LocalCluster of 2 worker processes. Both
share the stage cache, so the second trains only the new code size.
"""

import subprocess
from pathlib import Path

import distributed
import pandas as pd
import pytest

from flows.cli import group_params
from flows.runners import DASK_ADDRESS_ENV
from flows.sweep import mnist_sweep
from mnist_autoencoder.errors import UserError
from tests import helpers
from tests.helpers import PROJECT, cli_command, cli_env


def sweep(**params):
    return mnist_sweep(**group_params(mnist_sweep, params))


@pytest.fixture(scope="module")
def first(prefect_api, synthetic_source, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    params = {"dataset": helpers.NAME, "source": str(synthetic_source), "val_size": 100,
              "variants": ("shallow", "vae"), "latent_dims": (2, 4), "seeds": (0,),
              "epochs": 2, "batch_size": 64, "learning_rate": 0.01,
              "data_dir": str(root / "data"), "artifacts_dir": str(root / "artifacts")}
    return params, sweep(**params)


def trial_states(result):
    return {(t["variant"], t["latent_dim"], t["seed"]): "cached" if t["state"] == "Cached"
            else "ran" for t in result["trials"]}


def test_sweep_trains_every_trial_and_writes_table_and_plot(first):
    _, result = first
    assert set(trial_states(result)) == {(v, d, 0) for v in ("shallow", "vae", "pca")
                                         for d in (2, 4)}
    assert set(trial_states(result).values()) == {"ran"}
    report = Path(result["report"])
    table = pd.read_csv(report.parent / "summary.csv")
    assert len(table) == 6 and set(table["variant"]) == {"shallow", "vae", "pca"}
    assert table["test_bce"].between(0, 0.69).all()  # below predicting 0.5 everywhere
    assert table["probe_accuracy"].between(0, 1).all()
    assert (report.parent / "rate_distortion.png").stat().st_size > 5000
    assert "Rate-distortion" in report.read_text() and "| vae | 4 |" in (
        report.parent / "sweep.md").read_text()


@pytest.fixture(scope="module")
def dask_cluster(prefect_api):
    # Worker processes inherit the environment: the API to report to, the caches.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PREFECT_API_URL", prefect_api)
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
    client = distributed.Client(cluster)
    yield cluster, client
    client.close()
    cluster.close()


def test_growing_the_grid_on_a_dask_cluster_trains_only_new_trials(first, dask_cluster,
                                                                     prefect_api):
    params, before = first
    cluster, client = dask_cluster
    env = cli_env(prefect_api) | {DASK_ADDRESS_ENV: cluster.scheduler_address}
    proc = subprocess.run(cli_command(params | {"latent_dims": (2, 4, 8)}, "flows.sweep"),
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("  ")]
    states = {(r[0], int(r[1]), int(r[2])): r[3] for r in rows if len(r) == 7}
    assert states == {(v, d, 0): "ran" if d == 8 else "cached"
                      for v in ("shallow", "vae", "pca") for d in (2, 4, 8)}
    assert "TensorFlow: not imported" in proc.stdout  # trials trained on the workers
    tasks_per_worker = client.run(lambda dask_worker: dask_worker.state.transition_counter)
    assert len(tasks_per_worker) == 2 and all(n > 0 for n in tasks_per_worker.values())
    table = pd.read_csv(Path(proc.stdout.split("Report: ")[1].strip()).parent / "trials.csv")
    old = pd.read_csv(Path(before["report"]).parent / "trials.csv")
    kept = table.merge(old, on=["variant", "latent_dim", "seed"], suffixes=("", "_before"))
    assert len(kept) == 6 and (kept["test_bce"] == kept["test_bce_before"]).all()


def test_failed_trials_leave_a_report_of_the_others_and_fail_the_flow(prefect_api, tmp_path):
    """30x30 images: the conv variant cannot take them (its side must divide by 4)."""
    from flows.sweep import SweepError

    helpers.write_dataset(tmp_path / "source", n_train=300, side=30)
    helpers.register(tmp_path / "source", "synthetic30")
    params = {"dataset": "synthetic30", "source": str(tmp_path / "source"), "val_size": 50,
              "variants": ("shallow", "conv"), "latent_dims": (4,), "epochs": 1,
              "batch_size": 64, "probe": False, "data_dir": str(tmp_path / "data"),
              "artifacts_dir": str(tmp_path / "artifacts")}
    with pytest.raises(SweepError, match=r"1 of 3 trials failed: conv/4/seed 0 \(Failed\)\. "
                                         r"The first one's error: the conv variant "
                                         r"needs square images") as failed:
        sweep(**params)
    assert isinstance(failed.value, UserError)  # every failed trial failed on the user's input
    (summary,) = (tmp_path / "artifacts").glob("sweep/*/summary.csv")
    assert set(pd.read_csv(summary)["variant"]) == {"shallow", "pca"}


def test_bad_grids_are_refused_before_any_work(synthetic_source, tmp_path):
    from mnist_autoencoder.params import ParameterError

    params = {"dataset": helpers.NAME, "source": str(synthetic_source), "val_size": 100,
              "data_dir": str(tmp_path / "data"), "artifacts_dir": str(tmp_path / "artifacts")}
    for changes, pattern in [
        ({"variants": ("shallow", "mlp")}, r"variants=\['shallow', 'mlp'\].*'conv', 'vae'"),
        ({"variants": ()}, "variants"),
        ({"latent_dims": (0, 4)}, r"latent_dims=\[0, 4\]: give one or more distinct sizes"),
        ({"latent_dims": (4, 4)}, "latent_dims"),
        ({"seeds": (-1,)}, "seeds"),
        ({"epochs": 0}, "epochs"),
    ]:
        with pytest.raises(ParameterError, match=pattern):
            mnist_sweep.fn(**group_params(mnist_sweep, params | changes))
    assert not (tmp_path / "data").exists()
