"""Write and load times of the two split cache formats on real MNIST, side by side.

    python -m benchmarks.cache_formats [--source ../shared/data/mnist] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from mnist_autoencoder.data.catalog import get_dataset
from mnist_autoencoder.data.download import download_dataset
from mnist_autoencoder.data.idx import load_images_and_labels
from mnist_autoencoder.data.preprocessing import build_splits, npz_arrays, parquet_table
from mnist_autoencoder.data.splits import FILE_NAMES, load_splits
from mnist_autoencoder.paths import PROJECT_ROOT
from mnist_autoencoder.storage import write_value

CONTENTS = {"npz": npz_arrays, "parquet": parquet_table}


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(PROJECT_ROOT.parent / "shared/data/mnist"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        download_dataset("mnist", args.source, tmp / "raw", log=lambda _: None)
        names = get_dataset("mnist").file_names()
        train = load_images_and_labels(tmp / "raw" / names["train_images"],
                                       tmp / "raw" / names["train_labels"])
        test = load_images_and_labels(tmp / "raw" / names["test_images"],
                                      tmp / "raw" / names["test_labels"])
        splits = build_splits(*train, *test, val_size=10_000, seed=0)
        print(f"{'format':<8} {'write s':>8} {'load s':>8} {'MB':>7}   (median of {args.repeats})")
        for fmt, contents in CONTENTS.items():
            path = tmp / FILE_NAMES[fmt]
            write = median_seconds(
                lambda c=contents, p=path: write_value(p, c(splits, {"benchmark": True})),
                args.repeats)
            load = median_seconds(lambda f=fmt: load_splits(tmp, f), args.repeats)
            print(f"{fmt:<8} {write:8.2f} {load:8.2f} {path.stat().st_size / 1e6:7.1f}")


if __name__ == "__main__":
    main()
