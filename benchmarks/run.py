"""`make bench`: our paths against plain Keras, side by side in one run, on real MNIST.

Measures, each in a fresh process so imports and memory are counted honestly:

1. training: plain ``model.fit`` vs our XLA epoch loop (median epoch time,
   samples/s, test BCE, peak RSS), and the compute floor (a measured sgemm
   FLOP rate times the FLOPs of one epoch);
2. whole pipeline against a running local Prefect server: the full default run
   (fresh data and artifacts directories), the cached rerun, and the same
   cached rerun with a temporary server instead. It is compared with run 1's
   plain-Keras process, which after training and testing (timed on its own)
   goes on to do the rest of the pipeline's work in plain calls: baselines,
   probes, t-SNE, figures (``benchmarks.training --analyses``);
3. overheads: ``import tensorflow``, and each stage of the full run.

Prints a table and writes ``artifacts/bench/bench.json`` and ``bench.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ops.local_prefect import api_url, free_port, start_server, stop_process

PROJECT = Path(__file__).resolve().parents[1]
FLOPS_PER_SAMPLE = 250_880  # forward 2*(784*32 + 32*784); backward: dW1, dh, dW2 (no dx)
SAMPLES_PER_EPOCH = 50_000


def run_measured(cmd: list[str], env: dict | None = None, timeout: float = 1800) -> dict:
    """Run ``cmd``; return its stdout, wall seconds and peak RSS (from wait4, this child only)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=PROJECT, env=env or os.environ.copy(), stdout=out,
                                stderr=err, text=True)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                raise TimeoutError(f"{' '.join(cmd)} ran past {timeout} s")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return {"stdout": stdout, "wall": time.perf_counter() - started,
            "peak_rss_mib": usage.ru_maxrss / 1024}


def sgemm_gflops() -> float:
    """Median sgemm rate of TensorFlow on this machine (the kernels training uses)."""
    code = (
        "import os, time, statistics; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'\n"
        "import tensorflow as tf\n"
        "a = tf.random.normal((2048, 2048)); b = tf.random.normal((2048, 2048))\n"
        "f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))\n"
        "f()\n"
        "times = []\n"
        "for _ in range(15):\n"
        "    t = time.perf_counter(); f().numpy(); times.append(time.perf_counter() - t)\n"
        "print(2 * 2048**3 / statistics.median(times) / 1e9)\n")
    return float(run_measured([sys.executable, "-c", code])["stdout"].strip().splitlines()[-1])


def import_seconds(module: str, repeats: int = 3) -> float:
    code = (f"import os, time; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; t=time.perf_counter(); "
            f"import {module}; print(time.perf_counter()-t)")
    return statistics.median(
        float(run_measured([sys.executable, "-c", code])["stdout"].split()[-1])
        for _ in range(repeats))


def stage_seconds(stdout: str) -> dict[str, tuple[str, float]]:
    """Parse the flow summary's ``  stage  ran|cached  N.N s`` lines."""
    stages = {}
    for line in stdout.splitlines():
        parts = line.split()
        if line.startswith("  ") and len(parts) == 4 and parts[3] == "s":
            stages[parts[0]] = (parts[1], float(parts[2]))
    return stages


def pipeline(env: dict, root: Path, source: str, epochs: int) -> dict:
    return run_measured([sys.executable, "-m", "flows.autoencoder", "--source", source,
                         "--epochs", str(epochs), "--data-dir", str(root / "data"),
                         "--artifacts-dir", str(root / "artifacts")], env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description="Side-by-side benchmark on real MNIST.")
    parser.add_argument("--source", default=str(PROJECT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--cached-repeats", type=int, default=3)
    parser.add_argument("--out", default=str(PROJECT / "artifacts" / "bench"))
    args = parser.parse_args()
    results: dict = {"machine": machine(), "epochs": args.epochs}

    print("measuring sgemm rate and import times ...", flush=True)
    results["sgemm_gflops"] = sgemm_gflops()
    results["import_tensorflow_s"] = import_seconds("tensorflow")
    results["import_flow_s"] = import_seconds("flows.autoencoder")

    for path in ("keras", "fast"):
        print(f"training with {path} ({args.epochs} epochs) ...", flush=True)
        run = run_measured([sys.executable, "-m", "benchmarks.training", "--path", path,
                            "--epochs", str(args.epochs), "--raw", args.source,
                            *(["--analyses"] if path == "keras" else [])])
        results[path] = json.loads(run["stdout"].strip().splitlines()[-1]) | {
            "wall": run["wall"], "peak_rss_mib": run["peak_rss_mib"]}

    with tempfile.TemporaryDirectory(prefix="mnist-ae-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "home").mkdir()
        print("starting a local Prefect server ...", flush=True)
        port = free_port()
        server = start_server(port, tmp / "home", tmp / "server.log")
        env = os.environ | {"PREFECT_API_URL": api_url(port), "PREFECT_HOME": str(tmp / "home"),
                            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                            "MNIST_AE_CACHE_DIR": str(tmp / "cache")}
        try:
            print("full pipeline run ...", flush=True)
            full = pipeline(env, tmp, args.source, args.epochs)
            cached = [pipeline(env, tmp, args.source, args.epochs)
                      for _ in range(args.cached_repeats)]
        finally:
            stop_process(server.pid)
        print("cached run with a temporary server ...", flush=True)
        ephemeral_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
        ephemeral = pipeline(ephemeral_env, tmp, args.source, args.epochs)
        shutil.rmtree(tmp / "data", ignore_errors=True)
    results["pipeline_full"] = {"wall": full["wall"], "peak_rss_mib": full["peak_rss_mib"],
                                "stages": stage_seconds(full["stdout"])}
    results["pipeline_cached"] = {
        "wall_median": statistics.median(r["wall"] for r in cached),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in cached),
        "all_cached": all(state == "cached" for r in cached
                          for state, _ in stage_seconds(r["stdout"]).values()),
        "tensorflow_imported": any("TensorFlow: imported" in r["stdout"] for r in cached)}
    results["pipeline_cached_temporary_server"] = {"wall": ephemeral["wall"]}
    report(results, Path(args.out))


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), "unknown CPU")
    return f"{os.cpu_count()} cores, {model}, Python {sys.version.split()[0]}"


