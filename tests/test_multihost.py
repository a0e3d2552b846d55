"""The loop across machines, end to end (tests/multihost.py builds the machines).

host A: the Prefect server on PostgreSQL, the project's database (PostgreSQL, through
MNIST_AE_DATABASE_URL), the S3 endpoint (moto's server) and the Dask scheduler;
host B and host C: a Prefect worker each, on a work queue of its own (``host-b``,
``host-c``), so the test decides where each deployment runs, and a Dask worker each
that sees nothing but the store. The code and ``.venv`` are shared read-only.

An ingest deployment run on B adds a batch; its ``mnist.snapshot.created`` event makes
the server start ``scheduled-retrain`` (its trigger as in prefect.yaml), which C's worker
runs from an empty disk; the decision lands in PostgreSQL, the model in S3; then the
``score`` deployment runs on B with that champion, its shards on the Dask workers of B
and C. The timeline is printed and written to ``<tmp_path>/timeline.txt``.

Without namespaces (not root, no ``ip netns``/``unshare``), the same scenario runs with
the hosts as separate folders and HOMEs over loopback; the output says which ran.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mnist_autoencoder.data.catalog import declare
from mnist_autoencoder.store import default_scratch
from ops.local_prefect import POOL, is_healthy, server_database_url
from tests import helpers
from tests.helpers import PROJECT, api, epoch
from tests.multihost import Cluster, HostPgCluster, namespaces_unavailable
from tests.postgres import PASSWORD, Unavailable
from tests.s3 import SECRET, free_port

pytestmark = pytest.mark.slow

DATASET = "mnist-mh"  # its snapshots, mnist-mh-<id>, match the trigger's mnist.snapshot.mnist-*
BUCKET = "multihost"
DATA, ARTIFACTS = f"s3://{BUCKET}/team/data", f"s3://{BUCKET}/team/artifacts"
BIN = Path(sys.executable).parent
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


class Timeline:
    def __init__(self, path: Path):
        self.path, self.t0, self.lines = path, None, []

    def add(self, moment: float, text: str) -> None:
        self.lines.append((moment, text))
        print(f"[{moment - (self.t0 or moment):7.1f} s] {text}", flush=True)

    def write(self, header: str) -> str:
        body = "\n".join(f"[{m - self.t0:7.1f} s] {t}" for m, t in sorted(self.lines))
        text = f"{header}\n{body}\n"
        self.path.write_text(text)
        return text


def wait(condition, timeout: float, what: str, cluster: Cluster, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not after {timeout:.0f} s\n{cluster.tails()}")


def test_the_loop_spans_three_hosts(tmp_path, session_dir):
    # MNIST_AE_MULTIHOST_LOOPBACK=1 runs the fallback where namespaces would work too
    why = ("MNIST_AE_MULTIHOST_LOOPBACK is set" if os.environ.get("MNIST_AE_MULTIHOST_LOOPBACK")
           else namespaces_unavailable())
    mode = ("ran with namespaces: 3 hosts = network + mount + UTS namespaces, veth pairs "
            "on a bridge, 10.213.37.0/24" if why is None else
            f"ran without namespaces: {why}; hosts are separate folders and HOMEs on "
            "127.0.0.1")
    print(f"\n{mode}", flush=True)
    base = Path(tempfile.mkdtemp(prefix="mnist-ae-multihost-"))
    os.chmod(base, 0o755)  # postgres reaches its folder on host A's disk through it
    cluster = Cluster(base, namespaces=why is None)
    # no host sees the test session's own Prefect home, catalog, ... nor the test's folder
    cluster.hidden += [session_dir, tmp_path]
    timeline = Timeline(tmp_path / "timeline.txt")
    pg = HostPgCluster(cluster["a"])
    try:
        cluster.up()
        try:
            pg.start()
        except Unavailable as exc:
            pytest.skip(f"no PostgreSQL cluster: {exc}")
        _scenario(cluster, pg, timeline, mode)
    finally:
        logs = tmp_path / "logs"
        logs.mkdir(exist_ok=True)
        for log in (base / "logs").glob("*.log"):
            shutil.copy(log, logs / log.name)
        if (base / "disks" / "a" / "pg" / "log").is_file():
            shutil.copy(base / "disks" / "a" / "pg" / "log", logs / "a-postgres.log")
        cluster.down()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)
        print(f"process logs: {logs}", flush=True)


def _scenario(cluster: Cluster, pg: HostPgCluster, timeline: Timeline, mode: str) -> None:
    a, b, c = cluster["a"], cluster["b"], cluster["c"]
    base = cluster.base

    # ---- host A: PostgreSQL (two databases), S3, the Prefect server, the Dask scheduler
    pg.sql('CREATE DATABASE "prefect"')
    pg.sql('CREATE DATABASE "mnist_ae"')
    s3_port = 5000 if cluster.namespaces else free_port()
    api_port = 4200 if cluster.namespaces else free_port()
    dask_port = 8786 if cluster.namespaces else free_port()
    s3_url, api_url = f"http://{a.ip}:{s3_port}", f"http://{a.ip}:{api_port}/api"
    dask_address = f"tcp://{a.ip}:{dask_port}"
    listen = "0.0.0.0" if cluster.namespaces else "127.0.0.1"
    cluster.shared_env.update({
        "AWS_ENDPOINT_URL": s3_url, "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
        "PREFECT_API_URL": api_url,
        "MNIST_AE_DATABASE_URL": pg.url("mnist_ae"),
        "MNIST_AE_DATA_DIR": DATA, "MNIST_AE_ARTIFACTS_DIR": ARTIFACTS,
        "MNIST_AE_CATALOG": str(base / "config" / "catalog.json"),
        "MNIST_AE_DASK_ADDRESS": ""})
    a.spawn("s3", [str(BIN / "moto_server"), "-H", listen, "-p", str(s3_port)])
    server = a.spawn("prefect-server", [str(BIN / "prefect"), "server", "start", "--host",
                                        listen, "--port", str(api_port)],
                     env=a.env({"PREFECT_API_DATABASE_CONNECTION_URL":
                                server_database_url(pg.url("prefect"))}))
    a.spawn("dask-scheduler", [str(BIN / "dask"), "scheduler", "--host", a.ip, "--port",
                               str(dask_port), "--no-dashboard"])
    # Dask workers on B and C, each in an empty private disk and scratch: only the store
    for host in (b, c):
        host.spawn("dask-worker", [str(BIN / "dask"), "worker", dask_address, "--host",
                                   host.ip, "--nthreads", "1", "--no-dashboard", "--name",
                                   host.hostname], private_scratch=True)

    # ---- the data: a synthetic dataset (its files in S3), a batch, images to score
    ctl = base / "ctl"
    spec = helpers.write_dataset(ctl / "source", n_train=600, n_test=100, seed=0)
    declare(DATASET, spec, path=base / "config" / "catalog.json")
    batch = helpers.write_idx(ctl / "batch", *helpers.make_digits(300, seed=21), stem="new")
    check = helpers.write_idx(ctl / "check", *helpers.make_digits(400, seed=11), gz=False)

    def s3_ready():
        try:
            urllib.request.urlopen(s3_url + "/moto-api/", timeout=2)
            return True
        except OSError:
            return False

    wait(s3_ready, 60, "moto's S3 server on host A", cluster, 0.3)
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                      aws_access_key_id="test-key", aws_secret_access_key=SECRET)
    s3.create_bucket(Bucket=BUCKET)

    def upload(folder: Path, prefix: str) -> str:
        for path in folder.rglob("*"):
            if path.is_file():
                s3.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder)}")
        return f"s3://{BUCKET}/{prefix}"

    source_url = upload(ctl / "source", "mirror/source")
    batch_url = upload(batch, "inbox/batch-1")
    check_url = upload(check, "inbox/check")

    wait(lambda: is_healthy(api_url) or server.poll() is not None, 240,
         "the Prefect server on host A", cluster)
    assert server.poll() is None, cluster.tails()

    # ---- the deployments of prefect.yaml, each on the work queue of the host that runs it
    env = os.environ | cluster.shared_env | {
        "PREFECT_HOME": str(ctl / "prefect"), "PWD": str(PROJECT),
        "MNIST_AE_SOURCE": source_url, "MNIST_AE_DASK_ADDRESS": dask_address,
        "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("PYTEST_CURRENT_TEST", None)
    prefect_file = ctl / "prefect.yaml"
    prefect_file.write_text(yaml.safe_dump(deployments_on_queues(), sort_keys=False))

    def prefect(*args, timeout=300):
        proc = subprocess.run([str(BIN / "prefect"), *args], cwd=PROJECT, env=env,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, (f"prefect {' '.join(args)} failed:\n"
                                      f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n"
                                      f"{cluster.tails()}")
        return proc.stdout

    prefect("work-pool", "create", POOL, "--type", "process", "--overwrite")
    for queue in ("host-b", "host-c"):
        api(api_url, f"/work_pools/{POOL}/queues", {"name": queue})
    prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file))
    workers = {}
    for host in (b, c):
        workers[host.name] = host.spawn("worker", [
            str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--work-queue",
            host.hostname, "--name", host.hostname])
    for host in (b, c):
        log = base / "logs" / f"{host.name}-worker.log"
        wait(lambda log=log, proc=workers[host.name]: "started!" in log.read_text()
             or proc.poll() is not None,
             180, f"the Prefect worker on {host.hostname}", cluster)
        assert workers[host.name].poll() is None, cluster.tails()
    deployment = {d: api(api_url, f"/deployments/name/{d}") for d in (
        "mnist-ingest/ingest", "mnist-autoencoder/scheduled-retrain", "mnist-score/score")}
    assert {d["work_queue_name"] for d in deployment.values()} == {"host-b", "host-c"}

    # ---- 1. ingest on B
    timeline.t0 = time.time()
    timeline.add(timeline.t0, f"ingest requested: deployment mnist-ingest/ingest, queue "
                 f"host-b, batch {batch_url} (300 images)")
    prefect("deployment", "run", "mnist-ingest/ingest", "--param", f"batch={batch_url}",
            "--watch", "--watch-timeout", "300", timeout=330)
    (ingest_run,) = api(api_url, "/flow_runs/filter", {"flow_runs": {"deployment_id": {
        "any_": [deployment["mnist-ingest/ingest"]["id"]]}}})
    assert ingest_run["state"]["type"] == "COMPLETED", ingest_run["state"]
    assert ingest_run["work_queue_name"] == "host-b"
    import psycopg

    with psycopg.connect(pg.url("mnist_ae")) as conn:
        (seq, snapshot, ingest_host, added), = conn.execute(
            "SELECT seq, snapshot_id, host, time FROM batches WHERE dataset = %s",
            (DATASET,)).fetchall()
    timeline.add(epoch(ingest_run["start_time"]), f"ingest flow run {ingest_run['name']} "
                 f"started on worker host-b (queue host-b)")
    timeline.add(epoch(added), f"ingest on {ingest_host}: snapshot {snapshot} (batch seq "
                 f"{seq}, 300 new) in PostgreSQL, its shard in {DATA}")

    # ---- 2. the event, and the retrain it triggers on C
    retrain_id = deployment["mnist-autoencoder/scheduled-retrain"]["id"]
    (event,) = wait(lambda: api(api_url, "/events/filter", {"filter": {"event": {
        "name": ["mnist.snapshot.created"]}}})["events"], 30, "the mnist.snapshot.created "
        "event", cluster)
    assert event["resource"]["prefect.resource.id"] == f"mnist.snapshot.{snapshot}"
    timeline.add(epoch(event["occurred"]), f"event mnist.snapshot.created, resource "
                 f"mnist.snapshot.{snapshot}")

    def retrain_done():
        runs = api(api_url, "/flow_runs/filter", {"flow_runs": {"deployment_id": {
            "any_": [retrain_id]}}})
        done = [r for r in runs if r["state"] and r["state"]["type"] in FINAL]
        return done[0] if done else None

    retrain = wait(retrain_done, 420, "the triggered scheduled-retrain run", cluster, 2)
    assert retrain["state"]["type"] == "COMPLETED", (retrain["state"], cluster.tails(60))
    assert retrain["work_queue_name"] == "host-c"
    assert retrain["parameters"]["data"]["snapshot"] == f"mnist.snapshot.{snapshot}"
    assert retrain["id"] in (base / "logs" / "c-worker.log").read_text()
    assert retrain["id"] not in (base / "logs" / "b-worker.log").read_text()
    created = api(api_url, f"/flow_runs/{retrain['id']}")["created"]
    timeline.add(epoch(created), f"flow run {retrain['name']} of scheduled-retrain created "
                 f"by the trigger (parameters data.snapshot=mnist.snapshot.{snapshot})")
    timeline.add(epoch(retrain["start_time"]), f"flow run {retrain['name']} started on "
                 f"worker host-c (queue {retrain['work_queue_name']}, process "
                 f"{retrain.get('infrastructure_pid')})")

    # ---- 3. the decision in PostgreSQL, the model in S3
    with psycopg.connect(pg.url("mnist_ae")) as conn:
        rows = conn.execute(
            "SELECT id, event, promoted, host, model_sha256, time, reason, run_id "
            "FROM decisions WHERE dataset = %s ORDER BY id", (DATASET,)).fetchall()
        pointer = conn.execute("SELECT decision_id, version FROM champions WHERE dataset = %s",
                               (DATASET,)).fetchall()
    (ident, event_name, promoted, decided_on, sha, decided, reason, run_id), = rows
    assert promoted and event_name == "promoted" and pointer == [(ident, 1)]
    if cluster.namespaces:
        assert decided_on == c.hostname and ingest_host == b.hostname
    tree = newest_tree(s3, "team/artifacts/")
    stored = sorted(f for f in tree if f.startswith(f"models/{DATASET}/store/{sha[:24]}/"))
    assert any(f.endswith("/autoencoder.keras") for f in stored), sorted(tree)[:50]
    model_key = tree[next(f for f in stored if f.endswith("/autoencoder.keras"))][0]
    timeline.add(epoch(decided), f"decision on {decided_on}: {event_name} ({reason}); row id "
                 f"{ident} in PostgreSQL decisions, champions -> {ident}; model "
                 f"{sha[:16]}... in {ARTIFACTS}/objects/{model_key[:2]}/{model_key[:16]}...")
    timeline.add(epoch(retrain["end_time"]), f"flow run {retrain['name']} completed on "
                 "host-c")

    # ---- 4. the score deployment on B, with that champion, in shards on Dask (B and C)
    import distributed

    with distributed.Client(dask_address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
        asked = time.time()
        timeline.add(asked, f"score requested: deployment mnist-score/score, queue host-b, "
                     f"input {check_url} (400 images), shards on Dask at {dask_address}")
        prefect("deployment", "run", "mnist-score/score", "--param", f"input={check_url}",
                "--param", f"dataset={DATASET}", "--watch", "--watch-timeout", "400",
                timeout=430)
        # on each Dask worker: its name, its hostname and the score tasks it computed (a
        # lambda: pickled by value, so the workers need not import this module)
        ran = client.run(lambda dask_worker: (
            dask_worker.name, __import__("socket").gethostname(), sorted({
                str(entry[0]) for entry in dask_worker.state.log if len(entry) > 2
                and entry[2] == "memory" and str(entry[0]).startswith("score")})))
    (score_run,) = api(api_url, "/flow_runs/filter", {"flow_runs": {"deployment_id": {
        "any_": [deployment["mnist-score/score"]["id"]]}}})
    assert score_run["state"]["type"] == "COMPLETED" and score_run["work_queue_name"] == "host-b"
    assert score_run["id"] in (base / "logs" / "b-worker.log").read_text()
    assert score_run["id"] not in (base / "logs" / "c-worker.log").read_text()
    shards = {name: keys for name, _, keys in ran.values()}
    assert sorted(shards) == [b.hostname, c.hostname], ran
    assert all(keys for keys in shards.values()), ran  # both Dask workers scored shards
    if cluster.namespaces:  # and each ran on its host
        assert all(name == hostname for name, hostname, _ in ran.values()), ran
    summary = next(x for x in api(api_url, "/artifacts/filter", {
        "artifacts": {"key": {"any_": ["mnist-score-summary"]}}}))
    assert "**400 images scored" in summary["data"], summary["data"]
    # B scored with the champion C promoted: from the store, by its hash (no copy of C's)
    scored_with = list((b.disk / "scratch").rglob(f"models/{DATASET}/store/{sha[:24]}*"))
    assert scored_with, sorted(str(p) for p in (b.disk / "scratch").rglob("models/*"))
    tree = newest_tree(s3, "team/artifacts/")
    (scores,) = [f for f in tree if f.startswith("score/") and f.endswith("scores.parquet")
                 and not _is_shard(tree, f)]
    key = tree[scores][0]
    table = pd.read_parquet(io.BytesIO(s3.get_object(
        Bucket=BUCKET, Key=f"team/artifacts/objects/{key[:2]}/{key}")["Body"].read()))
    assert len(table) == 400
    timeline.add(epoch(score_run["start_time"]), f"score flow run {score_run['name']} "
                 "started on worker host-b (queue host-b)")
    timeline.add(epoch(score_run["end_time"]), f"score run on host-b: {len(table)} rows, "
                 f"model {sha[:16]}... (the champion of decision {ident}, read from "
                 f"models/{DATASET}/store/ in S3); score shards on Dask workers: " + ", ".join(
                     f"{host} ran {len(keys)}" for host, keys in sorted(shards.items()))
                 + f"; scores {ARTIFACTS}/objects/{key[:2]}/{key[:16]}...")

    # ---- 5. neither worker read a file from the other's disk; no secret in any log
    checks = disks_apart(cluster, s3)
    for log in (base / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        assert PASSWORD not in text and SECRET not in text, log.name
    for line in checks:
        timeline.add(time.time(), line)
    text = timeline.write(f"Multi-host timeline ({mode}; seconds after the ingest was "
                          "requested)")
    print(f"\n{text}\ntimeline written to {timeline.path}", flush=True)


def _is_shard(tree, path):
    return path.rsplit("/", 1)[0] + "/summary.npz" in tree


def newest_tree(s3, prefix: str) -> dict:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                         Prefix=prefix + "trees/")
    keys = sorted(o["Key"] for page in pages for o in page.get("Contents", []))
    return json.loads(s3.get_object(Bucket=BUCKET, Key=keys[-1])["Body"].read())["files"]


def scratch_name(url: str) -> str:
    """The folder of ``url``'s mirror in a scratch folder (mnist_autoencoder.store)."""
    return default_scratch(url).name


