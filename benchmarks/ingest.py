"""`python -m benchmarks.ingest`: ingesting 1,000,000 images in one batch, as Parquet and as IDX.

1. An input: ``--images`` MNIST-like images built from real MNIST (each training
   image shifted by one of 24 small offsets, so every image is new), plus 1% of
   MNIST's test images (duplicates of the base dataset) and 1% repeats within the
   batch, shuffled, with their labels. Written once (kept under ``--scratch`` if
   given) in two of the input formats ingest takes (``python -m
   mnist_autoencoder.data.inputs``):
   - Parquet: a ``pixels`` column, a list of 784 uint8 per row, and a ``label``
     column, one row group, as ``DataFrame.to_parquet`` or ``pq.write_table`` write it;
   - IDX: ``train-images-idx3-ubyte.gz`` and ``train-labels-idx1-ubyte.gz``.
2. Each measurement in a fresh process and a fresh data directory, doing what the
   ingest task does (``tasks/ingest.py``): the base shard from the raw MNIST files
   (``preprocessing.base_shard``), the input files' hashes for the manifest, and
   ``ingestion.ingest(labelled_chunks(open_input(...)))``. Wall time of the whole
   child and of each step; peak RSS of the child (``wait4``'s ``ru_maxrss``).
   ``--repeats`` > 1 reports medians.

Targets (issue 20): under 60 s and 2 GiB per format. Prints a table; exits 1 if a
target is missed. Writes ``<scratch>/ingest.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
MNIST = PROJECT.parent / "shared" / "data" / "mnist"
DATASET = "mnist"
TARGET_S = 60.0
TARGET_RSS_MIB = 2048.0
WRITE_ROWS = 65_536
SHIFTS = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if (dy, dx) != (0, 0)]


def build_batch(mnist: Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """``n`` labelled uint8 images (n, 28, 28): shifted MNIST training images, 1% of the
    MNIST test set (already in the base dataset) and 1% repeats, shuffled."""
    from mnist_autoencoder.data.idx import load_images_and_labels

    train, train_labels = load_images_and_labels(mnist / "train-images-idx3-ubyte.gz",
                                                 mnist / "train-labels-idx1-ubyte.gz")
    test, test_labels = load_images_and_labels(mnist / "t10k-images-idx3-ubyte.gz",
                                               mnist / "t10k-labels-idx1-ubyte.gz")
    n_base, n_repeat = n // 100, n // 100
    n_shifted = n - n_base - n_repeat
    if n_shifted > len(SHIFTS) * len(train):
        raise SystemExit(f"--images {n}: more than {len(SHIFTS)} shifts of the "
                         f"{len(train)} training images give")
    images = np.empty((n, 28, 28), np.uint8)
    labels = np.empty(n, np.uint8)
    for start in range(0, n_shifted, len(train)):
        count = min(len(train), n_shifted - start)
        dy, dx = SHIFTS[start // len(train)]
        images[start:start + count] = np.roll(train[:count], (dy, dx), axis=(1, 2))
        labels[start:start + count] = train_labels[:count]
    rng = np.random.default_rng(seed)
    base_rows = rng.choice(len(test), n_base, replace=n_base > len(test))
    images[n_shifted:n_shifted + n_base] = test[base_rows]
    labels[n_shifted:n_shifted + n_base] = test_labels[base_rows]
    repeat_rows = rng.choice(n_shifted, n_repeat, replace=False)
    images[n_shifted + n_base:] = images[repeat_rows]
    labels[n_shifted + n_base:] = labels[repeat_rows]
    order = rng.permutation(n)
    return images[order], labels[order], {"images": n, "shifted": n_shifted,
                                          "base_duplicates": n_base, "repeats": n_repeat}


def idx_header(shape: tuple[int, ...]) -> bytes:
    return bytes([0, 0, 8, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)


def write_inputs(folder: Path, images: np.ndarray, labels: np.ndarray) -> dict[str, Path]:
    """The batch as one Parquet file and one IDX pair (gzip level 6), in ``folder``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    idx = folder / "idx"
    idx.mkdir(exist_ok=True)
    with gzip.open(idx / "train-images-idx3-ubyte.gz", "wb", compresslevel=6) as out:
        out.write(idx_header(images.shape))
        for start in range(0, len(images), WRITE_ROWS):
            out.write(np.ascontiguousarray(images[start:start + WRITE_ROWS]).data)
    with gzip.open(idx / "train-labels-idx1-ubyte.gz", "wb", compresslevel=6) as out:
        out.write(idx_header(labels.shape) + labels.tobytes())
    n = len(images)
    offsets = pa.array(np.arange(0, (n + 1) * 784, 784, dtype=np.int32))
    pixels = pa.ListArray.from_arrays(offsets, pa.array(images.reshape(-1)))
    table = pa.table({"pixels": pixels, "label": pa.array(labels.astype(np.int64))})
    pq.write_table(table, folder / "batch.parquet", row_group_size=n)
    return {"parquet": folder / "batch.parquet", "idx": idx}


