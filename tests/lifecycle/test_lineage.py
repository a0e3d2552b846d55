"""Which parent a run on a grown snapshot starts from: the registry's history, not its present."""

import shutil

import pandas as pd
import pytest

from mnist_autoencoder.evaluation.analysis import analysis_content
from mnist_autoencoder.evaluation.baselines import baselines_content
from mnist_autoencoder.lifecycle import registry as rg
from mnist_autoencoder.lifecycle.lineage import find_parent
from mnist_autoencoder.paths import index_path, location, models_dir, stage_root
from mnist_autoencoder.storage import write_json_atomic, write_outputs
from tests.helpers import fake_model

BATCHES = [{"id": f"b{k}", "path": f"/data/b{k}.npz", "sha256": f"h{k}", "count": 100 * k}
           for k in (1, 2, 3)]


def snapshot(k):
    """Snapshot s<k>: the base s0 plus the first k batches; ancestors s0 .. s<k-1>."""
    return {"id": f"s{k}", "dataset": "mnist", "ancestors": [f"s{i}" for i in range(k)],
            "batches": BATCHES[:k]}


def record(root, tag, snapshot_id, event="promoted", latent_dim=32):
    """A registry row for a fake model, stored as promote_model stores promoted models."""
    model = fake_model(root / "runs" / tag, tag)
    sha = rg.model_sha256(rg.model_files(model))
    if event == "promoted":
        rg.install_champion(model, rg.store_dir(root / "models", "mnist", sha),
                            {"model_sha256": sha})
    rg.append_registry(root / "models", rg.RegistryRow(
        "mnist", tag, event, f"t-{tag}", "test", event == "promoted", str(model), sha,
        test_bce=0.09, snapshot=snapshot_id, splits_sha256=f"splits-{tag}",
        parameters=rg.TrainingRecord(latent_dim=latent_dim).to_json()))
    return sha


def test_the_base_snapshot_and_an_empty_registry_have_no_parent(tmp_path):
    assert find_parent(tmp_path, snapshot(0), 32)["run_id"] is None
    assert "base snapshot" in find_parent(tmp_path, snapshot(0), 32)["reason"]
    empty = find_parent(tmp_path, snapshot(2), 32)
    assert empty["run_id"] is None and empty["model"] is None and empty["new_batches"] == []


def test_the_parent_is_the_newest_promotion_on_an_ancestor(tmp_path):
    record(tmp_path, "a", "s0")
    record(tmp_path, "b", "s1")
    record(tmp_path, "c", "s1", event="kept out")  # not promoted: never a parent
    parent = find_parent(tmp_path, snapshot(3), 32)
    assert parent["run_id"] == "b" and parent["snapshot"] == "s1"
    assert [b["id"] for b in parent["new_batches"]] == ["b2", "b3"]
    assert parent["reference"] == {"splits_sha256": "splits-b", "snapshot": "s1",
                                   "parameters": rg.TrainingRecord(latent_dim=32).to_json()}
    assert set(parent["model"]["files"]) >= set(rg.model_files(tmp_path / "runs" / "b"))


def test_a_rerun_finds_the_same_parent_after_its_own_model_was_promoted(tmp_path):
    record(tmp_path, "a", "s0")
    before = find_parent(tmp_path, snapshot(1), 32)
    record(tmp_path, "new", "s1")  # the run's own model: trained on s1, not an ancestor of s1
    assert find_parent(tmp_path, snapshot(1), 32) == before
    assert find_parent(tmp_path, snapshot(2), 32)["run_id"] == "new"  # the next snapshot's


def test_another_code_size_or_a_lost_store_is_not_a_parent(tmp_path):
    record(tmp_path, "a", "s0")
    sha = record(tmp_path, "b", "s1", latent_dim=16)
    assert find_parent(tmp_path, snapshot(2), 32)["run_id"] == "a"
    assert find_parent(tmp_path, snapshot(2), 16)["run_id"] == "b"
    (rg.store_dir(tmp_path / "models", "mnist", sha) / "encoder.keras").write_text("damaged")
    lost = find_parent(tmp_path, snapshot(2), 16)
    assert lost["run_id"] is None and "stored copy is gone" in lost["reason"]


def test_the_parents_analyses_are_found_by_what_they_were_computed_from(tmp_path):
    sha = record(tmp_path, "a", "s0")
    probes = {"probes.npz": {"x": [1.0]}}
    def output(stage, key, outputs, content):  # as the stage writes it: its folder, its index
        written = write_outputs(stage_root(tmp_path, stage) / key, outputs)
        write_json_atomic(index_path(stage_root(tmp_path, stage), content), written)
        return written

    output("baselines", "k1", probes, baselines_content("splits-a", 32))
    output("baselines", "k2", probes, baselines_content("splits-a", 16))  # another code size
    files = rg.model_files(tmp_path / "runs" / "a")
    assert rg.model_sha256(files) == sha
    output("analyze", "k3", probes | {"views.npz": {"y": [2.0]}}, analysis_content(sha))
    output("analyze", "k4", probes | {"views.npz": {"y": [2.0]}}, analysis_content("other"))
    parent = find_parent(tmp_path, snapshot(1), 32)
    assert parent["baselines"]["dir"].endswith("k1")
    assert parent["analysis"]["dir"].endswith("k3")
    assert set(parent["analysis"]["files"]) == {"probes.npz", "views.npz"}
    # an indexed output that was deleted since is not a starting point
    shutil.rmtree(stage_root(tmp_path, "analyze") / "k3")
    assert find_parent(tmp_path, snapshot(1), 32)["analysis"] is None


@pytest.mark.parametrize("missing", ["snapshot", "nothing"])
def test_an_old_registry_without_snapshots_has_no_parent(tmp_path, missing):
    row = {"run_id": "a", "dataset": "mnist", "event": "promoted"}
    if missing == "nothing":
        row["snapshot"] = None
    registry = location("legacy_registry", models_dir(tmp_path))
    registry.parent.mkdir(parents=True)
    pd.DataFrame([row]).to_parquet(registry)
    assert find_parent(tmp_path, snapshot(1), 32)["run_id"] is None
