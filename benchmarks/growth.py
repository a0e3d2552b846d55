"""How the pipeline's cost grows with its data: snapshots of MNIST grown to about 3,000,000 images.

    python -m benchmarks.growth [--source ../shared/data/mnist]
        [--sizes 65000,370000,1000000,3000000] [--repeats 3] [--batch 5000] [--epochs 10]
        [--scratch-max 1000000] [--budget-minutes 60] [--replay-at 1000000] [--grow-args ...]
        [--work /tmp/...] [--keep] [--out artifacts/bench]

One data folder grows through every size, against one Prefect server started for
the benchmark, every measured command a fresh process (``python -m flows.ingest``,
``python -m flows.autoencoder``) whose wall time and peak RSS are its own:

1. the base snapshot (MNIST's 70,000 images) gets its champion from scratch
   (``--epochs``);
2. for each size N: a batch of near-copies of MNIST's training digits brings the
   snapshot to N - repeats x batch images and is ingested; the pipeline retrains on
   it (warm: its model is the parent of what follows; timed, not in the table);
3. then, ``--repeats`` times, a fresh ``--batch``-image batch is ingested (the
   **ingest** time) and the pipeline retrains on it (the **retrain**: the parent is
   the previous retrain's model, the new data is that one batch, nothing is cached),
   so the last retrain runs on exactly N images. Every run is promoted
   (``--promotion-tolerance``, 0.5 here): shifted digits raise the test BCE on
   MNIST's fixed test set, a model kept out is nobody's parent, and each retrain
   would then train on every batch since the last promotion;
4. ``du`` of the data folder: bytes per image, and its growth per image ingested
   since the previous size;
5. **from scratch** (``--warm-start false``, ``--epochs``), ``--repeats`` times on the
   last retrain's snapshot, each with fresh artifacts and cache folders (the data
   folder is shared: the images are ingested once). Up to ``--scratch-max`` images;
   above, only if the estimate (the last from-scratch time scaled by the rows)
   fits ``--budget-minutes``;
6. at ``--replay-at`` sizes: the last retrain's training alone, in one process, with
   replay samples of several sizes (the pipeline's: ``--warm-replay``, default
   ``params.WARM_REPLAY``), against the from-scratch test BCE: what sizes the sample.

The batches: each image is a training digit of MNIST shifted by up to 2 pixels
(one of the 24 non-zero shifts) with one pixel nudged by one intensity level;
(digit, shift, pixel) is drawn without repetition, so the images are unique and
new (the ingests confirm it: duplicates are counted). Shifted digits trip the
drift gate, so every run uses ``--drift-policy record``.

Times are medians over the repeats, peak RSS the largest. Prints the tables and
writes ``<out>/growth.json`` and ``growth.md``. The work folder (the data, about
830 bytes per image) is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.run import machine, run_measured, stage_seconds
from ops.local_prefect import api_url, free_port, start_server, stop_process

PROJECT = Path(__file__).resolve().parents[1]
DATASET = "mnist"
SIZES = (65_000, 370_000, 1_000_000, 3_000_000)
REPLAY_SIZES = (10_000, 25_000, 50_000, 100_000, 200_000)
SHIFTS = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if dy or dx)
VARIANTS = len(SHIFTS) * 784  # distinct (shift, pixel) pairs per digit
STRIDE, OFFSET = 7_919, 104_729  # STRIDE is prime to VARIANTS: variant k -> distinct pairs
WRITE_ROWS = 131_072
GIB = 1024**3


# ---- the batches -----------------------------------------------------------------


def shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(n, 28, 28) images moved by (dy, dx) pixels, zeros shifted in."""
    out = np.zeros_like(images)
    out[:, max(dy, 0):28 + min(dy, 0), max(dx, 0):28 + min(dx, 0)] = \
        images[:, max(-dy, 0):28 + min(-dy, 0), max(-dx, 0):28 + min(-dx, 0)]
    return out


