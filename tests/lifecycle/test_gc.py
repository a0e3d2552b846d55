"""make gc: what nothing in use refers to is collected; what a registry row, a champion, the
latest snapshot or a running flow's lease needs is kept. A real layout, made by the core."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mnist_autoencoder.data import ingestion, snapshots
from mnist_autoencoder.data.catalog import get_dataset
from mnist_autoencoder.data.preprocessing import base_shard, build_view
from mnist_autoencoder.data.splits import SplitView
from mnist_autoencoder.evaluation.analysis import analysis_content
from mnist_autoencoder.evaluation.baselines import baselines_content
from mnist_autoencoder.lifecycle import gc
from mnist_autoencoder.lifecycle import registry as rg
from mnist_autoencoder.paths import (
    MODEL_FILES,
    index_path,
    location,
    models_dir,
    processed_dir,
    raw_dir,
    stage_root,
    stamps_dir,
)
from mnist_autoencoder.storage import (
    describe_outputs,
    read_value,
    write_json_atomic,
    write_outputs,
)
from ops import gc as cli
from tests.helpers import NAME, PROJECT, make_digits

DATASET = NAME
RAW = {"raw": "current"}  # the base shard's key: the raw files' content
DAY = 86_400


def shift(root: Path, seconds: float) -> None:
    """Move every mtime under ``root`` back by ``seconds`` (the layout was made long ago)."""
    for folder, dirs, files in os.walk(root):
        for path in [*([root] if Path(folder) == root else []),
                     *(Path(folder) / name for name in dirs + files)]:
            info = os.lstat(path)
            os.utime(path, (info.st_atime - seconds, info.st_mtime - seconds),
                     follow_symlinks=False)


def view(data: Path, seed: int, raw: dict[str, str] = RAW, snapshot: str = "latest") -> dict:
    """Preprocess a snapshot as the stage does: written, then indexed by content."""
    snapshot = snapshots.resolve(data, DATASET, snapshot).describe()
    files = build_view(data, DATASET, raw_dir(data, DATASET), get_dataset(DATASET).file_names(),
                       50, seed, raw, 0, snapshot)
    folder = processed_dir(data, DATASET)
    written = write_outputs(folder / f"preprocess-{secrets.token_hex(12)}", files)
    write_json_atomic(index_path(folder, written["hash"]), written)
    return written | {"snapshot": snapshot["id"], "parts": files["splits.json"]["parts"]}


def output(artifacts: Path, stage: str, files: dict, content: str | None = None) -> dict:
    """A stage output (and its by-content index), as ``tasks.io.StageIO`` writes it."""
    written = write_outputs(stage_root(artifacts, stage) / f"{stage}-{secrets.token_hex(12)}",
                            files)
    if content:
        write_json_atomic(index_path(stage_root(artifacts, stage), content), written)
    return written


def ingest(data: Path, seed: int) -> str:
    images, labels = make_digits(40, seed)
    known = base_shard(data, DATASET, raw_dir(data, DATASET), get_dataset(DATASET).file_names(),
                       RAW)[0]
    return ingestion.ingest(data, DATASET, [(images.reshape(-1, 784), labels)], [known],
                            f"batch-{seed}", {}).snapshot


def model(tag: str) -> dict[str, bytes]:
    return {name: f"{tag}:{name}".encode() for name in MODEL_FILES}


@pytest.fixture
def layout(tmp_path, synthetic_source):
    """Three snapshots (base, S1, S2) with views, a registry, champions and stage outputs."""
    data, artifacts = tmp_path / "data", tmp_path / "artifacts"
    shutil.copytree(synthetic_source, raw_dir(data, DATASET))
    models = models_dir(artifacts)
    found = {"data": data, "artifacts": artifacts}
    found["old_base_view"] = view(data, 1, raw={"raw": "an older download"})  # its own shard
    found["registry_view"] = view(data, 0)
    found["champion_view"] = view(data, 4)
    found["s1"] = ingest(data, 101)
    found["s1_view"] = view(data, 3)
    found["s2"] = ingest(data, 102)
    found["latest_view"] = view(data, 0)
    # a run on the base snapshot was promoted (registry row and champion); another
    # dataset's champion names a view too
    train_a = output(artifacts, "train", model("a"))
    rg.promote_model({"model_dir": train_a["dir"], "test_bce": 0.1}, models, DATASET, 0.005,
                     lambda _: 0.2, rg.RunInfo(
                         run_id="a", training=rg.TrainingRecord(latent_dim=4),
                         data_sha256="d", splits_sha256=found["registry_view"]["hash"],
                         code_version="c", snapshot=snapshots.base_id(DATASET)))
    train_b = output(artifacts, "train", model("b"))
    rg.install_champion(Path(train_b["dir"]), rg.champion_dir(models, "other"),
                        {"splits_sha256": found["champion_view"]["hash"],
                         "model_path": train_b["dir"]})
    found["train"] = [train_a["dir"], train_b["dir"]]
    found["warm"] = [  # what a retrain starts from (lineage): by the registry row's hashes
        output(artifacts, "baselines", {"probes.npz": {"w": np.zeros(3)}},
               baselines_content(found["registry_view"]["hash"], 4))["dir"],
        output(artifacts, "analyze", {"probes.npz": {"w": np.ones(3)}},
               analysis_content(rg.model_sha256(rg.model_files(Path(train_a["dir"])))))["dir"]]
    found["old_output"] = output(artifacts, "evaluate", {"metrics.json": {"bce": 1}}, "old")
    found["quarantine"] = ingestion.quarantine(data, [], "bad-batch", "no labels")
    # crash leftovers: a shard being written, a staged batch, an atomic write
    found["temps"] = [
        Path(tempfile.mkdtemp(prefix=".shard.", suffix=".tmp",
                              dir=location("base_shard", data, dataset=DATASET, key="x").parent)),
        Path(tempfile.mkdtemp(prefix=".incoming-shard.", suffix=".tmp",
                              dir=location("batch", data, dataset=DATASET, batch_id="x").parent)),
        Path(tempfile.mkdtemp(prefix=".preprocess-x.", suffix=".tmp",
                              dir=processed_dir(data, DATASET)))]
    for temp in found["temps"]:
        (temp / "part").write_bytes(b"x" * 100)
    found["orphan_stamp"] = stamps_dir(data) / f"{'0' * 64}.json"
    write_json_atomic(found["orphan_stamp"], {})
    shift(data, DAY)
    shift(artifacts, DAY)
    shift(Path(found["old_output"]["dir"]), DAY)  # before the snapshots in use began
    # written after the layout: the latest snapshot's own outputs, a temp still being written
    found["new_output"] = output(artifacts, "evaluate", {"metrics.json": {"bce": 2}})["dir"]
    found["fresh_temp"] = Path(tempfile.mkdtemp(prefix=".shard.", suffix=".tmp",
                                                dir=processed_dir(data, DATASET)))
    return found


def assignments(written: dict) -> set[Path]:
    return {Path(part["assignment"]) for part in written["parts"]}


def collectable(layout) -> set[Path]:
    """What nothing in use refers to: the old views, their own assignments and base shard,
    the old stage output and its index, the temps and the stamp of no shard."""
    old_base, s1 = layout["old_base_view"], layout["s1_view"]
    kept_assignments = set().union(*(assignments(layout[k]) for k in (
        "registry_view", "champion_view", "latest_view")))
    return ({Path(old_base["dir"]), Path(s1["dir"]), Path(old_base["parts"][0]["shard"]),
             Path(layout["old_output"]["dir"]), layout["orphan_stamp"], *layout["temps"],
             index_path(processed_dir(layout["data"], DATASET), old_base["hash"]),
             index_path(processed_dir(layout["data"], DATASET), s1["hash"]),
             index_path(stage_root(layout["artifacts"], "evaluate"), "old")}
            | (assignments(old_base) | assignments(s1)) - kept_assignments)


def kept(layout) -> list[Path]:
    data, artifacts = layout["data"], layout["artifacts"]
    return [raw_dir(data, DATASET), location("manifest", data, dataset=DATASET),
            location("batch", data, dataset=DATASET, batch_id="x").parent, layout["quarantine"],
            models_dir(artifacts), layout["fresh_temp"], Path(layout["new_output"]),
            *map(Path, layout["train"]), *map(Path, layout["warm"]),
            *(Path(layout[k]["dir"]) for k in ("registry_view", "champion_view", "latest_view")),
            *(p for k in ("registry_view", "champion_view", "latest_view")
              for p in assignments(layout[k])),
            Path(layout["latest_view"]["parts"][0]["shard"])]


def test_the_dry_run_lists_what_it_would_remove_with_sizes_and_removes_nothing(layout):
    plan = gc.collect(layout["data"], layout["artifacts"], dry_run=True)
    assert {item.path for item in plan.items} == collectable(layout)
    assert all(item.size > 0 and item.reason for item in plan.items)
    assert plan.total == sum(item.size for item in plan.items) > 0
    assert all(path.exists() for path in collectable(layout) | set(kept(layout)))
    assert not plan.removed and not plan.failed


def test_gc_removes_what_nothing_refers_to_and_keeps_what_is_in_use(layout):
    plan = gc.collect(layout["data"], layout["artifacts"])

    assert plan.removed and not plan.failed
    assert {item.path for item in plan.items} == collectable(layout)
    assert not any(path.exists() for path in collectable(layout))
    assert all(path.exists() for path in kept(layout))
    assert not list(layout["data"].rglob(".gc-*")) and not list(layout["artifacts"].rglob(".gc-*"))
    # the latest snapshot, the registry's and the champion's views still read
    for key in ("latest_view", "registry_view", "champion_view"):
        assert len(SplitView(layout[key]["dir"]).load("train").y) > 0
    assert snapshots.resolve(layout["data"], DATASET).id == layout["s2"]
    # nothing left to collect
    assert gc.collect(layout["data"], layout["artifacts"], dry_run=True).items == []


def test_gc_while_a_run_uses_a_snapshot_removes_nothing_that_run_needs(layout):
    data, s1 = layout["data"], layout["s1_view"]
    what = {"artifacts_dir": layout["artifacts"], "dataset": DATASET, "snapshot": layout["s1"],
            "flow": "test-run"}
    with gc.lease(data, what):
        during = view(data, 7, snapshot=layout["s1"])  # the run writes while gc runs
        plan = gc.collect(data, layout["artifacts"], min_age=0)
        removed = {item.path for item in plan.items}
        for needed in [Path(s1["dir"]), *assignments(s1), Path(during["dir"]),
                       *assignments(during), Path(layout["old_output"]["dir"])]:
            assert needed.exists() and needed not in removed
        assert len(SplitView(s1["dir"]).load("train").y) > 0
        assert any("test-run" in note for note in plan.notes)
    # the run is over: its snapshot is old, and no longer protected
    later = gc.collect(data, layout["artifacts"], min_age=0, now=time.time() + 60)
    assert Path(s1["dir"]) in {item.path for item in later.items}
    assert not Path(s1["dir"]).exists() and not Path(layout["old_output"]["dir"]).exists()
    assert not list(location("lease", data, run="x").parent.glob("*.json"))
    with gc.lease(data, {"dataset": DATASET, "snapshot": "latest"}) as record:
        assert record["snapshot"] == layout["s2"]  # resolved when the run starts


def test_a_killed_run_s_lease_dies_with_it(layout):
    data, s1 = layout["data"], Path(layout["s1_view"]["dir"])
    code = ("import sys\nfrom mnist_autoencoder.lifecycle.gc import lease\n"
            f"with lease({str(data)!r}, {{'dataset': {DATASET!r}, 'snapshot': "
            f"{layout['s1']!r}, 'flow': 'held'}}) as r:\n"
            "    print(r['snapshot'], flush=True)\n    sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == layout["s1"]
        plan = gc.collect(data, layout["artifacts"])
        assert s1.exists() and s1 not in {item.path for item in plan.items}
        assert not any(item.path.parent == location("lease", data, run="x").parent
                       for item in plan.items)
    finally:
        holder.kill()
        holder.wait()
    lease_file = next(location("lease", data, run="x").parent.glob("*.json"))  # left by a kill
    plan = gc.collect(data, layout["artifacts"])
    assert {s1, lease_file} <= {item.path for item in plan.items}
    assert not s1.exists() and not lease_file.exists()


def test_of_identical_copies_of_a_view_the_registry_names_the_indexed_one_is_kept(layout):
    named = Path(layout["registry_view"]["dir"])
    copy = named.with_name(f"preprocess-{secrets.token_hex(12)}")  # a rerun under a new key
    write_outputs(copy, {p.name: read_value(p) for p in named.iterdir()})
    assert describe_outputs(copy, sorted(layout["registry_view"]["files"]))["hash"] == \
        layout["registry_view"]["hash"]
    shift(copy, DAY)

    plan = gc.collect(layout["data"], layout["artifacts"])
    reasons = {item.path: item.reason for item in plan.items}
    assert named.name in reasons[copy] and not copy.exists()
    assert named.exists() and named not in reasons


def test_a_removal_cut_short_leaves_nothing_a_run_trusts_and_the_next_gc_finishes(layout,
                                                                                   monkeypatch):
    real = shutil.rmtree
    monkeypatch.setattr(gc.shutil, "rmtree", lambda path: (_ for _ in ()).throw(
        OSError(5, "Input/output error")))
    target = Path(layout["s1_view"]["dir"])
    plan = gc.collect(layout["data"], layout["artifacts"])

    assert target in {path for path, _ in plan.failed}
    assert not target.exists()  # renamed away whole: no half-deleted view under its name
    leftovers = list(target.parent.glob(".gc-*"))
    assert leftovers
    monkeypatch.setattr(gc.shutil, "rmtree", real)
    again = gc.collect(layout["data"], layout["artifacts"])
    assert {leftovers[0]} <= {item.path for item in again.items}
    assert not list(target.parent.glob(".gc-*"))


def test_a_lease_waits_while_gc_holds_its_lock(tmp_path):
    data = tmp_path / "data"
    taken = threading.Event()

    def run():
        with gc.lease(data, {"dataset": None}):
            taken.set()

    with gc._flocked(location("gc_lock", data), gc.fcntl.LOCK_EX):
        thread = threading.Thread(target=run)
        thread.start()
        assert not taken.wait(0.5)
    assert taken.wait(10)
    thread.join()


def test_the_command_prints_a_table_and_the_total(layout, capsys):
    args = ["--data-dir", str(layout["data"]), "--artifacts-dir", str(layout["artifacts"])]

    assert cli.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "SIZE" in out and "REASON" in out and "dry run: nothing removed" in out
    assert str(Path(layout["s1_view"]["dir"]).name) in out
    assert f"in {len(collectable(layout))} path(s)" in out
    assert Path(layout["s1_view"]["dir"]).exists()

    assert cli.main(args) == 0
    assert "total: removed" in capsys.readouterr().out
    assert not Path(layout["s1_view"]["dir"]).exists()


def test_a_missing_folder_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "artifacts").mkdir()
    status = cli.main(["--data-dir", str(tmp_path / "nope"),
                       "--artifacts-dir", str(tmp_path / "artifacts")])

    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert str(tmp_path / "nope") in err and "--data-dir" in err