def child(fmt: str, location: str, data_dir: str, mnist: str) -> None:
    """One measurement, in this fresh process: what ``tasks/ingest.py`` does, step by step."""
    from mnist_autoencoder.data import ingestion
    from mnist_autoencoder.data.catalog import get_dataset
    from mnist_autoencoder.data.inputs import open_input
    from mnist_autoencoder.data.preprocessing import base_shard
    from mnist_autoencoder.storage import sha256_file

    spec = get_dataset(DATASET)
    raw = Path(mnist)
    begin = time.perf_counter()
    base, _, _ = base_shard(Path(data_dir), DATASET, raw, spec.file_names(),
                            {name: sha256_file(raw / name)
                             for name in spec.file_names().values()})
    based = time.perf_counter()
    found = open_input(location)
    source_files = {p.name: sha256_file(p) for p in found.files}
    hashed = time.perf_counter()
    result = ingestion.ingest(Path(data_dir), DATASET, ingestion.labelled_chunks(found), [base],
                              location, source_files)
    done = time.perf_counter()
    status = Path("/proc/self/status")
    hwm = next((int(line.split()[1]) / 1024 for line in status.read_text().splitlines()
                if line.startswith("VmHWM:")), None) if status.exists() else None
    print(json.dumps({"format": fmt, "base_shard_s": based - begin, "vm_hwm_mib": hwm,
                      "source_hash_s": hashed - based, "ingest_s": done - hashed,
                      "new": result.new, "duplicates": result.duplicates,
                      "offered": result.offered}), flush=True)


def measure(fmt: str, location: Path, scratch: Path, mnist: Path) -> dict:
    """Run ``child`` in a fresh process on a fresh data directory: its figures, wall, peak RSS."""
    data_dir = scratch / f"data-{fmt}"
    shutil.rmtree(data_dir, ignore_errors=True)
    command = [sys.executable, "-m", "benchmarks.ingest", "--child", fmt, str(location),
               str(data_dir), str(mnist)]
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.PIPE, text=True,
                            env=os.environ | {"PYTHONPATH": str(PROJECT)})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out = proc.stdout.read()
    proc.stdout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{fmt}: the child failed (exit {proc.returncode})")
    figures = json.loads(out.strip().splitlines()[-1])
    stored = sum(p.stat().st_size for p in (data_dir / "snapshots").rglob("*") if p.is_file())
    shutil.rmtree(data_dir, ignore_errors=True)
    return figures | {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024,
                      "stored_mib": stored / 2**20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--formats", default="parquet,idx")
    parser.add_argument("--mnist", type=Path, default=MNIST, help="the four MNIST .gz files")
    parser.add_argument("--scratch", type=Path, default=None,
                        help="keep the inputs here and reuse them (default: a temporary folder)")
    parser.add_argument("--child", nargs=4, metavar=("FORMAT", "INPUT", "DATA", "MNIST"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--make", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    if args.make:
        images, labels, composition = build_batch(args.mnist, args.images)
        write_inputs(args.make, images, labels)
        (args.make / "made.json").write_text(json.dumps(composition))
        return 0
    if not (args.mnist / "train-images-idx3-ubyte.gz").is_file():
        raise SystemExit(f"{args.mnist}: no MNIST files; give --mnist DIR")
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    inputs_dir = scratch / f"inputs-{args.images}"
    try:
        made = inputs_dir / "made.json"
        if not made.is_file():  # in a process of its own, so this one stays small
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "benchmarks.ingest", "--make",
                            str(inputs_dir), "--images", str(args.images), "--mnist",
                            str(args.mnist)], cwd=PROJECT, check=True,
                           env=os.environ | {"PYTHONPATH": str(PROJECT)})
            print(f"inputs written in {time.perf_counter() - started:.0f} s: "
                  f"{made.read_text()}", flush=True)
        composition = json.loads(made.read_text())
        locations = {"parquet": inputs_dir / "batch.parquet", "idx": inputs_dir / "idx"}
        results, ok = {}, True
        print(f"{'format':8} {'input MiB':>9} {'wall s':>7} {'ingest s':>8} {'base s':>6} "
              f"{'hash s':>6} {'peak RSS MiB':>12} {'stored MiB':>10} {'new':>8} {'dups':>6}")
        for fmt in args.formats.split(","):
            runs = [measure(fmt, locations[fmt], scratch, args.mnist)
                    for _ in range(args.repeats)]
            median = {key: statistics.median([r[key] for r in runs]) for key in runs[0]
                      if isinstance(runs[0][key], (int, float))} | {"runs": runs}
            size = sum(p.stat().st_size for p in ([locations[fmt]] if locations[fmt].is_file()
                                                  else locations[fmt].iterdir()))
            results[fmt] = median | {"input_mib": size / 2**20}
            met = median["wall_s"] < TARGET_S and median["peak_rss_mib"] < TARGET_RSS_MIB
            ok &= met
            print(f"{fmt:8} {size / 2**20:9.0f} {median['wall_s']:7.1f} "
                  f"{median['ingest_s']:8.1f} {median['base_shard_s']:6.1f} "
                  f"{median['source_hash_s']:6.1f} {median['peak_rss_mib']:12.0f} "
                  f"{median['stored_mib']:10.0f} {median['new']:8.0f} {median['duplicates']:6.0f}"
                  f"  {'ok' if met else 'MISSED'} (< {TARGET_S:.0f} s, < {TARGET_RSS_MIB:.0f} MiB)")
        (scratch / "ingest.json").write_text(json.dumps(
            {"composition": composition, "repeats": args.repeats, "results": results,
             "targets": {"wall_s": TARGET_S, "peak_rss_mib": TARGET_RSS_MIB}}, indent=2) + "\n")
        return 0 if ok else 1
    finally:
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
