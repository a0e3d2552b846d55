"""The default pipeline on local disk and on S3 (moto's server on loopback), side by side.

    python -m benchmarks.storage [--source ../shared/data/mnist] [--repeats 3]
        [--epochs 50] [--out artifacts/bench]

One Prefect server for the benchmark; each measured command a fresh process
(``python -m flows.autoencoder``). Per repeat and per storage, in turn (local, S3,
local, S3, ...): a full run on empty folders (an empty prefix and an empty scratch
and cache on S3), then the cached rerun of it. On S3 the data and artifacts are
``s3://bench/<repeat>/{data,artifacts}`` and the scratch folder is emptied before
the cached rerun too, as a second worker with an empty disk would run it.

Prints wall times (medians), their ratios (targets: full run within 1.3x of local,
cached rerun within 2x) and the per-stage breakdown; writes ``<out>/storage.{json,md}``.
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

from benchmarks.run import machine, run_measured, stage_seconds
from ops.local_prefect import api_url, free_port, start_server, stop_process

PROJECT = Path(__file__).resolve().parents[1]


def run(env: dict, source: str, data: str, artifacts: str, epochs: int) -> dict:
    proc = run_measured([sys.executable, "-m", "flows.autoencoder", "--source", source,
                         "--data-dir", data, "--artifacts-dir", artifacts,
                         "--epochs", str(epochs)], env=env, timeout=3600)
    return {"wall": proc["wall"], "peak_rss_mib": proc["peak_rss_mib"],
            "stages": {k: v[1] for k, v in stage_seconds(proc["stdout"]).items()},
            "states": sorted({v[0] for v in stage_seconds(proc["stdout"]).values()})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=str(PROJECT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--out", default=str(PROJECT / "artifacts" / "bench"))
    args = parser.parse_args()
    sys.path.insert(0, str(PROJECT))
    from tests.s3 import S3Server

    work = Path(tempfile.mkdtemp(prefix="mnist-ae-storage-"))
    (work / "home").mkdir()
    port = free_port()
    server = start_server(port, work / "home", work / "server.log")
    s3 = S3Server(work / "moto.log")
    s3.bucket("bench")
    base = os.environ | {"PREFECT_HOME": str(work / "home"), "PREFECT_API_URL": api_url(port),
                         "PREFECT_SERVER_ANALYTICS_ENABLED": "false"} | s3.env
    runs: dict[str, list[dict]] = {"local full": [], "local cached": [], "s3 full": [],
                                    "s3 cached": []}
    started = time.perf_counter()
    try:
        for k in range(args.repeats):
            env = base | {"MNIST_AE_CACHE_DIR": str(work / f"cache-local-{k}")}
            folder = work / f"local-{k}"
            for kind in ("full", "cached"):
                runs[f"local {kind}"].append(run(env, args.source, str(folder / "data"),
                                                 str(folder / "artifacts"), args.epochs))
                print(f"local {kind} {k + 1}: {runs[f'local {kind}'][-1]['wall']:.1f} s",
                      flush=True)
            env = base | {"MNIST_AE_CACHE_DIR": str(work / f"cache-s3-{k}"),
                          "MNIST_AE_SCRATCH": str(work / "scratch")}
            for kind in ("full", "cached"):
                shutil.rmtree(work / "scratch", ignore_errors=True)  # a worker's empty disk
                shutil.rmtree(work / f"cache-s3-{k}", ignore_errors=True)
                runs[f"s3 {kind}"].append(run(env, args.source, f"s3://bench/{k}/data",
                                              f"s3://bench/{k}/artifacts", args.epochs))
                print(f"s3 {kind} {k + 1}: {runs[f's3 {kind}'][-1]['wall']:.1f} s", flush=True)
    finally:
        s3.stop()
        stop_process(server.pid)
        shutil.rmtree(work, ignore_errors=True)
    result = {"machine": machine(), "date": dt.date.today().isoformat(), "args": vars(args),
              "minutes": (time.perf_counter() - started) / 60, "runs": runs}
    report(result, Path(args.out))


def report(r: dict, out: Path) -> None:
    runs = r["runs"]
    median = {name: statistics.median(x["wall"] for x in values) for name, values in runs.items()}
    lines = [f"{r['machine']}; {r['date']}; default pipeline, {r['args']['epochs']} epochs, "
             f"real MNIST; medians of {r['args']['repeats']}; one Prefect server; moto's S3 "
             f"server on loopback; whole benchmark {r['minutes']:.1f} min", "",
             "| run | local | S3 | S3 / local | target |", "|---|---|---|---|---|"]
    for kind, target in (("full", 1.3), ("cached", 2.0)):
        a, b = median[f"local {kind}"], median[f"s3 {kind}"]
        lines.append(f"| {kind} | {a:.1f} s | {b:.1f} s | {b / a:.2f}x | <= {target}x |")
    names = list(dict.fromkeys(n for values in runs.values() for x in values
                               for n in x["stages"]))
    lines += ["", "Per stage (median seconds):", "",
              "| stage | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(
            f"{statistics.median(x['stages'].get(name, 0.0) for x in values):.1f}"
            for values in runs.values()) + " |")
    lines.append("| outside the stages (pull, push, start) | " + " | ".join(
        f"{statistics.median(x['wall'] - sum(x['stages'].values()) for x in values):.1f}"
        for values in runs.values()) + " |")
    lines.append("| wall (each run) | " + " | ".join(
        ", ".join(f"{x['wall']:.1f}" for x in values) for values in runs.values()) + " |")
    lines.append("| states | " + " | ".join(
        "/".join(sorted({s for x in values for s in x["states"]})) for values in runs.values())
        + " |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "storage.json").write_text(json.dumps(r, indent=2) + "\n")
    (out / "storage.md").write_text(text)


if __name__ == "__main__":
    main()
