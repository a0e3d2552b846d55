"""What a retrain on a grown snapshot costs, warm-started, against a run from scratch on it.

    python -m benchmarks.retrain [--source ../shared/data/mnist] [--repeats 3]
        [--out artifacts/bench]

The loop of ``make simulate``, in a temporary folder against a running Prefect
server: MNIST is cut into a base of 40,000 training images (with the whole test
set) and a batch of the next 5,000; the pipeline trains the base's champion
(from scratch, 50 epochs), the batch is ingested as a new snapshot, and then,
``--repeats`` times each, interleaved:

- **retrain**: ``python -m flows.autoencoder --dataset mnist_sim`` as ``make run``
  would start it after the ingest: the history of the base run in place (its
  caches, champion, outputs and shards restored before every repeat), so the run finds
  its parent, gates the batch for drift and warm-starts training, the probes
  and t-SNE;
- **from scratch**: the same command on the same snapshot with nothing
  reused: fresh artifacts, cache and data folders (the snapshot's manifest and
  batch copied in).

Both are fresh processes against the same server. Printed: the per-stage
breakdown of both (medians), wall times and their ratio (target <= 0.5), test
BCE on the fixed test split and on the snapshot's recent holdout, the probes.
Then, in this process on the same snapshot, the warm-start choices against 50
epochs from scratch (epochs x learning rate; training time and test BCE), which
chose the defaults (``params.WARM_EPOCHS``, ``WARM_LEARNING_RATE``).
Writes ``<out>/retrain.json`` and ``retrain.md``. About 9 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.run import machine, run_measured, stage_seconds
from ops.local_prefect import api_url, free_port, start_server, stop_process

PROJECT = Path(__file__).resolve().parents[1]
DATASET = "mnist_sim"
WARM_CHOICES = ((1, 1e-3), (3, 1e-3), (5, 1e-3), (10, 1e-3), (1, 3e-4), (3, 3e-4), (5, 3e-4),
                (10, 3e-4))
STATE = ("data/processed", "data/snapshots", "artifacts", "cache")  # restored before a retrain
SHARDS = "data/shards"  # the base shard and the split assignments: restored by pruning


def run_metrics(root: Path) -> dict[str, float]:
    """The newest run's test metrics and probe accuracies, unrounded, from its outputs."""
    def newest(stage: str, name: str) -> dict:
        path = max((root / "artifacts" / stage).glob(f"*/{name}"), key=lambda p: p.stat().st_mtime)
        return json.loads(path.read_text())

    probes = newest("analyze", "analysis.json")["probe_accuracy"]
    return newest("evaluate", "metrics.json") | {f"probe ({k})": v for k, v in probes.items()}


def note(stdout: str, prefix: str) -> str:
    return next((line for line in stdout.splitlines() if line.startswith(prefix)), "")


def flow(env: dict, root: Path, *args: str) -> dict:
    run = run_measured([sys.executable, "-m", "flows.autoencoder", "--dataset", DATASET,
                        "--data-dir", str(root / "data"), "--artifacts-dir",
                        str(root / "artifacts"), *args],
                       env=env | {"MNIST_AE_CACHE_DIR": str(root / "cache")})
    return {"wall": run["wall"], "peak_rss_mib": run["peak_rss_mib"],
            "stages": stage_seconds(run["stdout"]), "metrics": run_metrics(root),
            "training": note(run["stdout"], "Training: "),
            "drift": note(run["stdout"], "Drift: "),
            "decision": note(run["stdout"], "Decision: ")}


def copy_state(source: Path, target: Path) -> None:
    for part in STATE:
        shutil.rmtree(target / part, ignore_errors=True)
        if (source / part).exists():
            shutil.copytree(source / part, target / part, symlinks=True)
    if not (target / SHARDS).exists():
        if (source / SHARDS).exists():
            shutil.copytree(source / SHARDS, target / SHARDS, symlinks=True)
    else:
        prune(source / SHARDS, target / SHARDS)


