"""`python -m benchmarks.score`: batch scoring side by side with plain Keras, on tiled real MNIST.

1. A model: the seed (shallow, 32-dimensional code) trained for 10 epochs on real
   MNIST in this process and calibrated, saved where ``load_scorer`` finds it.
   Ten epochs are enough for timing: the cost of scoring depends on the shapes,
   not on how well the weights fit.
2. An input: the 70,000 MNIST images tiled to ``--images``, written once as one
   uncompressed IDX file (with its labels) and as a ``.npy`` array, reused later.
3. Each measurement in a fresh process (so its peak RSS is its own), with the
   model loaded and warmed up before the clock starts, ``--repeats`` times:
   a. ours, end to end: ``open_input`` -> ``score_chunks`` -> ``scores.parquet``
      (zstd), exactly as ``tasks/score.py`` writes it (one table behind, on a second thread);
   b. Keras ``model.predict`` of the autoencoder, reconstructions only, reading
      the ``.npy`` through mmap chunk by chunk;
   c. the XLA error function alone, on chunks already in memory.
4. With ``--flow`` (the default): the whole scoring flow (``python -m flows.score``)
   against a champion trained once in the scratch directory: wall time, peak RSS.

Prints a table and writes ``<out>/score.json`` and ``<out>/score.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mnist_autoencoder.storage import atomic_path, write_bytes_atomic, write_json_atomic

PROJECT = Path(__file__).resolve().parents[1]
SCRATCH = Path("/tmp/score_bench")
SIDE = 28
N_PIXELS = SIDE * SIDE
CHUNK = 8192  # the chunk the pipeline scores; also model.predict's batch size
PREDICT_CHUNKS = (8192, 65536)  # images per model.predict call: the pipeline's chunk, and 8x
RESIDENT = 16 * CHUNK  # in-memory images the XLA-only measurement cycles through
FPR = 0.01
TARGET_RATE = 150_000
TARGET_RATIO = 1.5
TARGET_RSS_MIB = 1536
SCORE_BEFORE = "max_z(bce,kl)"  # the default score until typicality: measured side by side
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
TRAINING = {"latent_dim": 32, "epochs": 10, "batch_size": 256, "learning_rate": 1e-3,
            "patience": 5, "seed": 0}


# ---------------------------------------------------------------- the model and the input


def load_mnist(source: Path) -> tuple[np.ndarray, ...]:
    """Train images, train labels, test images, test labels of the raw MNIST files."""
    from mnist_autoencoder.data.idx import load_images_and_labels

    train_images, train_labels, test_images, test_labels = (source / f for f in MNIST_FILES)
    return (*load_images_and_labels(train_images, train_labels),
            *load_images_and_labels(test_images, test_labels))


def prepare_model(source: Path, model_dir: Path) -> dict[str, Any]:
    """Train and calibrate the seed model on the raw MNIST files in ``source`` (split as
    preprocess splits them) into ``model_dir``, or reuse the one there."""
    from mnist_autoencoder.paths import CALIBRATION_FILE, MODEL_FILES

    info_path = model_dir / "training.json"
    if all((model_dir / name).is_file() for name in (*MODEL_FILES, CALIBRATION_FILE)) \
            and info_path.is_file():
        return json.loads(info_path.read_text()) | {"reused": True}
    from benchmarks.common import build_splits
    from mnist_autoencoder.models.training import train_model
    from mnist_autoencoder.scoring.scores import calibrate, make_error_function
    from mnist_autoencoder.storage import write_outputs

    splits = build_splits(source, val_size=10_000, seed=0)
    started = time.perf_counter()
    fitted = train_model("shallow", splits["train"].x, splits["val"].x, log=print,
                         **TRAINING)
    calibration = calibrate(make_error_function(fitted.encoder, fitted.decoder), splits["val"].x)
    info = {**TRAINING, **fitted.summary(TRAINING["epochs"]),
            "seconds": time.perf_counter() - started, "n_train": len(splits["train"].x)}
    write_outputs(model_dir, {**fitted.models, CALIBRATION_FILE: calibration.to_json(),
                              "training.json": info})
    return info | {"reused": False}


def write_tiled(path: Path, header: bytes, source: np.ndarray, n: int) -> None:
    """Write ``header``, then ``source`` repeated until ``n`` records, one copy at a time."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(header)
        for start in range(0, n, len(source)):
            handle.write(np.ascontiguousarray(source[:n - start]).data)


def idx_header(shape: tuple[int, ...]) -> bytes:
    """The IDX header of unsigned bytes of ``shape``: 0, 0, 8, ndim, big-endian sizes."""
    return bytes([0, 0, 8, len(shape)]) + np.asarray(shape, ">u4").tobytes()


