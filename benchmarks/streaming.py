"""The training loop before and after shards, side by side in one run on real MNIST.

    python -m benchmarks.streaming [--raw ../shared/data/mnist] [--epochs 5] [--repeats 3]
        [--before REV]

Three ways to feed the same 50,000 training images to the same model, seed and
batch order, each a fresh model, in turns (arm after arm, ``--repeats`` rounds), so
that the machine's noise falls on all of them alike:

- ``before``: the loop as it was before shards (``--before``, a git revision, its
  ``models/model.py`` loaded as it was): float32 pixels held as one tensor;
- ``uint8``: the loop now, the shards' uint8 rows in memory, scaled inside the step;
- ``streamed``: the loop now, the rows read from the shards in chunks of a quarter
  of the set, each read in a thread while the previous trains (what a snapshot too
  large to hold gets).

Prints the median seconds per epoch of each and their ratios to ``before``, and the
test BCE after the epochs (the same math: equal up to float rounding).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
PROJECT = Path(__file__).resolve().parents[1]


def load_module_at(revision: str, path: str, name: str):
    """``path`` as it was at git ``revision``, imported as module ``name``."""
    source = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=PROJECT, check=True,
                            capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{path}@{revision}", "exec"), module.__dict__)  # noqa: S102
    sys.modules[name] = module
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raw", default=str(PROJECT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", default="1a0f10e",
                        help="git revision of the loop before shards (default: the last "
                             "commit before them)")
    args = parser.parse_args()

    import numpy as np

    from mnist_autoencoder.data.catalog import get_dataset
    from mnist_autoencoder.data.preprocessing import build_view
    from mnist_autoencoder.data.splits import Rows, SplitView, normalize
    from mnist_autoencoder.evaluation.metrics import per_sample_bce
    from mnist_autoencoder.models import model as now
    from mnist_autoencoder.storage import sha256_file, write_outputs

    before = load_module_at(args.before, "mnist_autoencoder/models/model.py", "model_before")
    raw = Path(args.raw)
    files = get_dataset("mnist").file_names()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        hashes = {name: sha256_file(raw / name) for name in files.values()}
        write_outputs(data / "view", build_view(data, "mnist", raw, files, 10_000, 0, hashes))
        view = SplitView(data / "view")
        pixels = view.pixels("train")
        x_val, x_test = view.pixels("val"), normalize(view.pixels("test"))
        arms = {
            "before": lambda m: before.fit_autoencoder(m, normalize(pixels), normalize(x_val),
                                                        **options),
            "uint8": lambda m: now.fit_autoencoder(m, pixels, x_val, **options),
            "streamed": lambda m: now.fit_autoencoder(
                m, Rows(view, "train", np.arange(len(pixels)), len(pixels) // 4 + 1), x_val,
                **options),
        }
        options = {"epochs": args.epochs, "batch_size": 256, "patience": args.epochs + 1,
                   "seed": 0}
        seconds = {arm: [] for arm in arms}
        bce = {}
        for round_ in range(args.repeats):
            for arm, fit in arms.items():
                autoencoder, encoder, decoder = now.build_autoencoder(784, 32, 1e-3, seed=0)
                started = time.perf_counter()
                history = fit(autoencoder)
                # the first epoch compiles; the steady state is what the targets are about
                seconds[arm] += [row["seconds"] for row in history[1:]]
                rebuilt = decoder.predict(encoder.predict(x_test, verbose=0), verbose=0)
                bce[arm] = float(per_sample_bce(x_test, rebuilt).mean())
                print(f"round {round_ + 1} {arm:9s} {time.perf_counter() - started:6.1f} s, "
                      f"test BCE {bce[arm]:.5f}", flush=True)
    base = statistics.median(seconds["before"])
    print(f"\n{'loop':10s} {'s/epoch (median)':>17s} {'ratio':>7s} {'test BCE':>9s}")
    for arm in arms:
        median = statistics.median(seconds[arm])
        print(f"{arm:10s} {median:17.3f} {median / base:7.2f} {bce[arm]:9.5f}")


if __name__ == "__main__":
    main()