def prune(source: Path, target: Path) -> None:
    """Remove from ``target`` what ``source`` lacks (what a retrain wrote: its batch's split
    assignment, its stamps). Shards and assignments never change once written, so the
    files both hold are the same; keeping ``target``'s keeps their stat, which the
    verification stamps record, so a repeat does not hash the base shard again."""
    for path in sorted(target.rglob("*"), reverse=True):
        if not (source / path.relative_to(target)).exists():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def warm_choices(root: Path) -> list[dict]:
    """Warm starts of the base champion on the snapshot, against 50 epochs from scratch."""
    os.environ["MNIST_AE_CATALOG"] = str(root / "catalog.json")
    from mnist_autoencoder.data.snapshots import resolve
    from mnist_autoencoder.data.splits import load_splits
    from mnist_autoencoder.evaluation.metrics import mean_errors
    from mnist_autoencoder.lifecycle.lineage import find_parent
    from mnist_autoencoder.models.inference import apply_in_chunks
    from mnist_autoencoder.models.training import train_model

    snapshot = resolve(root / "data", DATASET).describe()
    parent = find_parent(root / "artifacts", snapshot, 32)
    folder = max((root / "data" / "processed" / DATASET).glob("*/metadata.json"),
                 key=lambda p: json.loads(p.read_text())["counts"]["train"]).parent
    # whole splits (no sample limits), as before the view: the same rows every choice
    data = load_splits(folder, ("train", "val", "test", "recent"), limits={})
    rows = []
    for epochs, rate in [(50, 1e-3), *WARM_CHOICES]:
        init = None if epochs == 50 else Path(parent["model"]["dir"])
        started = time.perf_counter()
        fitted = train_model("shallow", data["train"].x, data["val"].x, latent_dim=32,
                             epochs=epochs, batch_size=256, learning_rate=rate, patience=5,
                             seed=0, init=init, log=lambda _: None)
        seconds = time.perf_counter() - started

        def bce(x, fitted=fitted):
            return mean_errors(x, apply_in_chunks(fitted.decoder,
                                                  apply_in_chunks(fitted.encoder, x)))["test_bce"]

        rows.append({"start": "scratch" if init is None else "warm", "epochs": epochs,
                     "learning_rate": rate, "seconds": seconds,
                     "test_bce": bce(data["test"].x), "recent_bce": bce(data["recent"].x)})
        print(f"  {rows[-1]}", flush=True)
    return rows