def npy_header(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def prepare_input(mnist: tuple[np.ndarray, ...], n: int, directory: Path,
                  npy: Path) -> dict[str, Any]:
    """The tiled images as IDX (images and labels) in ``directory`` and as ``npy``."""
    images = np.concatenate([mnist[0], mnist[2]])
    labels = np.concatenate([mnist[1], mnist[3]])
    shape = (n, SIDE, SIDE)
    files = [(directory / "t10k-images-idx3-ubyte", idx_header(shape), images),
             (directory / "t10k-labels-idx1-ubyte", idx_header((n,)), labels),
             (npy, npy_header(shape), images)]
    written = []
    for path, header, source in files:
        size = len(header) + n * source[0].size
        # a file of the right size was written by this function: the content is determined by n
        if not (path.is_file() and path.stat().st_size == size):
            write_tiled(path, header, source, n)
            written.append(path.name)
    return {"images": n, "unique": len(images), "idx_mib": (16 + n * N_PIXELS) / 2**20,
            "written": written}


# ---------------------------------------------------------------- measurements (children)


def vm_hwm_mib(pid: int | str = "self") -> float:
    """Peak RSS of a process's current address space (VmHWM; 0 once the process is gone).

    Not ``ru_maxrss``: Linux carries a parent's RSS into its child's ``ru_maxrss``
    across fork and exec, so every child of this (large) parent would report at least
    the parent's size.
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mib() -> float:
    """This process's peak RSS; ``ru_maxrss`` where there is no /proc."""
    return vm_hwm_mib() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def elapsed(start: tuple[float, float]) -> dict[str, float]:
    """Wall and CPU seconds since ``clock()`` (CPU / wall: how many cores it kept busy)."""
    return {"seconds": time.perf_counter() - start[0],
            "cpu_seconds": time.process_time() - start[1]}


def measure_ours(model_dir: Path, input_dir: Path, scores: Path,
                 name: str | None = None) -> dict[str, Any]:
    """End to end as ``tasks/score.py``: read, score, summarise, write Parquet (zstd)."""
    from mnist_autoencoder.data.inputs import open_input
    from mnist_autoencoder.scoring.batch import new_summary, score_chunks
    from mnist_autoencoder.scoring.scores import load_scorer
    from mnist_autoencoder.storage import write_parquet_stream

    scorer = load_scorer(model_dir)
    chunks = open_input(input_dir).iter_chunks()
    next(score_chunks(scorer, iter([next(chunks)]), new_summary(scorer, FPR, name),
                      name))  # warm-up
    chunks.close()
    started = clock()
    summary = new_summary(scorer, FPR, name)
    # as tasks/score.py writes: one table behind, on a second thread, dictionaries for the
    # source and label columns only
    write_parquet_stream(scores, score_chunks(scorer, open_input(input_dir).iter_chunks(),
                                              summary, name), dictionary=("source", "label"))
    return elapsed(started) | {"images": summary.count, "flagged": summary.flagged,
                               "scores_mib": scores.stat().st_size / 2**20}


def measure_predict(model_dir: Path, npy: Path, n: int, chunk: int) -> dict[str, Any]:
    """Keras ``predict`` of the autoencoder, batches of ``CHUNK``, on mmap'd chunks of ``chunk``."""
    from mnist_autoencoder.models.inference import load_model

    model = load_model(model_dir, "autoencoder.keras")
    images = np.load(npy, mmap_mode="r")

    def pixels(start: int) -> np.ndarray:
        part = images[start:min(start + chunk, n)]
        return part.reshape(len(part), N_PIXELS).astype(np.float32) / np.float32(255)

    model.predict(pixels(0), batch_size=CHUNK, verbose=0)  # warm-up: traces the function
    started = clock()
    for start in range(0, n, chunk):
        model.predict(pixels(start), batch_size=CHUNK, verbose=0)
    return elapsed(started) | {"images": n, "chunk": chunk}


def measure_xla(model_dir: Path, npy: Path, n: int) -> dict[str, Any]:
    """The XLA error function alone, cycling through float32 chunks already in memory."""
    from mnist_autoencoder.data.pixels import as_unit_pixels
    from mnist_autoencoder.models.inference import load_model
    from mnist_autoencoder.scoring.scores import make_error_function

    errors = make_error_function(load_model(model_dir, "encoder.keras"),
                                 load_model(model_dir, "decoder.keras"))
    images = np.load(npy, mmap_mode="r")
    resident = [as_unit_pixels(images[s:s + CHUNK].reshape(-1, N_PIXELS), str(npy))
                for s in range(0, min(n, RESIDENT), CHUNK)]
    errors(resident[0])  # warm-up: compiles
    started = clock()
    done = 0
    for i in range(-(-n // CHUNK)):
        part = resident[i % len(resident)][:n - done]
        errors(part)
        done += len(part)
    return elapsed(started) | {"images": done}


def run_child(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; print its result as one JSON line."""
    model, n = Path(args.model), args.images
    if args.child == "ours":
        result = measure_ours(model, Path(args.input), Path(args.scores),
                              args.score_name or None)
    elif args.child == "predict":
        result = measure_predict(model, Path(args.input), n, args.chunk)
    else:
        result = measure_xla(model, Path(args.input), n)
    result["rate"] = result["images"] / result["seconds"]
    print(json.dumps(result | {"peak_rss_mib": peak_rss_mib()}), flush=True)


# ---------------------------------------------------------------- the parent


def child_env() -> dict[str, str]:
    return os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def child(kind: str, model_dir: Path, source: Path, n: int, **extra: Any) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; return its JSON line."""
    cmd = [sys.executable, "-m", "benchmarks.score", "--child", kind, "--model", str(model_dir),
           "--input", str(source), "--images", str(n)]
    cmd += [item for key, value in extra.items() for item in (f"--{key}", str(value))]
    done = subprocess.run(cmd, cwd=PROJECT, env=child_env(), capture_output=True, text=True,
                          timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def repeated(label: str, repeats: int, measure) -> dict[str, Any]:
    """``measure()`` ``repeats`` times; the median rate and the largest peak RSS."""
    runs = []
    for i in range(repeats):
        runs.append(measure() | {"load_1min": os.getloadavg()[0]})
        run = runs[-1]
        print(f"  {label} run {i + 1}/{repeats}: {run['rate']:,.0f} images/s, "
              f"{run['cpu_seconds'] / run['seconds']:.2f} cores busy, "
              f"peak RSS {run['peak_rss_mib']:.0f} MiB, load average {run['load_1min']:.1f}",
              flush=True)
    rates = [r["rate"] for r in runs]
    return {"rate": statistics.median(rates), "min": min(rates), "max": max(rates),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "runs": runs}


def measure_all(model_dir: Path, input_dir: Path, npy: Path, n: int,
                repeats: int) -> dict[str, Any]:
    """Ours end to end, model.predict (each chunk size), XLA errors alone."""
    scores = SCRATCH / "scores.parquet"

    def ours(name: str = "") -> dict[str, Any]:
        try:
            return child("ours", model_dir, input_dir, n, scores=scores, **{"score-name": name})
        finally:
            scores.unlink(missing_ok=True)  # ~100 MB per run; only its size matters here

    results = {"ours": repeated("ours end to end", repeats, ours),
               "ours_before": repeated(f"ours end to end, {SCORE_BEFORE}", repeats,
                                       lambda: ours(SCORE_BEFORE))}
    results["predict"] = {
        str(chunk): repeated(f"model.predict, chunks of {chunk}", repeats,
                             lambda chunk=chunk: child("predict", model_dir, npy, n, chunk=chunk))
        for chunk in PREDICT_CHUNKS}
    results["xla"] = repeated("XLA errors only", repeats,
                              lambda: child("xla", model_dir, npy, n))
    best = max(results["predict"], key=lambda c: results["predict"][c]["rate"])
    results["predict_best"] = best
    results["ratio"] = results["ours"]["rate"] / results["predict"][best]["rate"]
    return results


def flow_env() -> dict[str, str]:
    """The flows' environment: scratch Prefect home and cache, no analytics."""
    env = child_env() | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                         "MNIST_AE_CACHE_DIR": str(SCRATCH / "cache")}
    if "PREFECT_API_URL" not in env:  # a temporary server keeps its database in PREFECT_HOME
        env["PREFECT_HOME"] = str(SCRATCH / "prefect-home")
    return env


def ensure_champion(source: Path, env: dict[str, str]) -> str:
    """Train and register an mnist champion in the scratch artifacts unless one is there."""
    from mnist_autoencoder.lifecycle.registry import RegistryError, scoring_model_dir
    from mnist_autoencoder.paths import models_dir

    try:
        scoring_model_dir(models_dir(SCRATCH / "artifacts"), "mnist")
        return "reused"
    except RegistryError:
        pass
    print("training a champion for the flow (2 epochs on 5,000 images) ...", flush=True)
    subprocess.run([sys.executable, "-m", "flows.autoencoder", "--source", str(source),
                    "--epochs", "2", "--train-subset", "5000",
                    "--data-dir", str(SCRATCH / "data"),
                    "--artifacts-dir", str(SCRATCH / "artifacts")],
                   cwd=PROJECT, env=env, check=True, capture_output=True, timeout=1800)
    return "trained"


def tree_rss(pid: int) -> int:
    """Bytes resident in ``pid`` and all its descendants now (0 once it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_polled(cmd: list[str], env: dict[str, str], timeout: float = 3600) -> dict[str, Any]:
    """Run ``cmd``; its wall time, stdout, and peak RSS, sampled every 0.1 s: of the process
    itself (VmHWM, a high-water mark, so nothing between samples is missed but the last
    0.1 s) and of its process tree in total (a temporary Prefect server is a child)."""
    started = time.perf_counter()
    own_peak, tree_peak = 0.0, 0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=PROJECT, env=env, stdout=out, stderr=err, text=True)
        while proc.poll() is None:
            if time.perf_counter() - started > timeout:
                proc.kill()
                raise TimeoutError(f"{' '.join(cmd)} ran past {timeout} s")
            own_peak = max(own_peak, vm_hwm_mib(proc.pid))
            tree_peak = max(tree_peak, tree_rss(proc.pid))
            time.sleep(0.1)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return {"wall": time.perf_counter() - started, "stdout": stdout,
            "peak_rss_mib": own_peak, "tree_peak_rss_mib": tree_peak / 2**20}


def measure_flow(source: Path, input_dir: Path) -> dict[str, Any]:
    """The scoring flow on the whole input, its score stage not cached."""
    env = flow_env()
    champion = ensure_champion(source, env)
    # a fresh cache makes the score stage run: same input and champion would be a cached no-op
    env["MNIST_AE_CACHE_DIR"] = str(SCRATCH / "cache-score")
    shutil.rmtree(SCRATCH / "cache-score", ignore_errors=True)
    print("running the scoring flow ...", flush=True)
    run = run_polled([sys.executable, "-m", "flows.score", "--input", str(input_dir),
                      "--dataset", "mnist", "--data-dir", str(SCRATCH / "data"),
                      "--artifacts-dir", str(SCRATCH / "artifacts")], env)
    lines = run.pop("stdout").splitlines()
    images = next((line.split()[1].rstrip(",") for line in lines if line.startswith("Images:")),
                  "?")
    stages = {parts[0]: (parts[1], float(parts[2])) for parts in map(str.split, lines)
              if len(parts) == 4 and parts[3] == "s"}
    return run | {"champion": champion, "images_printed": images, "stages": stages,
                  "summary": [line for line in lines if line.startswith(("Images:", "Scores:"))]}


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), "unknown CPU")
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model,
            "memory_gib": os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30,
            "python": sys.version.split()[0]}


# ---------------------------------------------------------------- the report


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(measure, value, note) rows of the table."""
    ours, xla, predict = r["ours"], r["xla"], r["predict"]
    best = predict[r["predict_best"]]
    each = ", ".join(f"{c}: {v['rate']:,.0f} ({_spread(v)})" for c, v in predict.items())
    model = r["model"]
    table = [
        ("images", f"{r['input']['images']:,}",
         f"{r['input']['unique']:,} MNIST images tiled; one uncompressed IDX file "
         f"({r['input']['idx_mib']:.0f} MiB) + labels, and a .npy for model.predict"),
        ("model", f"shallow, code {model['latent_dim']}",
         f"trained {model['epochs_run']} epochs in this process (val loss "
         f"{model['final_val_loss']:.4f}): enough for timing, which depends on shapes only"),
        ("ours end to end (images/s)", f"{ours['rate']:,.0f}",
         f"median of {r['repeats']} ({_spread(ours)}); IDX -> score_chunks -> Parquet zstd; "
         f"target >= {TARGET_RATE:,} on 2 cores: {_ok(ours['rate'] >= TARGET_RATE)}"),
        ("ours end to end, peak RSS", f"{ours['peak_rss_mib']:.0f} MiB",
         "largest of the runs (VmHWM of a fresh process)"),
        (f"ours end to end with {SCORE_BEFORE}, the score before (images/s)",
         f"{r['ours_before']['rate']:,.0f}",
         f"median ({_spread(r['ours_before'])}); peak RSS "
         f"{r['ours_before']['peak_rss_mib']:.0f} MiB; the default costs "
         f"{1 - ours['rate'] / r['ours_before']['rate']:.0%} of it"),
        ("model.predict reconstructions only (images/s)", f"{best['rate']:,.0f}",
         f"median; batch {CHUNK}, best of predict calls on mmap'd chunks of ({each})"),
        ("model.predict, peak RSS", f"{best['peak_rss_mib']:.0f} MiB",
         f"chunks of {r['predict_best']}"),
        ("XLA errors only (images/s)", f"{xla['rate']:,.0f}",
         f"median ({_spread(xla)}); make_error_function on float32 chunks of {CHUNK} in memory; "
         f"peak RSS {xla['peak_rss_mib']:.0f} MiB"),
        ("ratio ours / model.predict", f"{r['ratio']:.2f}x",
         f"target >= {TARGET_RATIO}: {_ok(r['ratio'] >= TARGET_RATIO)}"),
    ]
    if r.get("flow"):
        flow = r["flow"]
        stages = ", ".join(f"{k} {state} {sec:.1f} s" for k, (state, sec) in flow["stages"].items())
        table += [
            ("flow wall time", f"{flow['wall']:.1f} s",
             f"python -m flows.score; printed {flow['images_printed']} images; {stages}"),
            ("flow peak RSS", f"{flow['peak_rss_mib']:.0f} MiB",
             f"the flow process (VmHWM); target < {TARGET_RSS_MIB}: "
             f"{_ok(flow['peak_rss_mib'] < TARGET_RSS_MIB)}; whole process tree incl. "
             f"any temporary Prefect server: {flow['tree_peak_rss_mib']:.0f} MiB"),
        ]
    if r.get("flow_error"):
        table.append(("flow", "failed", r["flow_error"].splitlines()[-1][:200]))
    m = r["machine"]
    loads = [run["load_1min"] for key in ("ours", "xla") for run in r[key]["runs"]]
    loads += [run["load_1min"] for v in predict.values() for run in v["runs"]]
    table.append(("machine", f"{m['nproc']} cores",
                  f"{m['cpu']}, {m['memory_gib']:.0f} GiB, Python {m['python']}; 1-minute load "
                  f"average after the runs {min(loads):.1f}-{max(loads):.1f} (above "
                  f"{m['nproc']}: other jobs shared the cores)"))
    return table


def _spread(measure: dict[str, Any]) -> str:
    return f"runs {measure['min']:,.0f}-{measure['max']:,.0f}"


def _ok(passed: bool) -> str:
    return "met" if passed else "MISSED"


def markdown(table: list[tuple[str, str, str]]) -> str:
    lines = ["| measure | value | note |", "|---|---:|---|"]
    return "\n".join(lines + [f"| {a} | {b} | {c} |" for a, b, c in table]) + "\n"


def report(results: dict[str, Any], out: Path) -> None:
    """Print the table; write score.json and score.md into ``out``, each atomically."""
    text = markdown(rows(results))
    print("\n" + text)
    write_json_atomic(out / "score.json", results)
    write_bytes_atomic(out / "score.md", text.encode())
    print(f"Saved {out / 'score.json'} and {out / 'score.md'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--mnist", default="../shared/data/mnist",
                        help="the four raw MNIST .gz files (relative to the project)")
    parser.add_argument("--out", default="artifacts/bench", help="relative to the project")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flow", action=argparse.BooleanOptionalAction, default=True,
                        help="also run python -m flows.score on the input (wall time, peak RSS)")
    # one measurement in a fresh process (the parent runs these)
    for name in ("--child", "--model", "--input", "--scores"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, default=CHUNK, help=argparse.SUPPRESS)
    parser.add_argument("--score-name", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return
    source = (PROJECT / args.mnist).resolve()
    out = (PROJECT / args.out).resolve()
    input_dir, npy, model_dir = SCRATCH / "input", SCRATCH / "images.npy", SCRATCH / "model"
    results: dict[str, Any] = {"machine": machine(), "repeats": args.repeats}
    print(f"reading MNIST from {source} ...", flush=True)
    mnist = load_mnist(source)
    print("building the input (written once, reused) ...", flush=True)
    results["input"] = prepare_input(mnist, args.images, input_dir, npy)
    del mnist
    print("training and calibrating the seed model (reused when present) ...", flush=True)
    results["model"] = prepare_model(source, model_dir)
    results |= measure_all(model_dir, input_dir, npy, args.images, args.repeats)
    if args.flow:
        try:
            results["flow"] = measure_flow(source, input_dir)
        except Exception as exc:  # noqa: BLE001 - the other measurements still get reported
            results["flow_error"] = f"{type(exc).__name__}: {str(exc).strip()[-500:]}"
            print(f"the flow measurement failed: {results['flow_error']}", flush=True)
    report(results, out)


if __name__ == "__main__":
    main()