class Variants:
    """Unique near-copies of MNIST's training digits, in a fixed order (``take``).

    Image k of the stream is digit ``order[k % n]``, its ``k // n``-th variant: a
    (shift, pixel) pair that no other variant of that digit uses, and the pixel
    nudged by one level (down at 255). Two images are the same only if two
    different digits become identical, which the ingests would count.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, seed: int = 0):
        self.images, self.labels = images.reshape(-1, 28, 28), labels
        self.order = np.random.default_rng(seed).permutation(len(labels))
        self.next = 0

    def take(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        k = np.arange(self.next, self.next + count, dtype=np.int64)
        self.next += count
        digit, variant = self.order[k % len(self.order)], k // len(self.order)
        if variant.max(initial=0) >= VARIANTS:
            raise ValueError(f"more than {VARIANTS} variants per digit")
        pair = (variant * STRIDE + digit * OFFSET) % VARIANTS
        shift, pixel = pair % len(SHIFTS), pair // len(SHIFTS)
        out = np.empty((count, 28, 28), np.uint8)
        for s, (dy, dx) in enumerate(SHIFTS):
            chosen = np.flatnonzero(shift == s)
            out[chosen] = shifted(self.images[digit[chosen]], dy, dx)
        flat, rows = out.reshape(count, 784), np.arange(count)
        values = flat[rows, pixel]
        flat[rows, pixel] = np.where(values < 255, values + 1, values - 1)
        return flat, self.labels[digit]


def write_batch(folder: Path, variants: Variants, count: int) -> Path:
    """``count`` images of ``variants`` as an uncompressed IDX pair in ``folder``."""
    folder.mkdir(parents=True)
    with open(folder / "growth-images-idx3-ubyte", "wb") as images, \
            open(folder / "growth-labels-idx1-ubyte", "wb") as labels:
        images.write(bytes([0, 0, 8, 3]) + np.array([count, 28, 28], ">u4").tobytes())
        labels.write(bytes([0, 0, 8, 1]) + np.array([count], ">u4").tobytes())
        for start in range(0, count, WRITE_ROWS):
            x, y = variants.take(min(WRITE_ROWS, count - start))
            images.write(x.tobytes())
            labels.write(y.astype(np.uint8).tobytes())
    return folder


def mnist_train(source: str) -> tuple[np.ndarray, np.ndarray]:
    from mnist_autoencoder.data.catalog import get_dataset
    from mnist_autoencoder.data.idx import load_images_and_labels

    names = get_dataset(DATASET).file_names()
    return load_images_and_labels(Path(source) / names["train_images"],
                                  Path(source) / names["train_labels"])


# ---- measured runs -----------------------------------------------------------------


def disk_bytes(folder: Path) -> int:
    """Bytes allocated to the files under ``folder`` (as ``du``; links not followed)."""
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            total += os.lstat(os.path.join(parent, name)).st_blocks * 512
    return total


def last_decision(artifacts: Path) -> dict:
    """The registry's newest row: the run's decision, unrounded test BCE and training rows."""
    from mnist_autoencoder.lifecycle.registry import read_registry
    from mnist_autoencoder.paths import models_dir

    row = read_registry(models_dir(artifacts)).iloc[-1].to_dict()
    training = json.loads(row["parameters"])
    return {"event": row["event"], "test_bce": float(row["test_bce"]),
            "snapshot": row["snapshot"], "init": training.get("init"),
            "rows": training.get("rows", {}), "epochs": training.get("epochs")}


class Bench:
    """Runs the flows on one data folder against one Prefect server."""

    def __init__(self, work: Path, source: str, env: dict, epochs: int, tolerance: float):
        self.work, self.source, self.env, self.epochs = work, source, env, epochs
        self.tolerance = tolerance
        self.data = work / "data"

    def pipeline(self, artifacts: Path, cache: Path, *extra: str) -> dict:
        run = run_measured([sys.executable, "-m", "flows.autoencoder", "--dataset", DATASET,
                            "--source", self.source, "--data-dir", str(self.data),
                            "--artifacts-dir", str(artifacts), "--epochs", str(self.epochs),
                            "--drift-policy", "record",
                            "--promotion-tolerance", str(self.tolerance), *extra],
                           env=self.env | {"MNIST_AE_CACHE_DIR": str(cache)}, timeout=3600)
        lines = run["stdout"].splitlines()
        return {"wall": run["wall"], "peak_rss_mib": run["peak_rss_mib"],
                "load": os.getloadavg()[0],
                "stages": {k: v[1] for k, v in stage_seconds(run["stdout"]).items()},
                "states": {k: v[0] for k, v in stage_seconds(run["stdout"]).items()},
                "training": next((s for s in lines if s.startswith("Training: ")), ""),
                "decision": next((s for s in lines if s.startswith("Decision: ")), ""),
                **last_decision(artifacts)}

    def ingest(self, batch: Path) -> dict:
        run = run_measured([sys.executable, "-m", "flows.ingest", "--dataset", DATASET,
                            "--batch", str(batch), "--source", self.source,
                            "--data-dir", str(self.data)],
                           env=self.env | {"MNIST_AE_CACHE_DIR": str(self.work / "cache")},
                           timeout=3600)
        line = next(s for s in run["stdout"].splitlines() if s.startswith("Snapshot: "))
        snapshot, counts = line.removeprefix("Snapshot: ").split(" ", 1)
        new, duplicates = (int(part.split()[0]) for part in counts.strip("()").split(", "))
        return {"wall": run["wall"], "peak_rss_mib": run["peak_rss_mib"],
                "load": os.getloadavg()[0], "stage": stage_seconds(run["stdout"])["ingest"][1],
                "snapshot": snapshot, "new": new, "duplicates": duplicates}


def medians(runs: list[dict]) -> dict:
    """Median wall and stage times of ``runs``, their largest peak RSS, each run's wall."""
    names = list(dict.fromkeys(name for r in runs for name in r["stages"]))
    return {"wall": statistics.median(r["wall"] for r in runs),
            "stages": {n: statistics.median(r["stages"].get(n, 0.0) for r in runs)
                       for n in names},
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "load": statistics.median(r["load"] for r in runs),
            "walls": [round(r["wall"], 1) for r in runs]}