def report(r: dict, out: Path) -> None:
    keras, fast = r["keras"], r["fast"]
    k_epoch = statistics.median(keras["epoch_seconds"][1:])  # epoch 1 includes tracing
    f_epoch = statistics.median(fast["epoch_seconds"][1:])
    floor = FLOPS_PER_SAMPLE * SAMPLES_PER_EPOCH / (r["sgemm_gflops"] * 1e9)
    full, cached = r["pipeline_full"], r["pipeline_cached"]
    rows = [
        ("training: plain model.fit, median epoch", f"{k_epoch:.3f} s",
         f"{keras['n_train'] / k_epoch:,.0f} samples/s"),
        ("training: ours, median epoch", f"{f_epoch:.3f} s",
         f"{fast['n_train'] / f_epoch:,.0f} samples/s"),
        ("training: compute floor (sgemm rate x FLOPs)", f"{floor:.3f} s",
         f"sgemm {r['sgemm_gflops']:.0f} GFLOP/s"),
        ("throughput ratio ours / model.fit (target >= 6)", f"{k_epoch / f_epoch:.1f}x", ""),
        ("test BCE after the same epochs: model.fit / ours",
         f"{keras['test_bce']:.4f} / {fast['test_bce']:.4f}",
         f"diff {100 * (fast['test_bce'] / keras['test_bce'] - 1):+.2f}% (target within 1%)"),
        ("epochs run: model.fit / ours", f"{keras['epochs_run']} / {fast['epochs_run']}", ""),
        ("peak RSS of the training script (train, test): model.fit / ours",
         f"{keras['peak_rss_after_test_mib']:.0f} / {fast['peak_rss_after_test_mib']:.0f} MiB", ""),
        ("plain Keras script: import, load, train, test", f"{keras['train_test_seconds']:.1f} s",
         ""),
        ("plain Keras script: the same work as the pipeline", f"{keras['wall']:.1f} s",
         f"+ baselines, probes, t-SNE, figures; peak RSS {keras['peak_rss_mib']:.0f} MiB"),
        ("our full pipeline, fresh dirs, running server", f"{full['wall']:.1f} s",
         f"{full['wall'] / keras['wall']:.2f}x of the plain script doing the same work "
         f"(target <= 0.35); {full['wall'] / keras['train_test_seconds']:.2f}x of its "
         "train + test alone"),
        ("our full pipeline, peak RSS (target < 2048)", f"{full['peak_rss_mib']:.0f} MiB", ""),
        ("cached rerun, running server (median)", f"{cached['wall_median']:.1f} s",
         f"all cached: {cached['all_cached']}, TensorFlow imported: "
         f"{cached['tensorflow_imported']} (target <= 10 s)"),
        ("cached rerun, temporary server", f"{r['pipeline_cached_temporary_server']['wall']:.1f} s",
         "difference = Prefect temporary-server start-up"),
        ("import tensorflow", f"{r['import_tensorflow_s']:.1f} s", ""),
        ("import flows.autoencoder (prefect, pandas, pyarrow, ...)",
         f"{r['import_flow_s']:.1f} s", ""),
        *[(f"full run stage: {stage}", f"{sec:.1f} s", state)
          for stage, (state, sec) in full["stages"].items()],
        ("full run outside the stages (interpreter, imports, Prefect flow run)",
         f"{full['wall'] - sum(sec for _, sec in full['stages'].values()):.1f} s",
         "wall time minus the stages' sum"),
    ]
    width = max(len(row[0]) for row in rows)
    print(f"\n{r['machine']}; {r['epochs']} epochs\n")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>16}  {note}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(r, indent=2) + "\n")
    with open(out / "bench.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("measure", "value", "note"), *rows])
    print(f"\nSaved {out / 'bench.json'} and {out / 'bench.csv'}")


if __name__ == "__main__":
    main()
