"""The state database on a real PostgreSQL (a throwaway cluster on loopback, tests/postgres.py):
the registry and the manifests, their races, and the refusals a user can fix.

"Hosts" here are separate folders that share only the database and, for ingests, the
batches folder (as a store would): each has its own flocks and its own champion/ copy, so
only the database's transactions keep them apart.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from mnist_autoencoder import database as db
from mnist_autoencoder.data import ingestion, snapshots
from mnist_autoencoder.data.catalog import get_dataset
from mnist_autoencoder.data.preprocessing import base_shard
from mnist_autoencoder.data.shards import Shard, image_digests
from mnist_autoencoder.errors import UserError
from mnist_autoencoder.lifecycle import recovery
from mnist_autoencoder.lifecycle import registry as rg
from mnist_autoencoder.params import PathsConfig, validate_paths
from tests import helpers
from tests.helpers import fake_model
from tests.postgres import PASSWORD, PgCluster, Unavailable
from tests.s3 import free_port

DATASET = "synthetic-db"
RUN = rg.RunInfo(run_id="r", training=rg.TrainingRecord(latent_dim=32), data_sha256="d",
                 splits_sha256="s", code_version="c")


@pytest.fixture(scope="module")
def cluster():
    pg = PgCluster()
    try:
        pg.start()
    except Unavailable as why:
        pg.stop()
        pytest.skip(f"no PostgreSQL cluster: {why}")
    yield pg
    db.dispose()
    pg.stop()


@pytest.fixture
def database(cluster, monkeypatch):
    """A fresh database of the cluster, configured as the project's state database."""
    url = cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv(db.DATABASE_ENV, url)
    return url


# ---- the registry: promotions racing from several hosts ----------------------------------------

SCORES: dict[str, float] = {}


