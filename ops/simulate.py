"""Watch the growing-data loop on one machine: cut MNIST into a base and batches, ingest them.

    python -m ops.simulate [--source ../shared/data/mnist] [--base 40000] [--batches 3]
                           [--batch-size 5000] [--ingest] [--out data/simulate] [--data-dir data]

Writes ``data/simulate/``: the base (the first ``--base`` training images and the
whole test set) as IDX files, declared in ``data/catalog.json`` as dataset
``mnist_sim``; ``batches/batch-NN/``, the next training images in batches of
``--batch-size`` (IDX pairs); ``shifted/{rotated,noisy,inverted}/``, held-out digits
corrupted (``mnist_autoencoder.evaluation.corruptions``) for the drift gate. With
``--ingest`` it then ingests the batches one after the other, as ``make ingest``
would; against a running server (``make server deploy worker``) each new snapshot
triggers the ``simulated-retrain`` deployment. It prints every command it stands for.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np

from mnist_autoencoder.data.catalog import (
    IDX_NAMES,
    ROLES,
    DatasetSpec,
    catalog_file,
    declare,
    get_dataset,
)
from mnist_autoencoder.data.download import download_dataset
from mnist_autoencoder.data.idx import load_images_and_labels
from mnist_autoencoder.evaluation.corruptions import add_noise, invert, rotate
from mnist_autoencoder.paths import PROJECT_ROOT, location, raw_dir
from mnist_autoencoder.storage import write_bytes_atomic

DATASET = "mnist_sim"


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def write_pair(directory: Path, images: np.ndarray, labels: np.ndarray, stem: str) -> None:
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        write_bytes_atomic(directory / f"{stem}-{kind}-ubyte.gz",
                           gzip.compress(idx_bytes(array), mtime=0))


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(x * 255).astype(np.uint8).reshape(-1, 28, 28)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(PROJECT_ROOT.parent / "shared/data/mnist"))
    parser.add_argument("--base", type=int, default=40_000)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--ingest", action="store_true", help="ingest the batches too")
    parser.add_argument("--out", default=None, help="where the base, the batches and the "
                        "shifted batches go (default: simulate/ in the data folder)")
    parser.add_argument("--data-dir", default=str(PROJECT_ROOT / "data"),
                        help="the pipeline's data folder (MNIST is verified into its raw/)")
    args = parser.parse_args()
    if args.base + args.batches * args.batch_size + 3_000 > 60_000:
        parser.error("--base + --batches x --batch-size must leave 3,000 of MNIST's 60,000 "
                     "training images for the shifted batches")
    data_dir = Path(args.data_dir).resolve()
    out = Path(args.out).resolve() if args.out else location("simulate", data_dir)
    raw = raw_dir(data_dir, "mnist")
    download_dataset("mnist", args.source, raw, log=lambda _: None)
    names = get_dataset("mnist").file_names()
    train, train_labels = load_images_and_labels(raw / names["train_images"],
                                                 raw / names["train_labels"])
    test, test_labels = load_images_and_labels(raw / names["test_images"],
                                               raw / names["test_labels"])
    base = out / "base"
    write_pair(base, train[:args.base], train_labels[:args.base], "train")
    write_pair(base, test, test_labels, "t10k")
    files = {role: (IDX_NAMES[role], hashlib.sha256(gzip.decompress(
        (base / IDX_NAMES[role]).read_bytes())).hexdigest()) for role in ROLES}
    declare(DATASET, DatasetSpec(files, (str(base),), args.base, len(test)))  # its own mirror
    print(f"Base: {args.base} training and {len(test)} test images in {base}, "
          f"declared as dataset {DATASET} in {catalog_file()}")
    batch_dirs = []
    for k in range(args.batches):
        start = args.base + k * args.batch_size
        directory = out / "batches" / f"batch-{k + 1:02d}"
        write_pair(directory, train[start:start + args.batch_size],
                   train_labels[start:start + args.batch_size], "new")
        batch_dirs.append(directory)
    held = slice(60_000 - 3_000, 60_000)
    x = train[held].reshape(3_000, -1).astype(np.float32) / 255
    rng = np.random.default_rng(0)
    for name, shifted in (("rotated", rotate(x[:1000], 30)),
                          ("noisy", add_noise(x[1000:2000], 0.3, rng)),
                          ("inverted", invert(x[2000:]))):
        write_pair(out / "shifted" / name, to_uint8(shifted),
                   train_labels[held][:1000] if name == "rotated" else
                   train_labels[held][1000:2000] if name == "noisy" else
                   train_labels[held][2000:], "new")
    print(f"Batches: {args.batches} of {args.batch_size} in {out / 'batches'}; shifted "
          f"batches (rotated, noisy, inverted; 1,000 each) in {out / 'shifted'}")
    for directory in batch_dirs:
        command = [sys.executable, "-m", "flows.ingest", "--batch", str(directory),
                   "--dataset", DATASET, "--data-dir", str(data_dir)]
        shown = (directory.relative_to(PROJECT_ROOT) if directory.is_relative_to(PROJECT_ROOT)
                 else directory)
        print(f"$ make ingest BATCH={shown} ARGS='--dataset {DATASET}'")
        if args.ingest:
            done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
            if done.returncode:
                sys.exit(done.stderr.strip().splitlines()[-1])
            print("  " + done.stdout.strip().splitlines()[-1])
    print(f"$ make run ARGS='--dataset {DATASET}'   # train on the latest snapshot")


if __name__ == "__main__":
    main()
