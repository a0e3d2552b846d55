"""A lost state database rebuilt from the storage's records (lifecycle/recovery.py, flows/state.py):
the manifest and the registry come back as they were, and what cannot be told apart is said."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from flows.state import mnist_state
from mnist_autoencoder import database as db
from mnist_autoencoder.data import ingestion, snapshots
from mnist_autoencoder.data.catalog import get_dataset
from mnist_autoencoder.data.preprocessing import base_shard
from mnist_autoencoder.lifecycle import recovery
from mnist_autoencoder.lifecycle import registry as rg
from mnist_autoencoder.paths import location, models_dir
from tests import helpers
from tests.helpers import PROJECT, cli_command, cli_env, fake_model

DATASET = "synthetic-recovery"
RUN = rg.RunInfo(run_id="r", training=rg.TrainingRecord(latent_dim=32), data_sha256="d",
                 splits_sha256="s", code_version="c")


def history(root: Path) -> tuple[Path, Path]:
    """Three ingested batches and four decisions (promoted, kept out, promoted, held)."""
    data, artifacts = root / "data", root / "artifacts"
    helpers.write_dataset(root / "raw", n_train=100, n_test=20, seed=0)
    helpers.register(root / "raw", DATASET)
    base = base_shard(data, DATASET, root / "raw", get_dataset(DATASET).file_names(),
                      {"raw": "v1"})[0]
    images, labels = helpers.make_digits(300, seed=3)
    for i in range(3):
        part = slice(100 * i, 100 * i + 100)
        assert ingestion.ingest(data, DATASET, [(images[part].reshape(-1, 784), labels[part])],
                                [base], f"batch-{i}", {"f": str(i)}).created
    scores = {"a": 0.10, "b": 0.20, "c": 0.05, "d": 0.01}

    def score(champion):
        return scores[(Path(champion) / "encoder.keras").read_text().split(":")[0]]

    for name, value in scores.items():
        model = fake_model(root / "runs" / name, name)
        rg.promote_model({"model_dir": str(model), "test_bce": value}, models_dir(artifacts),
                         DATASET, 0.0, score, replace(RUN, run_id=name),
                         hold="drift" if name == "d" else None)
    return data, artifacts


def state(data: Path, artifacts: Path) -> tuple[list[dict], list[dict], str | None]:
    manifest = snapshots.read_manifest(data, DATASET).to_dict("records")
    table = rg.read_registry(models_dir(artifacts))
    rows = [{k: None if v != v else v for k, v in r.items() if k != "id"}  # NaN: None
            for r in table.to_dict("records")]
    champion = rg.registered_champion(models_dir(artifacts), DATASET)
    return manifest, rows, champion.model_sha256 if champion else None


def lose_database(data: Path, artifacts: Path, aside: Path) -> None:
    aside.mkdir()
    for path in (location("manifest", data), location("registry", models_dir(artifacts))):
        shutil.move(path, aside / path.name)
    db.dispose()  # as a new process would: no engine, no schema known to exist


@pytest.fixture
def built(tmp_path):
    data, artifacts = history(tmp_path)
    return data, artifacts, state(data, artifacts)


def test_a_lost_database_is_rebuilt_as_it_was(built, tmp_path):
    data, artifacts, before = built
    manifest, rows, champion = before
    assert [r["event"] for r in rows] == ["promoted", "kept out", "promoted", "held"]
    (found,) = recovery.survey(data, artifacts)
    assert found.matches and not found.notes
    lose_database(data, artifacts, tmp_path / "aside")
    (found,) = recovery.survey(data, artifacts)
    assert not found.matches and found.in_database == {"batches": [], "decisions": 0,
                                                       "champion": None}
    (rebuilt,) = recovery.rebuild(data, artifacts)
    assert rebuilt.matches and not rebuilt.notes
    assert state(data, artifacts) == before  # every column of every row, and the pointer
    latest = snapshots.resolve(data, DATASET)  # its batches checked against the rebuilt rows
    assert latest.id == manifest[-1]["snapshot_id"] and len(latest.batches) == 3
    # the next decision works on the rebuilt registry: compared with the rebuilt champion
    model = fake_model(tmp_path / "runs" / "e", "e")
    decision = rg.promote_model({"model_dir": str(model), "test_bce": 0.2}, models_dir(artifacts),
                                DATASET, 0.0, lambda _: 0.05, replace(RUN, run_id="e"))
    assert not decision["promoted"] and decision["champion_test_bce"] == 0.05
    with pytest.raises(recovery.RecoveryError,
                       match=rf"already holds {DATASET} \(3 batches, 5 registry rows\)"):
        recovery.rebuild(data, artifacts)


def test_what_records_cannot_tell_apart_is_reported_and_left_out(built, tmp_path):
    data, artifacts, (manifest, _, champion) = built
    records = location("batch_record", data, dataset=DATASET, batch_id="x").parent
    # an ingest killed between its record and its commit, after the first batch: its record
    # extends the same snapshot as the second batch, which later batches extend
    second = json.loads((records / f"{manifest[1]['batch_id']}.json").read_text())
    orphan = second | {"batch_id": "0" * 16, "snapshot_id": snapshots.snapshot_id(
        DATASET, [manifest[0]["batch_id"], "0" * 16])}
    (records / f"{orphan['batch_id']}.json").write_text(json.dumps(orphan))
    (records / "damaged.json").write_text("{not json")
    # the decisions' records lost (a history from before they were kept): the stored models
    shutil.rmtree(location("decision_record", models_dir(artifacts), dataset=DATASET,
                           stamp="x").parent)
    lose_database(data, artifacts, tmp_path / "aside")
    (rebuilt,) = recovery.rebuild(data, artifacts)
    assert [b["batch_id"] for b in rebuilt.batches] == [b["batch_id"] for b in manifest]
    notes = "\n".join(rebuilt.notes)
    assert f"batch {'0' * 16} also extends {manifest[0]['snapshot_id']}" in notes
    assert "damaged.json: unreadable" in notes
    # only the promotions come back, from the store: the champion is the last one promoted
    assert [r.event for r in rebuilt.decisions] == ["promoted", "promoted"]
    assert rg.registered_champion(models_dir(artifacts), DATASET).model_sha256 == champion
    assert notes.count("no record; a promoted row is rebuilt") == 2


def test_the_state_flow_compares_and_refuses_to_rebuild_over_a_database(built, tmp_path,
                                                                         prefect_api):
    data, artifacts, _ = built
    paths = {"data_dir": str(data), "artifacts_dir": str(artifacts)}
    result = mnist_state(paths=paths)
    assert result["matches"] and result["datasets"][DATASET]["batches"] == 3
    assert "State: the database holds what the storage records" in result["summary"]
    proc = subprocess.run(cli_command({"rebuild": "true", **paths}, "flows.state"), cwd=PROJECT,
                          env=cli_env(prefect_api), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]  # the lines before: the run's log
    assert line.startswith("python -m flows.state: the database already holds "
                           f"{DATASET} (3 batches, 4 registry rows)"), line
    assert "Traceback" not in proc.stderr + proc.stdout