def replay_child(argv: list[str]) -> None:
    """``python -m benchmarks.growth replay DATA ARTIFACTS SNAPSHOT SIZES``: train the last
    retrain of ``SNAPSHOT`` again with each replay size; print one JSON line of results."""
    data_dir, artifacts, snapshot_id, sizes = Path(argv[0]), Path(argv[1]), argv[2], argv[3]
    from mnist_autoencoder.data.snapshots import resolve
    from mnist_autoencoder.data.splits import (
        SAMPLE_LIMITS,
        SplitView,
        select_training_rows,
        training_rows,
    )
    from mnist_autoencoder.evaluation.metrics import mean_errors
    from mnist_autoencoder.lifecycle.lineage import find_parent
    from mnist_autoencoder.models.inference import apply_in_chunks
    from mnist_autoencoder.models.training import train_model
    from mnist_autoencoder.params import WARM_EPOCHS, WARM_LEARNING_RATE, WARM_REPLAY

    snapshot = resolve(data_dir, DATASET, snapshot_id).describe()
    parent = find_parent(artifacts, snapshot, 32)
    folder = max((p.parent for p in (data_dir / "processed" / DATASET).glob("*/metadata.json")
                  if json.loads(p.read_text()).get("snapshot") == snapshot_id),
                 key=lambda p: p.stat().st_mtime)
    view = SplitView(folder)
    new_parts = {b["id"] for b in parent["new_batches"]}
    val = view.pixels("val", view.sample_ranks("val", SAMPLE_LIMITS["val"]))
    test = view.load("test").x
    rows_out = []
    for replay in [int(s) for s in sizes.split(",")]:
        rows, counts = select_training_rows(view, new_parts, replay, 0)
        started = time.perf_counter()
        fitted = train_model("shallow", training_rows(view, rows), val, latent_dim=32,
                             epochs=WARM_EPOCHS, batch_size=256, learning_rate=WARM_LEARNING_RATE,
                             patience=5, seed=0, init=Path(parent["model"]["dir"]),
                             log=lambda _: None)
        seconds = time.perf_counter() - started
        rebuilt = apply_in_chunks(fitted.decoder, apply_in_chunks(fitted.encoder, test))
        rows_out.append({"replay": replay, "pipeline": replay == WARM_REPLAY, "rows": counts,
                         "seconds": seconds, "test_bce": mean_errors(test, rebuilt)["test_bce"]})
    print(json.dumps(rows_out))


# ---- the benchmark -------------------------------------------------------------------