def scratch_files(scratch: Path) -> dict[str, str]:
    return {str(p.relative_to(scratch)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in scratch.rglob("*") if p.is_file()}


def _local_only(path: str) -> bool:
    """What a mirror never pushes: hidden files and folders, leases, locks."""
    parts = path.split("/")[1:]
    return any(p.startswith(".") for p in parts) or parts[:1] == ["leases"] or \
        path.endswith(".lock")


def deployments_on_queues() -> dict:
    """prefect.yaml's ingest, scheduled-retrain and score deployments, as they are, but each
    on the queue of the host that runs it, for the test's dataset, and the retrain short."""
    project = yaml.safe_load((PROJECT / "prefect.yaml").read_text())
    wanted = {"ingest": "host-b", "scheduled-retrain": "host-c", "score": "host-b"}
    kept = []
    for deployment in project["deployments"]:
        if deployment["name"] not in wanted:
            continue
        pool = dict(deployment["work_pool"])
        pool["work_queue_name"] = wanted[deployment["name"]]
        deployment["work_pool"] = pool
        if deployment["name"] == "ingest":
            deployment["parameters"] = deployment["parameters"] | {"dataset": DATASET}
        if deployment["name"] == "scheduled-retrain":
            (trigger,) = deployment["triggers"]
            data = trigger["parameters"]["data"] | {"dataset": DATASET, "val_size": 100}
            trigger["parameters"]["data"] = data
            deployment["parameters"] = {
                "data": data | {"snapshot": "latest"},
                "training": {"epochs": 2, "batch_size": 64, "learning_rate": 0.01},
                "pipeline": {"latent_dim": 8}}
        kept.append(deployment)
    assert len(kept) == 3
    return project | {"deployments": kept}


def disks_apart(cluster: Cluster, s3) -> list[str]:
    """Assert that neither worker host could read the other's disk; say what was checked."""
    b, c = cluster["b"], cluster["c"]
    lines = []
    for host, other in ((b, c), (c, b)):
        theirs = sorted(str(p.relative_to(other.disk)) for p in other.disk.rglob("*")
                        if p.is_file())
        assert theirs, f"{other.hostname} wrote nothing on its disk"
        log = (cluster.base / "logs" / f"{host.name}-worker.log").read_text()
        assert str(other.disk) not in log
        if cluster.namespaces:
            assert host.sees(other.disk) == [], f"{host.hostname} sees {other.hostname}'s disk"
            assert host.sees(other.disk / "scratch") == []
            assert host.run(["test", "-e", str(other.disk / theirs[0])]).returncode == 1
            lines.append(f"{host.hostname} sees nothing at {other.hostname}'s disk "
                         f"{other.disk} (an empty read-only tmpfs; {other.hostname} holds "
                         f"{len(theirs)} files there); its scratch {host.scratch} is its own")
        else:
            lines.append(f"{host.hostname}'s processes were given only {host.disk} "
                         f"(no path of {other.hostname}'s disk in its worker's log)")
    # What both worker hosts hold, they hold as the store publishes it: the same SHA-256 as
    # the newest tree names (B's champion model is C's training output, fetched from S3)
    trees = {scratch_name(DATA): newest_tree(s3, "team/data/"),
             scratch_name(ARTIFACTS): newest_tree(s3, "team/artifacts/"),
             "prefect-cache": newest_tree(s3, "team/artifacts/.prefect-cache/")}
    held = {host.name: scratch_files(host.disk / "scratch") for host in (b, c)}
    common = sorted(set(held["b"]) & set(held["c"]))
    published, local = [], []
    for path in common:
        folder, relative = path.split("/", 1)
        entry = trees.get(folder, {}).get(relative)
        if entry is None:
            local.append(path)
            continue
        assert held["b"][path] == held["c"][path] == entry[0], (path, entry)
        published.append(path)
    assert not [p for p in local if not _local_only(p)], local
    trained_on_c = [p for p in published if "/train/" in f"/{p}" and p.endswith(".keras")]
    assert trained_on_c, "host-b holds no model of host-c's training, as published"
    lines.append(f"host-b's scratch: {len(held['b'])} files, host-c's: {len(held['c'])}; the "
                 f"{len(common)} paths both hold: {len(published)} byte-identical to the "
                 f"store's newest trees (SHA-256; among them the {len(trained_on_c)} model "
                 f"files host-c trained), {len(local)} machine-local (stamps, locks, leases)")
    trained_on_b = [p for p in held["b"] if "/train/" in p and p.endswith(".keras")
                    and p not in published]
    scored_on_c = [p for p in held["c"] if p.endswith("scores.parquet")]
    assert not trained_on_b and not scored_on_c, (trained_on_b, scored_on_c)
    return lines
