"""The flows with their data and artifacts on S3 (moto's server on loopback, a real socket):
the pipeline, an ingest and the retrain it feeds, a drift check, a scoring run, a cached
rerun by a worker whose disk is empty, the refusals, and no credentials anywhere.

One bucket for the module; each test builds on the state the previous one left.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.cli import group_params
from flows.drift import mnist_drift
from flows.ingest import mnist_ingest
from flows.score import mnist_score
from flows.state import mnist_state
from flows.sweep import mnist_sweep
from mnist_autoencoder.database import DATABASE_ENV
from mnist_autoencoder.lifecycle.registry import read_registry
from mnist_autoencoder.paths import models_dir
from mnist_autoencoder.store import default_scratch
from tests import helpers
from tests.helpers import PROJECT, api, cli_command, expect, pipeline, states, summary_states
from tests.s3 import SECRET, free_port

DATASET = "synthetic-s3"
BUCKET = "flows"
DATA, ARTIFACTS = f"s3://{BUCKET}/team/data", f"s3://{BUCKET}/team/artifacts"


@pytest.fixture(scope="module")
def store(s3, prefect_api, tmp_path_factory):
    """The bucket, and the database every "machine" of the module shares (a SQLite file
    here; tests/test_multihost.py runs the loop on PostgreSQL across hosts)."""
    root = tmp_path_factory.mktemp("s3-flows")
    s3.bucket(BUCKET)
    params = helpers.growing_run(DATASET, root, n_train=800, val_size=200, warm_epochs=2,
                                 warm_replay=300) | {"data_dir": DATA, "artifacts_dir": ARTIFACTS}
    saved = os.environ.get(DATABASE_ENV)
    os.environ[DATABASE_ENV] = f"sqlite:///{root / 'shared-state.db'}"
    yield s3, root, params
    if saved is None:
        os.environ.pop(DATABASE_ENV, None)
    else:
        os.environ[DATABASE_ENV] = saved


def scratch_folders():
    return [default_scratch(DATA), default_scratch(ARTIFACTS)]


def test_the_pipeline_runs_with_data_and_artifacts_on_s3(store):
    s3, root, params = store
    run = pipeline(**params)
    assert set(states(run).values()) == {"ran"} and run["decision"]["promoted"]
    keys = s3.keys(BUCKET)
    for prefix in ("team/data/trees/", "team/artifacts/trees/",
                   "team/artifacts/.prefect-cache/trees/"):
        assert any(k.startswith(prefix) for k in keys), prefix
    # the newest artifacts tree names the champion and the registry; nothing local to a
    # machine was published (leases, shard stamps, locks, checkpoints)
    trees = sorted(k for k in keys if k.startswith("team/artifacts/trees/"))
    tree = json.loads(s3.client().get_object(Bucket=BUCKET, Key=trees[-1])["Body"].read())
    # the decision is in the database; the model in the store by hash, and the champion/
    # copy stays on this machine (each machine makes its own from the store)
    assert not [f for f in tree["files"] if "registry" in f or "/champion/" in f]
    champion = read_registry(models_dir(default_scratch(ARTIFACTS)))
    assert list(champion["event"]) == ["promoted"]
    assert any(f.startswith(f"models/{DATASET}/store/{champion['model_sha256'][0][:24]}/")
               for f in tree["files"])
    data_trees = sorted(k for k in keys if k.startswith("team/data/trees/"))
    data_files = json.loads(s3.client().get_object(Bucket=BUCKET, Key=data_trees[-1])[
        "Body"].read())["files"]
    assert any(f.startswith(f"shards/{DATASET}/base-") for f in data_files)
    assert not [f for f in [*tree["files"], *data_files]
                if f.startswith("leases/") or "/." in f or f.startswith(".")]
    # the work happened in the scratch mirrors, named after the URLs
    assert Path(run["outputs"]["train"]).is_relative_to(default_scratch(ARTIFACTS))
    # the summary names the report where it lives: its object in the store
    assert f"Report: {ARTIFACTS}/objects/" in run["summary"]
    assert run["report"].removeprefix(f"s3://{BUCKET}/") in keys


def test_a_worker_with_an_empty_disk_reruns_nothing(store, tmp_path):
    """Another machine: no scratch, no Prefect cache records of its own; same storage."""
    s3, root, params = store
    for folder in scratch_folders():
        shutil.rmtree(folder)
    env = os.environ | {"PREFECT_API_URL": os.environ.get("PREFECT_API_URL", ""),
                        "MNIST_AE_CACHE_DIR": str(tmp_path / "empty-cache"),
                        "PYTHONPATH": str(PROJECT)}
    started = time.perf_counter()
    proc = subprocess.run(cli_command(params), cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(summary_states(proc.stdout).values()) == {"cached"}, proc.stdout
    assert "tensorflow" not in proc.stderr.lower()  # a cached run never loads it
    storage = [line for line in proc.stdout.splitlines() if line.startswith("Storage: ")]
    print(f"cached rerun from an empty disk: {seconds:.1f} s", *storage, sep="\n")
    assert len(storage) == 3 and all("uploaded 0 (0.0 MB)" in line for line in storage)
    # what it read: the trees, the small files they name (records, hashes, views), not the
    # shards, which no cached stage opens
    assert not (default_scratch(DATA) / "shards" / DATASET).exists() or not any(
        (default_scratch(DATA) / "shards" / DATASET).rglob("images.u8"))


def upload(s3, folder: Path, prefix: str) -> str:
    for path in folder.rglob("*"):
        if path.is_file():
            s3.client().upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder)}")
    return f"s3://{BUCKET}/{prefix}"


def test_an_ingest_on_s3_feeds_a_warm_retrain_through_the_drift_gate(store):
    s3, root, params = store
    batch = helpers.write_idx(root / "batch", *helpers.make_digits(300, seed=21), stem="new")
    # the batch and the base dataset's files are read from the store too
    flat = {"batch": upload(s3, batch, "inbox/batch-1"), "dataset": DATASET,
            "source": upload(s3, Path(params["source"]), "mirror/source"),
            "data_dir": DATA, "artifacts_dir": ARTIFACTS}
    ingested = mnist_ingest(**group_params(mnist_ingest, flat))
    assert ingested["created"] and ingested["new"] == 300
    data_trees = sorted(k for k in s3.keys(BUCKET) if k.startswith("team/data/trees/"))
    files = json.loads(s3.client().get_object(Bucket=BUCKET, Key=data_trees[-1])[
        "Body"].read())["files"]
    assert any(f.startswith(f"snapshots/{DATASET}/batches/") for f in files)
    shutil.rmtree(default_scratch(DATA))  # the retrain reads the batch from the store
    run = pipeline(**params)
    assert run["drift"]["checked"] and run["drift"]["drift"]["n_batch"] == 300
    assert "Training: warm start from" in run["summary"]
    assert states(run) == expect(*(s for s in helpers.pipeline_stages()
                                   if s not in ("download", "corrupt")))


def test_a_drift_check_and_a_scoring_run_use_the_champion_on_s3(store):
    s3, root, params = store
    shutil.rmtree(default_scratch(ARTIFACTS))  # the champion comes from the store
    batch = helpers.write_idx(root / "check", *helpers.make_digits(400, seed=11), gz=False)
    where = {"dataset": DATASET, "data_dir": DATA, "artifacts_dir": ARTIFACTS}
    checked = mnist_drift(**group_params(mnist_drift, where | {"batch": str(batch)}))
    assert checked["result"]["n_batch"] == 400
    # the input is read from the store (copied into the scratch folder once per version)
    url = upload(s3, batch, "inbox/check")
    scored = mnist_score(**group_params(mnist_score, where | {"input": url}))
    assert scored["counts"]["count"] == 400
    tree = sorted(k for k in s3.keys(BUCKET) if k.startswith("team/artifacts/trees/"))[-1]
    files = json.loads(s3.client().get_object(Bucket=BUCKET, Key=tree)["Body"].read())["files"]
    assert any(f.startswith("score/") and f.endswith("scores.parquet") for f in files)
    assert any(f.startswith("drift/") and f.endswith("drift.md") for f in files)
    assert scored["scores"].startswith(f"{ARTIFACTS}/objects/")


def test_score_shards_on_dask_workers_whose_disks_hold_nothing_of_the_flows(store, prefect_api,
                                                                           tmp_path):
    """Two Dask workers, each in its own mount namespace with an empty tmpfs over the
    scratch folder and its own working directory: what they read, they read from the
    store; what they write, they publish there."""
    import pandas as pd

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("private mounts for the workers need root and unshare")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            f"mount -t tmpfs tmpfs {tmp_path}"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no private tmpfs mount here: {probe.stderr.strip()[:200]}")
    s3, root, params = store
    url = f"s3://{BUCKET}/inbox/check"  # uploaded by the previous test
    where = {"dataset": DATASET, "data_dir": DATA, "artifacts_dir": ARTIFACTS}
    whole = mnist_score(**group_params(mnist_score, where | {"input": url}))
    dask = str(Path(sys.executable).parent / "dask")
    port = free_port()
    env = os.environ | {"PREFECT_API_URL": prefect_api, "PYTHONPATH": str(PROJECT),
                        "MNIST_AE_DATA_DIR": DATA, "MNIST_AE_ARTIFACTS_DIR": ARTIFACTS}
    scratch = os.environ["MNIST_AE_SCRATCH"]
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port",
                                   str(port), "--no-dashboard"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for k in range(2):
            home = tmp_path / f"worker-{k}"
            home.mkdir()
            command = (f"mount -t tmpfs tmpfs {scratch} && cd {home} && exec {dask} worker "
                       f"tcp://127.0.0.1:{port} --nthreads 1 --no-dashboard")
            processes.append(subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", command],
                env=env | {"MNIST_AE_CACHE_DIR": str(home / "cache")},
                stdout=open(home / "log", "w"), stderr=subprocess.STDOUT))
        import distributed

        with distributed.Client(f"tcp://127.0.0.1:{port}", timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            proc = subprocess.run(
                cli_command(where | {"input": url}, module="flows.score"),
                cwd=PROJECT, capture_output=True, text=True, timeout=600,
                env=env | {"MNIST_AE_DASK_ADDRESS": f"tcp://127.0.0.1:{port}",
                           "MNIST_AE_SCORE_SHARDS": "3"})
            assert proc.returncode == 0, proc.stderr[-3000:]
            ran = client.run(lambda dask_worker: dask_worker.state.transition_counter)
        assert len(ran) == 2 and all(n > 0 for n in ran.values())  # both workers scored
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(30)
    tree = sorted(k for k in s3.keys(BUCKET) if k.startswith("team/artifacts/trees/"))[-1]
    files = json.loads(s3.client().get_object(Bucket=BUCKET, Key=tree)["Body"].read())["files"]
    assert sum(f.endswith("summary.npz") for f in files) >= 3  # the shards, published by them
    sharded = next(line for line in proc.stdout.splitlines()
                   if line.startswith("Scores: ")).removeprefix("Scores: ")
    assert sharded.startswith(f"{ARTIFACTS}/objects/")
    def read(url):
        key = url.removeprefix(f"s3://{BUCKET}/")
        return pd.read_parquet(io.BytesIO(s3.client().get_object(Bucket=BUCKET, Key=key)[
            "Body"].read()))

    key = ["source", "index"]
    pd.testing.assert_frame_equal(
        read(sharded).sort_values(key).reset_index(drop=True),
        read(whole["scores"]).sort_values(key).reset_index(drop=True), check_categorical=False)


def test_a_sweep_on_s3_publishes_its_trials_and_report(store):
    s3, root, params = store
    flat = {k: params[k] for k in ("dataset", "source", "val_size", "batch_size",
                                   "learning_rate", "data_dir", "artifacts_dir")}
    result = mnist_sweep(**group_params(mnist_sweep, flat | {
        "variants": ("shallow",), "latent_dims": (4,), "seeds": (0,), "epochs": 1}))
    assert [t["state"] for t in result["trials"]] == ["Completed", "Completed"]  # + PCA
    tree = sorted(k for k in s3.keys(BUCKET) if k.startswith("team/artifacts/trees/"))[-1]
    files = json.loads(s3.client().get_object(Bucket=BUCKET, Key=tree)["Body"].read())["files"]
    assert any(f.startswith("trial/") for f in files)
    assert any(f.endswith("sweep.html") for f in files)


def test_bad_stores_are_refused_in_one_line_and_publish_nothing(store, prefect_api, tmp_path):
    s3, root, params = store
    before = s3.keys(BUCKET)
    no_keys = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
               "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
               "AWS_CONFIG_FILE": str(tmp_path / "none")}
    for changes, env, expected in [
            ({"data_dir": "nope://x/data"}, {}, "unknown storage scheme 'nope'"),
            ({"artifacts_dir": "s3://no-such-bucket/a"}, {}, "the bucket does not exist"),
            ({}, no_keys, "no credentials for the store"),
            ({}, {DATABASE_ENV: ""}, f"so the registry and the manifests need a database that "
             f"every machine shares: set {DATABASE_ENV}")]:
        proc = subprocess.run(cli_command(params | changes), cwd=PROJECT,
                              env=os.environ | {"PREFECT_API_URL": prefect_api} | env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert expected in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
            proc.stderr
    assert s3.keys(BUCKET) == before


def test_the_credentials_appear_in_no_file_log_or_artifact(store, prefect_api):
    s3, root, params = store
    secret = SECRET.encode()
    for folder in [*scratch_folders(), Path(os.environ["MNIST_AE_CACHE_DIR"])]:
        for path in folder.rglob("*"):
            if path.is_file():
                assert secret not in path.read_bytes(), path
    for key in s3.keys(BUCKET):
        assert secret not in s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read(), key
    artifacts = api(prefect_api, "/artifacts/filter", {"limit": 200})
    logs = api(prefect_api, "/logs/filter", {"limit": 200})
    assert artifacts and SECRET not in json.dumps(artifacts) and SECRET not in json.dumps(logs)
    runs = api(prefect_api, "/flow_runs/filter", {"limit": 200})
    assert runs and SECRET not in json.dumps(runs)  # parameters included


def test_a_lost_database_is_rebuilt_from_the_store_by_a_machine_with_an_empty_disk(
        store, monkeypatch):
    s3, root, params = store
    where = {"data_dir": DATA, "artifacts_dir": ARTIFACTS}
    before = mnist_state(paths=where)
    assert before["matches"]
    held = before["datasets"][DATASET]
    assert held["batches"] >= 1 and held["decisions"] >= 2 and held["champion"]
    for folder in scratch_folders():
        shutil.rmtree(folder)
    monkeypatch.setenv(DATABASE_ENV, f"sqlite:///{root / 'rebuilt-state.db'}")  # a new one
    rebuilt = mnist_state(rebuild=True, paths=where)
    assert rebuilt["matches"] and rebuilt["datasets"][DATASET] | {"notes": []} == held | {
        "notes": []}
    assert not rebuilt["datasets"][DATASET]["notes"]
    # the rebuilt database serves a scoring run with the same champion
    batch = helpers.write_idx(root / "after-rebuild", *helpers.make_digits(100, seed=12),
                              gz=False)
    scored = mnist_score(**group_params(mnist_score, where | {"dataset": DATASET,
                                                             "input": str(batch)}))
    assert scored["counts"]["count"] == 100