def main() -> None:
    if sys.argv[1:2] == ["replay"]:
        return replay_child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=str(PROJECT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="snapshot sizes (images) of the last retrain at each step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=5_000, help="images per retrain's batch")
    parser.add_argument("--epochs", type=int, default=10,
                        help="epochs of the base's and the from-scratch runs")
    parser.add_argument("--scratch-max", type=int, default=1_000_000,
                        help="from scratch up to this size; above, only if it fits the budget")
    parser.add_argument("--budget-minutes", type=float, default=60)
    parser.add_argument("--promotion-tolerance", type=float, default=0.5,
                        help="of every run: high, so that each retrain is promoted and is the "
                        "next one's parent (the batches move the fixed test BCE)")
    parser.add_argument("--grow-args", default="",
                        help="extra options of the warm retrain on each growth batch only, "
                        "e.g. '--warm-learning-rate 0.001' (the measured retrains keep the "
                        "defaults)")
    parser.add_argument("--replay-at", default="1000000",
                        help="sizes at which to measure replay samples (empty: none)")
    parser.add_argument("--replay-sizes", default=",".join(map(str, REPLAY_SIZES)))
    parser.add_argument("--work", default="", help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--out", default=str(PROJECT / "artifacts" / "bench"))
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    replay_at = {int(s) for s in args.replay_at.split(",") if s.strip()}
    work = Path(args.work or tempfile.mkdtemp(prefix="mnist-ae-growth-"))
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        parser.error(f"--work {work} is not empty")
    started = time.perf_counter()
    deadline = started + 60 * args.budget_minutes
    (work / "home").mkdir()
    env = os.environ | {"PREFECT_HOME": str(work / "home"),
                        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                        "MNIST_AE_CATALOG": str(work / "catalog.json")}  # the built-in MNIST only
    port = free_port()
    server = start_server(port, work / "home", work / "server.log")
    env |= {"PREFECT_API_URL": api_url(port)}
    bench = Bench(work, args.source, env, args.epochs, args.promotion_tolerance)
    main_artifacts, main_cache = work / "artifacts", work / "cache"
    variants = Variants(*mnist_train(args.source))
    result: dict = {"machine": machine(), "memory_gib": memory_gib(), "args": vars(args),
                    "date": dt.date.today().isoformat(), "sizes": []}

    def log(text: str) -> None:
        print(f"[{(time.perf_counter() - started) / 60:5.1f} min] {text}", flush=True)

    try:
        log(f"base snapshot: from scratch, {args.epochs} epochs (work folder {work}) ...")
        result["base"] = bench.pipeline(main_artifacts, main_cache)
        state = {"images": get_base_images(), "batches": 0, "disk": None}
        for size in sizes:
            measure_size(size, bench, variants, args, state, result, deadline,
                         size in replay_at, log)
            save(result, Path(args.out))
    except Exception as error:  # report what was measured, and why the rest was not
        result["error"] = f"{type(error).__name__}: {error}"
        log(f"stopped: {result['error']}")
    finally:
        stop_process(server.pid)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["total_minutes"] = (time.perf_counter() - started) / 60
    report(result, Path(args.out))


def get_base_images() -> int:
    from mnist_autoencoder.data.catalog import get_dataset

    spec = get_dataset(DATASET)
    return spec.train_size + spec.test_size


def measure_size(size: int, bench: Bench, variants: Variants, args, state: dict, result: dict,
                 deadline: float, replay: bool, log) -> None:
    """Grow the snapshot to ``size``, retrain, from scratch, replay samples: ``result``'s entry."""
    work, artifacts, cache = bench.work, bench.work / "artifacts", bench.work / "cache"
    entry: dict = {"size": size}
    grow = size - args.repeats * args.batch - state["images"]
    if grow > 0:
        log(f"{size:,}: generating and ingesting {grow:,} images ...")
        t = time.perf_counter()
        folder = write_batch(work / "inputs" / f"grow-{size}", variants, grow)
        entry["generate_seconds"] = time.perf_counter() - t
        entry["grow_ingest"] = bench.ingest(folder)
        shutil.rmtree(folder)
        state["images"] += entry["grow_ingest"]["new"]
        log(f"{size:,}: ingested in {entry['grow_ingest']['wall']:.0f} s; retraining on it "
            "(the parent of the measured retrains) ...")
        entry["grow_retrain"] = bench.pipeline(artifacts, cache, *args.grow_args.split())
    ingests, retrains = [], []
    for k in range(args.repeats):
        state["batches"] += 1
        folder = write_batch(work / "inputs" / f"batch-{state['batches']:03d}", variants,
                             args.batch)
        ingests.append(bench.ingest(folder))
        shutil.rmtree(folder)
        state["images"] += ingests[-1]["new"]
        log(f"{size:,}: retrain {k + 1}/{args.repeats} on {state['images']:,} images ...")
        retrains.append(bench.pipeline(artifacts, cache) | {"images": state["images"]})
    images = state["images"]
    entry |= {"images": images, "ingests": ingests, "retrains": retrains,
              "retrain": medians(retrains), "disk": disk_bytes(bench.data),
              "raw_disk": disk_bytes(bench.data / "raw"),
              "ingest_wall": statistics.median(i["wall"] for i in ingests),
              "ingest_stage": statistics.median(i["stage"] for i in ingests),
              "ingest_peak_rss_mib": max(i["peak_rss_mib"] for i in ingests)}
    entry["growth_per_image"] = ((entry["disk"] - state["disk"][0]) / (images - state["disk"][1])
                                 if state["disk"] else None)
    state["disk"] = (entry["disk"], images)
    result["sizes"].append(entry)
    if not scratch_fits(size, args, result["sizes"], deadline):
        log(f"{size:,}: from scratch skipped (it would not fit --budget-minutes)")
        return
    scratches = []
    for k in range(args.repeats):
        log(f"{size:,}: from scratch {k + 1}/{args.repeats} ...")
        for part in ("scratch-artifacts", "scratch-cache"):
            shutil.rmtree(work / part, ignore_errors=True)
        scratches.append(bench.pipeline(work / "scratch-artifacts", work / "scratch-cache",
                                        "--warm-start", "false"))
    entry["scratches"], entry["scratch"] = scratches, medians(scratches)
    if replay:
        log(f"{size:,}: replay samples {args.replay_sizes} ...")
        run = run_measured([sys.executable, "-m", "benchmarks.growth", "replay",
                            str(bench.data), str(artifacts), retrains[-1]["snapshot"],
                            args.replay_sizes], env=bench.env, timeout=3600)
        entry["replay"] = json.loads(run["stdout"].strip().splitlines()[-1])
        entry["replay_peak_rss_mib"] = run["peak_rss_mib"]


def memory_gib() -> float:
    with open("/proc/meminfo") as handle:
        return int(handle.readline().split()[1]) / 1024**2


def scratch_fits(size: int, args, done: list[dict], deadline: float) -> bool:
    """From scratch at ``size``: always up to --scratch-max; above, if it fits before the
    deadline, estimated as the last from-scratch runs with their training scaled by size."""
    if size <= args.scratch_max:
        return True
    last = next((e for e in reversed(done) if "scratch" in e), None)
    if last is None:
        return False
    train = last["scratch"]["stages"].get("train", 0.0)
    estimate = args.repeats * (last["scratch"]["wall"] + train * (size / last["images"] - 1))
    print(f"  from scratch at {size:,}: estimated {estimate / 60:.1f} min, "
          f"{(deadline - time.perf_counter()) / 60:.1f} min left", flush=True)
    return time.perf_counter() + estimate <= deadline


def save(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "growth.json").write_text(json.dumps(result, indent=2) + "\n")


def report(r: dict, out: Path) -> None:
    entries, a = r["sizes"], r["args"]
    if not entries or "base" not in r:
        print(f"Nothing measured: {r.get('error', 'no sizes')}")
        return save(r, out)
    lines = [f"{r['machine']}, {r['memory_gib']:.0f} GiB; {r['date']}; medians of "
             f"{a['repeats']} runs; peak RSS: the largest of them; whole benchmark "
             f"{r['total_minutes']:.1f} min", "",
             "| snapshot (images) | retrain wall | retrain peak RSS | from scratch wall | "
             "from scratch peak RSS | test BCE retrain / from scratch | data/ bytes per image "
             "| growth per ingested image | ingest of the batch (stage) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        retrain, scratch, warm_bce = e["retrain"], e.get("scratch"), e["retrains"][-1]["test_bce"]
        if scratch:
            cold_bce = statistics.median(s["test_bce"] for s in e["scratches"])
            bce = f"{warm_bce:.5f} / {cold_bce:.5f} ({100 * (warm_bce / cold_bce - 1):+.2f}%)"
            cold = f"{scratch['wall']:.1f} s | {scratch['peak_rss_mib'] / 1024:.2f} GiB"
        else:
            bce, cold = f"{warm_bce:.5f} / not run", "not run | not run"
        growth = f"{e['growth_per_image']:.0f} B" if e["growth_per_image"] else "-"
        lines.append(f"| {e['images']:,} | {retrain['wall']:.1f} s | "
                     f"{retrain['peak_rss_mib'] / 1024:.2f} GiB | {cold} | {bce} | "
                     f"{e['disk'] / e['images']:.0f} B | {growth} | "
                     f"{e['ingest_wall']:.1f} s ({e['ingest_stage']:.1f} s) |")
    first, last = entries[0]["retrain"]["wall"], entries[-1]["retrain"]["wall"]
    batch_only = all(t["rows"].get("new", 0) <= a["batch"] and t["event"] == "promoted"
                     for e in entries for t in e["retrains"])
    lines += ["", f"Retrain at {entries[-1]['images']:,} / at {entries[0]['images']:,}: "
              f"**{last / first:.2f}x** (target <= 1.25). Every retrain trained on its batch "
              f"alone (+ replay) and was promoted: {'yes' if batch_only else 'NO'}.", "",
              "Retrain, per stage (median seconds):", "",
              "| stage | " + " | ".join(f"{e['images']:,}" for e in entries) + " |",
              "|---|" + "---|" * len(entries)]
    names = list(dict.fromkeys(n for e in entries for n in e["retrain"]["stages"]))
    for name in names:
        lines.append(f"| {name} | " + " | ".join(
            f"{e['retrain']['stages'].get(name, 0):.1f}" for e in entries) + " |")
    lines.append("| outside the stages | " + " | ".join(
        f"{e['retrain']['wall'] - sum(e['retrain']['stages'].values()):.1f}"
        for e in entries) + " |")
    lines.append("| wall (each run) | " + " | ".join(
        ", ".join(map(str, e["retrain"]["walls"])) for e in entries) + " |")
    lines.append("| load average (1 min) after the runs | " + " | ".join(
        f"{e['retrain']['load']:.1f}" for e in entries) + " |")
    trained = [e["retrains"][-1]["rows"] for e in entries]
    lines.append("| rows trained (new + replay) | " + " | ".join(
        f"{t.get('new', 0):,} + {t.get('replay', 0):,}" for t in trained) + " |")
    scratch_entries = [e for e in entries if "scratch" in e]
    if scratch_entries:
        lines += ["", "From scratch, per stage (median seconds):", "",
                  "| stage | " + " | ".join(f"{e['images']:,}" for e in scratch_entries) + " |",
                  "|---|" + "---|" * len(scratch_entries)]
        names = list(dict.fromkeys(n for e in scratch_entries for n in e["scratch"]["stages"]))
        for name in names:
            lines.append(f"| {name} | " + " | ".join(
                f"{e['scratch']['stages'].get(name, 0):.1f}" for e in scratch_entries) + " |")
        lines.append("| wall (each run) | " + " | ".join(
            ", ".join(map(str, e["scratch"]["walls"])) for e in scratch_entries) + " |")
        lines.append("| load average (1 min) after the runs | " + " | ".join(
            f"{e['scratch']['load']:.1f}" for e in scratch_entries) + " |")
    grows = [e for e in entries if "grow_ingest" in e]
    if grows:
        lines += ["", "Growing to each size (once, not in the medians):", "",
                  "| size | images ingested | new / duplicates | ingest wall (stage) | "
                  "ingest peak RSS | warm retrain on them | its peak RSS |",
                  "|---|---|---|---|---|---|---|"]
        for e in grows:
            g, t = e["grow_ingest"], e["grow_retrain"]
            lines.append(f"| {e['size']:,} | {g['new'] + g['duplicates']:,} | {g['new']:,} / "
                         f"{g['duplicates']:,} | {g['wall']:.1f} s ({g['stage']:.1f} s) | "
                         f"{g['peak_rss_mib'] / 1024:.2f} GiB | {t['wall']:.1f} s | "
                         f"{t['peak_rss_mib'] / 1024:.2f} GiB |")
    for e in entries:
        if "replay" in e:
            scratch_bce = statistics.median(s["test_bce"] for s in e["scratches"])
            lines += ["", f"Replay sample of a warm retrain at {e['images']:,} images (training "
                      f"alone; from scratch: test BCE {scratch_bce:.5f}):", "",
                      "| replay rows | rows trained | training time | test BCE | "
                      "vs from scratch |", "|---|---|---|---|---|"]
            for row in e["replay"]:
                bold = "**" if row["pipeline"] else ""
                lines.append(f"| {bold}{row['replay']:,}{bold} | {row['rows']['train']:,} | "
                             f"{row['seconds']:.1f} s | {row['test_bce']:.5f} | "
                             f"{100 * (row['test_bce'] / scratch_bce - 1):+.2f}% |")
    base = r["base"]
    lines += ["", f"Base champion (70,000 images, from scratch, {a['epochs']} epochs): "
              f"{base['wall']:.1f} s, peak RSS {base['peak_rss_mib'] / 1024:.2f} GiB, test BCE "
              f"{base['test_bce']:.5f}."]
    if "error" in r:
        lines += ["", f"Stopped early: {r['error']}"]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    save(r, out)
    (out / "growth.md").write_text(text)
    print(f"Saved {out / 'growth.json'} and {out / 'growth.md'}")


if __name__ == "__main__":
    main()