def race_promotions(root: Path, scores: list[float], tag: str) -> None:
    """One promotion per score at once, each from its own host folder (own flock, own
    champion/ copy); the champion's score is read from its model's files."""
    by_tag = SCORES  # every round's, since a round's champion is the next round's
    start = threading.Barrier(len(scores))
    errors = []

    def score(champion_dir):
        time.sleep(0.02)  # a re-evaluation takes time: the window in which others commit
        return by_tag[(Path(champion_dir) / "encoder.keras").read_text().split(":")[0]]

    def promote(i, value):
        name = f"{tag}-{i}"
        by_tag[name] = value
        model = fake_model(root / "runs" / name, name)
        start.wait()
        try:
            rg.promote_model({"model_dir": str(model), "test_bce": value},
                             root / f"host-{i}" / "models", DATASET, 0.0, score,
                             replace(RUN, run_id=name))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=promote, args=(i, v)) for i, v in enumerate(scores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def replay(rows: list[rg.RegistryRow]) -> str | None:
    """The champion after the decisions in commit order, each checked against the champion
    it says it was compared with."""
    champion = None
    for row in rows:
        assert row.champion_model_sha256 == champion, (row.run_id, row.reason)
        if row.promoted:
            champion = row.model_sha256
    return champion


def counting(monkeypatch, module, name) -> list[int]:
    """Count the ``db.Conflict``s ``module.name`` raises: the races really happened."""
    counts, real = [0], getattr(module, name)

    def counted(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except db.Conflict:
            counts[0] += 1
            raise
    monkeypatch.setattr(module, name, counted)
    return counts


def test_four_promotions_racing_leave_every_row_and_a_serializable_history(database, tmp_path,
                                                                          monkeypatch):
    models = tmp_path / "host-0" / "models"
    conflicts = counting(monkeypatch, rg, "_commit")
    race_promotions(tmp_path, [0.10, 0.09, 0.08, 0.095], "a")
    assert conflicts[0] >= 1  # at least one decision was made again
    rows = rg.registry_rows(rg.read_registry(models))
    assert sorted(r.run_id for r in rows) == ["a-0", "a-1", "a-2", "a-3"]
    champion = rg.registered_champion(models, DATASET)
    assert replay(rows) == champion.model_sha256 and champion.test_bce == 0.08
    assert {r.host for r in rows} and all(r.host for r in rows)
    # each committed row has its record, written by the host that committed it
    written = [json.loads(p.read_text()) for p in tmp_path.glob(f"host-*/models/{DATASET}/"
                                                                "decisions/*.json")]
    assert sorted((r["id"], r["run_id"]) for r in written) == sorted((r.id, r.run_id)
                                                                     for r in rows)


def test_the_races_repeated_twenty_times_lose_nothing(database, tmp_path):
    rng = np.random.default_rng(0)
    for round_ in range(20):
        race_promotions(tmp_path / f"round-{round_}", list(rng.uniform(0.08, 0.1, 4)),
                        f"r{round_}")
    rows = rg.registry_rows(rg.read_registry(tmp_path / "round-0" / "host-0" / "models"))
    assert len(rows) == 80
    champion = rg.registered_champion(tmp_path / "round-0" / "host-0" / "models", DATASET)
    assert replay(rows) == champion.model_sha256
    assert champion.test_bce == min(r.test_bce for r in rows)


# ---- the manifest: ingests racing from two hosts --------------------------------------------

def test_eight_ingests_from_two_hosts_land_each_image_once_in_one_chain(database, tmp_path,
                                                                         monkeypatch):
    conflicts = counting(monkeypatch, ingestion, "append_row")
    helpers.write_dataset(tmp_path / "raw", n_train=100, n_test=20, seed=0)
    helpers.register(tmp_path / "raw", DATASET)
    known = base_shard(tmp_path / "a" / "data", DATASET, tmp_path / "raw",
                       get_dataset(DATASET).file_names(), {"raw": "v1"})[0]
    # the store's batches and their records; each host its own folders else
    shared, records = tmp_path / "shared-batches", tmp_path / "shared-records"
    shared.mkdir()
    records.mkdir()
    hosts = []
    for name in ("a", "b"):
        folder = snapshots.batch_path(tmp_path / name / "data", DATASET, "x").parent
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.symlink_to(shared)
        (folder.parent / "records").symlink_to(records)
        hosts.append(tmp_path / name / "data")
    pool, labels = helpers.make_digits(400, seed=7)
    pool = pool.reshape(-1, 784)
    rng = np.random.default_rng(1)
    # eight batches of 80 drawn from 400 images: many images offered by several batches
    picks = [rng.choice(len(pool), 80, replace=False) for _ in range(8)]
    start = threading.Barrier(8)
    results, errors = [], []

    def run(i):
        start.wait()
        try:
            results.append(ingestion.ingest(hosts[i % 2], DATASET,
                                            [(pool[picks[i]], labels[picks[i]])], [known],
                                            f"batch-{i}", {}))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    manifest = snapshots.read_manifest(hosts[0], DATASET)
    ids = list(manifest["batch_id"])
    assert list(manifest["seq"]) == list(range(1, len(ids) + 1))
    assert list(manifest["snapshot_id"]) == [snapshots.snapshot_id(DATASET, ids[:k])
                                             for k in range(1, len(ids) + 1)]
    assert sorted(ids) == sorted(r.batch for r in results if r.created)
    landed = np.concatenate([Shard(shared / b).hashes() for b in ids])
    offered = image_digests(pool[np.unique(np.concatenate(picks))])
    assert len(landed) == len(np.unique(landed, axis=0)) == len(offered)  # each image once
    assert sum(r.new for r in results) == len(offered)
    assert {*manifest["host"]} and all(manifest["host"])
    assert conflicts[0] >= 1  # an ingest lost a place and compared with the batch that took it
    # the records beside the batches tell the same history: the losers' were removed
    (found,) = recovery.survey(hosts[0], tmp_path / "a" / "artifacts")
    assert found.matches and not found.notes and len(list(records.iterdir())) == len(ids)


# ---- refusals: one line, the fix named, no password ----------------------------------------

def refusal(url: str, writing: bool = False) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(db.DATABASE_ENV, url)
        with pytest.raises(db.DatabaseError) as refused:
            validate_paths(PathsConfig(data_dir="data", artifacts_dir="artifacts"), writing)
    message = str(refused.value)
    assert isinstance(refused.value, UserError) and "\n" not in message
    assert PASSWORD not in message and "wrong-password" not in message
    return message


def test_the_database_refusals_name_the_problem_and_the_fix(cluster, tmp_path):
    closed = f"postgresql://owner:{PASSWORD}@127.0.0.1:{free_port()}/postgres"
    assert "cannot reach the database" in refusal(closed)
    assert "refused the credentials" in refusal(cluster.url(password="wrong-password"))
    newer = cluster.create_database("newer")
    db.engine(newer)
    with db.writing(newer) as conn:
        conn.execute(db.schema_migrations.insert().values(version=db.SCHEMA_VERSION + 1,
                                                          description="x", applied_at="t"))
    db.dispose()
    message = refusal(newer)
    assert f"schema version {db.SCHEMA_VERSION + 1}, newer than this code's" in message
    frozen = cluster.create_database("frozen")
    db.engine(frozen)
    db.dispose()
    cluster.sql('ALTER DATABASE "frozen" SET default_transaction_read_only = on')
    assert "is read-only" in refusal(frozen, writing=True)
    db.dispose()


def test_a_plain_postgresql_url_is_taken_with_psycopg_and_never_shown_with_its_password(
        database, tmp_path):
    assert db.driver_url(database).drivername == "postgresql+psycopg"
    assert PASSWORD not in db.masked(database) and "***" in db.masked(database)
    with db.reading(database) as conn:
        version = conn.execute(sa.select(sa.func.max(db.schema_migrations.c.version))).scalar()
    assert version == db.SCHEMA_VERSION


def test_the_prefect_server_runs_on_postgresql_and_records_a_flow_run(cluster, tmp_path):
    """`make server PREFECT_DATABASE=postgresql://...`: what a team runs (docs/deployments.md)."""
    import subprocess
    import sys

    from ops.local_prefect import api_url, start_server, stop_process

    url = cluster.create_database("prefect")
    port = free_port()
    proc = start_server(port, tmp_path / "home", tmp_path / "server.log", database=url)
    try:
        flow = ("from prefect import flow\n"
                "@flow(name='on-postgres')\n"
                "def f():\n    return 7\n"
                "print(f())\n")
        env = {**__import__("os").environ, "PREFECT_API_URL": api_url(port)}
        ran = subprocess.run([sys.executable, "-c", flow], env=env, capture_output=True,
                             text=True, timeout=180)
        assert ran.returncode == 0 and ran.stdout.strip().endswith("7"), ran.stderr[-2000:]
        import psycopg

        with psycopg.connect(url) as conn:
            names = conn.execute("SELECT f.name FROM flow_run r JOIN flow f "
                                 "ON r.flow_id = f.id").fetchall()
        assert ("on-postgres",) in names
        assert PASSWORD not in (tmp_path / "server.log").read_text()
    finally:
        stop_process(proc.pid)
