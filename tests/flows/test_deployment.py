"""End to end with real processes: prefect server, work pool, deploy from prefect.yaml, worker,
`prefect deployment run --watch` of the smoke deployment on the real MNIST mirror, and of the
sweep deployment with its trials on a Dask cluster."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import distributed
import pandas as pd
import pytest

from mnist_autoencoder.lifecycle.registry import read_registry
from ops.local_prefect import (
    POOL,
    api_url,
    free_port,
    group_is_empty,
    start_server,
    start_worker,
    stop_process,
)
from tests import helpers
from tests.helpers import PROJECT, api, epoch, write_idx


def prefect(args, env, timeout=300):
    proc = subprocess.run([str(Path(sys.executable).with_name("prefect")), *args], cwd=PROJECT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{proc.stdout[-3000:]}" \
                                 f"\n{proc.stderr[-3000:]}"
    return proc.stdout



def wait_for_run(url, deployment_id, timeout):
    """The first flow run of a deployment that reaches a final state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api(url, "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}}})
        done = [r for r in runs if r["state"] and r["state"]["type"] in FINAL]
        if done:
            return done[0]
        time.sleep(2)
    raise AssertionError(f"no run of deployment {deployment_id} finished in {timeout} s: {runs}")


FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@pytest.mark.integration
def test_smoke_deployment_completes_on_a_worker_and_schedule_is_registered(mnist_mirror,
                                                                            tmp_path):
    port = free_port()
    url = api_url(port)
    paths = json.dumps({"data_dir": str(tmp_path / "data"),
                        "artifacts_dir": str(tmp_path / "artifacts")})
    env = os.environ | {"PREFECT_API_URL": url, "PREFECT_HOME": str(tmp_path / "home"),
                        "MNIST_AE_SOURCE": str(mnist_mirror), "MNIST_AE_DASK_ADDRESS": "",
                        "MNIST_AE_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("PYTEST_CURRENT_TEST", None)
    server = start_server(port, tmp_path / "home", tmp_path / "server.log")
    worker = None
    try:
        prefect(["work-pool", "create", POOL, "--type", "process", "--overwrite"], env)
        prefect(["--no-prompt", "deploy", "--all"], env)
        worker = start_worker(port, POOL, tmp_path / "worker.log", env=env)
        out = prefect(["deployment", "run", "mnist-autoencoder/smoke", "--watch",
                       "--watch-timeout", "900",
                       "--param", f"paths={paths}"], env, timeout=960)
        assert "Completed" in out

        artifacts = tmp_path / "artifacts"
        assert (artifacts / "models" / "mnist" / "champion" / "autoencoder.keras").is_file()
        (report,) = artifacts.glob("report/*/report.md")
        assert "Promoted to champion: no champion yet" in report.read_text()
        keys = {a["key"] for a in api(url, "/artifacts/filter", {})}
        assert {"mnist-autoencoder-report", "mnist-autoencoder-metrics",
                "champion-decision"} <= keys

        # the champion at work: the score deployment on the real MNIST test files
        scored = prefect(["deployment", "run", "mnist-score/score", "--watch",
                          "--watch-timeout", "300", "--param", f"input={mnist_mirror}",
                          "--param", f"paths={paths}"], env, timeout=360)
        assert "Completed" in scored
        (table,) = artifacts.glob("score/*/scores.parquet")
        assert pd.read_parquet(table, columns=["score"]).shape == (70_000, 1)
        assert "mnist-score-summary" in {a["key"] for a in api(url, "/artifacts/filter", {})}

        # Data that grows: an ingested batch's event makes scheduled-retrain run by itself.
        retrain = api(url, "/deployments/name/mnist-autoencoder/scheduled-retrain")
        api(url, f"/deployments/{retrain['id']}", method="PATCH", body={"parameters": {
            "data": {"source": str(mnist_mirror)}, "training": {"epochs": 1},
            "paths": json.loads(paths)}})  # short, and in tmp
        # none of them is in MNIST, and none looks like a digit: the drift gate must hold it
        images, labels = helpers.make_digits(1000, seed=5)
        write_idx(tmp_path / "batch", images, labels, stem="new")
        started = time.time()
        ingested = subprocess.run(
            [sys.executable, "-m", "flows.ingest", "--batch", str(tmp_path / "batch"),
             "--data-dir", str(tmp_path / "data"), "--artifacts-dir", str(tmp_path / "artifacts")],
            cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
        assert ingested.returncode == 0, ingested.stderr[-3000:]
        snapshot = ingested.stdout.strip().splitlines()[-1].split()[1]
        assert snapshot.startswith("mnist-") and "(1000 new, 0 duplicates)" in ingested.stdout
        ingest_done = time.time()
        triggered = wait_for_run(url, retrain["id"], timeout=900)
        assert triggered["state"]["type"] == "COMPLETED", triggered["state"]
        assert triggered["parameters"]["data"]["snapshot"] == f"mnist.snapshot.{snapshot}"
        registry = read_registry(tmp_path / "artifacts" / "models")
        decided = registry[registry["snapshot"] == snapshot]
        assert len(decided) == 1 and decided["event"].iloc[0] == "held"
        assert decided["init"].iloc[0] == "warm"  # from the smoke run's champion
        assert decided["drift"].iloc[0].startswith("Drift: yes (")
        assert api(url, "/events/filter", {"filter": {"event": {
            "name": ["mnist.drift.detected"]}}})["events"]
        (event,) = [e for e in api(url, "/events/filter", {"filter": {"event": {
            "name": ["mnist.snapshot.created"]}}})["events"]]
        timeline = {"ingest started": started, "ingest finished": ingest_done,
                    "event occurred": epoch(event["occurred"]),
                    "run started": epoch(triggered["start_time"]),
                    "decision recorded": epoch(decided["time"].iloc[0]),
                    "run finished": epoch(triggered["end_time"])}
        print("\nEvent-driven retrain timeline (s after ingest started): " + ", ".join(
            f"{name} {moment - started:.1f}" for name, moment in timeline.items()))
        # the weekly cron's run, with no new snapshot since: nothing trains, nothing is decided
        trained = sorted((tmp_path / "artifacts" / "train").glob("*/encoder.keras"))
        cron = prefect(["deployment", "run", "mnist-autoencoder/scheduled-retrain", "--watch",
                        "--watch-timeout", "300"], env, timeout=360)
        assert "Completed" in cron
        assert sorted((tmp_path / "artifacts" / "train").glob("*/encoder.keras")) == trained
        assert len(read_registry(tmp_path / "artifacts" / "models")) \
            == len(registry)

        (schedule,) = retrain["schedules"]
        models = len(list((tmp_path / "artifacts" / "train").glob("*/encoder.keras")))
        assert schedule["active"] and schedule["schedule"]["cron"] == "0 3 * * 1"
        assert schedule["schedule"]["timezone"] == "Europe/Berlin"
        bad_type = subprocess.run(
            [str(Path(sys.executable).with_name("prefect")), "deployment", "run",
             "mnist-autoencoder/smoke", "--param", 'training={"epochs": "many"}'],
            cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)
        assert bad_type.returncode != 0 and "epochs" in bad_type.stdout + bad_type.stderr

        out_of_range = subprocess.run(
            [str(Path(sys.executable).with_name("prefect")), "deployment", "run",
             "mnist-autoencoder/smoke", "--param", 'pipeline={"latent_dim": 0}', "--watch",
             "--watch-timeout", "300"],
            cwd=PROJECT, env=env, capture_output=True, text=True, timeout=360)
        assert out_of_range.returncode != 0
        (failed,) = api(url, "/flow_runs/filter",
                        {"flow_runs": {"state": {"type": {"any_": ["FAILED"]}}}})
        assert "Invalid parameter latent_dim=0" in failed["state"]["message"]
        # rejected before any work: no model trained
        assert len(list((tmp_path / "artifacts" / "train").glob("*/encoder.keras"))) == models

        # The sweep deployment, pointed per run at a Dask cluster (as the README shows).
        # Its worker processes get the server and the stage cache from their environment.
        with pytest.MonkeyPatch.context() as cluster_env:
            for name in ("PREFECT_API_URL", "PREFECT_HOME", "MNIST_AE_CACHE_DIR"):
                cluster_env.setenv(name, env[name])
            cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                               processes=True, dashboard_address=None)
        with cluster, distributed.Client(cluster) as client:
            job_env = json.dumps({"MNIST_AE_DASK_ADDRESS": cluster.scheduler_address})
            sweep = prefect(["deployment", "run", "mnist-sweep/sweep", "--watch",
                             "--watch-timeout", "600", "--job-variable", f"env={job_env}",
                             "--param", "variants=[\"shallow\"]",
                             "--param", "latent_dims=[4]", "--param", 'training={"epochs": 1}',
                             "--param", "data=" + json.dumps({"source": str(mnist_mirror),
                                                              "train_subset": 5000}),
                             "--param", "probe=false", "--param", f"paths={paths}"], env,
                            timeout=660)
            ran = client.run(lambda dask_worker: dask_worker.state.transition_counter)
        assert sum(ran.values()) > 0  # the trials ran on the cluster, not in the flow process
        assert "Completed" in sweep
        (summary,) = (tmp_path / "artifacts").glob("sweep/*/summary.csv")
        assert summary.read_text().count("\n") == 3  # header, shallow 4, pca 4
        assert "mnist-sweep-summary" in {a["key"] for a in api(url, "/artifacts/filter", {})}

        smoke = api(url, "/deployments/name/mnist-autoencoder/smoke")
        assert smoke["parameters"]["data"]["source"] == str(mnist_mirror)  # filled in at deploy
        assert smoke["parameters"]["training"] == {"epochs": 2}
        assert str(PROJECT) in json.dumps(smoke["pull_steps"])
    finally:
        for proc in (worker, server):
            if proc is not None:
                stop_process(proc.pid)
    assert group_is_empty(server.pid) and (worker is None or group_is_empty(worker.pid))