def median_run(runs: list[dict]) -> dict:
    stages = {name: statistics.median(r["stages"][name][1] for r in runs)
              for name in runs[0]["stages"]}
    return {"wall": statistics.median(r["wall"] for r in runs), "stages": stages,
            "states": {name: state for name, (state, _) in runs[0]["stages"].items()},
            "metrics": runs[0]["metrics"], "training": runs[0]["training"],
            "drift": runs[0]["drift"], "decision": runs[0]["decision"],
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "walls": [round(r["wall"], 1) for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=str(PROJECT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(PROJECT / "artifacts" / "bench"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mnist-ae-retrain-") as tmp:
        tmp = Path(tmp)
        main_root, history, scratch = tmp / "retrain", tmp / "history", tmp / "scratch"
        (tmp / "home").mkdir()
        env = os.environ | {"PREFECT_HOME": str(tmp / "home"),
                            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                            "MNIST_AE_CATALOG": str(main_root / "catalog.json")}
        print("cutting MNIST into a base and one batch of 5,000 ...", flush=True)
        run_measured([sys.executable, "-m", "ops.simulate", "--source", args.source,
                      "--batches", "1", "--out", str(tmp / "simulate"),
                      "--data-dir", str(main_root / "data")], env=env)
        port = free_port()
        server = start_server(port, tmp / "home", tmp / "server.log")
        env |= {"PREFECT_API_URL": api_url(port)}
        try:
            print("training the base snapshot's champion (from scratch) ...", flush=True)
            base = flow(env, main_root)
            run_measured([sys.executable, "-m", "flows.ingest", "--dataset", DATASET, "--batch",
                          str(tmp / "simulate" / "batches" / "batch-01"), "--data-dir",
                          str(main_root / "data")],
                         env=env | {"MNIST_AE_CACHE_DIR": str(main_root / "cache")})
            copy_state(main_root, history)
            retrains, scratches = [], []
            for k in range(args.repeats):
                print(f"repeat {k + 1}/{args.repeats}: retrain ...", flush=True)
                copy_state(history, main_root)
                retrains.append(flow(env, main_root))
                print(f"repeat {k + 1}/{args.repeats}: from scratch ...", flush=True)
                shutil.rmtree(scratch, ignore_errors=True)
                shutil.copytree(history / "data" / "snapshots", scratch / "data" / "snapshots")
                scratches.append(flow(env, scratch))
            print("warm-start choices on the snapshot (in process) ...", flush=True)
            choices = warm_choices(main_root)
        finally:
            stop_process(server.pid)
    report({"machine": machine(), "base": base, "retrain": median_run(retrains),
            "scratch": median_run(scratches), "choices": choices}, Path(args.out))


def report(r: dict, out: Path) -> None:
    retrain, scratch = r["retrain"], r["scratch"]
    names = list(dict.fromkeys([*scratch["stages"], *retrain["stages"]]))
    pairs = [round(a / b, 2) for a, b in zip(retrain["walls"], scratch["walls"])]
    lines = [f"{r['machine']}; medians of {len(retrain['walls'])} runs each "
             f"(retrain {retrain['walls']} s, from scratch {scratch['walls']} s; ratio of "
             f"each pair, in the order run: {pairs})", "",
             "### Retrain cost: a 5,000-image batch on a 40,000-image MNIST base", "",
             "| stage | from scratch | retrain (warm) |", "|---|---|---|"]
    for name in names:
        cells = [f"{run['stages'][name]:.1f} s ({run['states'][name]})" if name in run["stages"]
                 else "" for run in (scratch, retrain)]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    outside = {k: run["wall"] - sum(run["stages"].values())
               for k, run in (("scratch", scratch), ("retrain", retrain))}
    lines += [f"| outside the stages | {outside['scratch']:.1f} s | {outside['retrain']:.1f} s |",
              f"| **wall time** | **{scratch['wall']:.1f} s** | **{retrain['wall']:.1f} s** |",
              "", f"Retrain / from scratch: **{retrain['wall'] / scratch['wall']:.2f}x** "
              "(target <= 0.5); peak RSS "
              f"{scratch['peak_rss_mib']:.0f} / {retrain['peak_rss_mib']:.0f} MiB.", "",
              "### Warm start against from scratch, in the pipeline (same snapshot)", "",
              "| measure | from scratch | retrain (warm) | ratio |", "|---|---|---|---|"]
    for name in ("test_bce", "recent_bce", "probe (autoencoder codes)", "probe (PCA codes)",
                 "probe (raw pixels)"):
        a, b = scratch["metrics"][name], retrain["metrics"][name]
        ratio = (f"{b / a:.4f}" if "bce" in name else f"{100 * (b - a):+.2f} points")
        lines.append(f"| {name} | {a:.5f} | {b:.5f} | {ratio} |" if "bce" in name else
                     f"| {name} | {a:.2%} | {b:.2%} | {ratio} |")
    lines.append(f"| train stage | {scratch['stages']['train']:.1f} s | "
                 f"{retrain['stages']['train']:.1f} s | "
                 f"{retrain['stages']['train'] / scratch['stages']['train']:.2f}x |")
    lines += ["", f"Retrain: {retrain['training']}", f"Retrain: {retrain['drift']}",
              f"Retrain: {retrain['decision']}", "",
              "### Warm-start choices (training only, in process; the defaults in bold)", "",
              "| start | epochs | learning rate | seconds | test BCE | recent BCE |",
              "|---|---|---|---|---|---|"]
    for c in r["choices"]:
        bold = "**" if (c["start"], c["epochs"], c["learning_rate"]) == ("warm", 5, 3e-4) else ""
        lines.append(f"| {bold}{c['start']}{bold} | {c['epochs']} | {c['learning_rate']:g} | "
                     f"{c['seconds']:.1f} | {c['test_bce']:.5f} | {c['recent_bce']:.5f} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "retrain.json").write_text(json.dumps(r, indent=2) + "\n")
    (out / "retrain.md").write_text(text)
    print(f"Saved {out / 'retrain.json'} and {out / 'retrain.md'}")


if __name__ == "__main__":
    main()
