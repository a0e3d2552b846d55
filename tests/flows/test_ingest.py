"""The ingest flow and a pipeline that trains on snapshots, on the real Prefect engine."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_autoencoder.data.snapshots import read_manifest
from mnist_autoencoder.lifecycle.registry import read_registry
from mnist_autoencoder.paths import models_dir
from tests import helpers
from tests.helpers import PROJECT, expect, growing_run, pipeline, pipeline_stages, states, write_idx

GROWING = "synthetic-growing"


@pytest.fixture(scope="module")
def grown(prefect_api, tmp_path_factory):
    root = tmp_path_factory.mktemp("grown")
    return root, growing_run(GROWING, root, n_train=600)


def ingest_cli(root, params, batch, api_url):
    proc = subprocess.run(
        [sys.executable, "-m", "flows.ingest", "--batch", str(batch), "--dataset", GROWING,
         "--source", params["source"], "--data-dir", params["data_dir"]], cwd=PROJECT,
        env=os.environ | {"PREFECT_API_URL": api_url}, capture_output=True, text=True,
        timeout=300)
    return proc


def test_a_new_snapshot_reruns_preprocess_onward_and_an_old_id_reproduces_it(grown, prefect_api):
    root, params = grown
    first = pipeline(**params)
    assert set(states(first).values()) == {"ran"}
    images, labels = helpers.make_digits(200, seed=31)
    proc = ingest_cli(root, params, write_idx(root / "batch1", images, labels, stem="new"),
                      prefect_api)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("Snapshot: synthetic-growing-") and last.endswith(
        "(200 new, 0 duplicates)")
    snapshot = last.split()[1]

    grown_run = pipeline(**params)
    # preprocess and everything after it, but the corruptions of the test split, which it keeps
    assert states(grown_run) == expect(*(s for s in pipeline_stages()
                                         if s not in ("download", "corrupt")))
    splits = json.loads((Path(grown_run["outputs"]["preprocess"]) / "metadata.json").read_text())
    assert splits["snapshot"] == snapshot and splits["counts"]["recent"] > 0
    assert sum(splits["counts"].values()) == 700 + 200
    registry = read_registry(models_dir(params["artifacts_dir"]))
    assert registry["snapshot"].iloc[-1] == snapshot

    assert states(pipeline(**params)) == expect()  # an unchanged snapshot: all cached
    base = pipeline(**params | {"snapshot": first_snapshot(first)})
    assert states(base) == expect()  # the base snapshot's splits are still cached
    assert base["outputs"]["preprocess"] == first["outputs"]["preprocess"]


def first_snapshot(result):
    return json.loads((Path(result["outputs"]["preprocess"]) / "metadata.json").read_text())[
        "snapshot"]


def test_the_same_batch_twice_changes_nothing(grown, prefect_api):
    root, params = grown
    images, labels = helpers.make_digits(50, seed=32)
    batch = write_idx(root / "batch2", images, labels, stem="new")
    first = ingest_cli(root, params, batch, prefect_api)
    again = ingest_cli(root, params, batch, prefect_api)
    assert first.returncode == 0 and again.returncode == 0
    assert "(0 new, 50 duplicates)" in again.stdout
    assert "nothing new, the snapshot is unchanged" in again.stdout
    snapshot_of = lambda proc: proc.stdout.strip().splitlines()[-1].split()[1]  # noqa: E731
    assert snapshot_of(first) == snapshot_of(again)


def bad_batches(root):
    images, labels = helpers.make_digits(10, seed=40)
    corrupt = write_idx(root / "corrupt", images, labels, stem="new")
    (corrupt / "new-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not gzip at all")
    yield "corrupt file", corrupt, "new-images-idx3-ubyte.gz"
    yield "wrong size", write_idx(root / "size", helpers.make_digits(5, 0, side=32)[0],
                                  labels[:5], stem="new"), "32x32"
    yield "labels out of range", write_idx(root / "range", images, labels + 10, stem="new"), \
        "labels must be digits 0-9"
    yield "mismatched counts", write_idx(root / "counts", images, labels[:7], stem="new"), \
        "holds 10 images but"
    (root / "empty").mkdir()
    yield "empty batch", root / "empty", "an empty directory"
    pngs = root / "pngs" / "3"
    pngs.mkdir(parents=True)
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(pngs / "rgb.png")
    yield "rgb png", root / "pngs", "a RGB image"


def test_an_invalid_batch_is_refused_quarantined_and_leaves_the_snapshot(grown, prefect_api,
                                                                         tmp_path):
    root, params = grown
    before = read_manifest(Path(params["data_dir"]), GROWING).to_dict("records")
    for case, batch, message in bad_batches(tmp_path):
        proc = ingest_cli(root, params, batch, prefect_api)
        assert proc.returncode != 0, case
        assert message in proc.stderr and str(batch) in proc.stderr, (case, proc.stderr[-500:])
        folder = Path(proc.stderr.split("kept with the reason in ")[1].split(")")[0])
        reason = json.loads((folder / "reason.json").read_text())
        assert message in reason["reason"] and reason["batch"] == str(batch)
    assert read_manifest(Path(params["data_dir"]), GROWING).to_dict("records") == before


def test_an_unknown_snapshot_is_refused_before_any_work(grown):
    _, params = grown
    proc = subprocess.run(
        [sys.executable, "-m", "flows.autoencoder", "--dataset", GROWING, "--source",
         params["source"], "--val-size", "100", "--data-dir", params["data_dir"],
         "--snapshot", "no-such-id"],
        cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no snapshot 'no-such-id' of synthetic-growing" in proc.stderr
