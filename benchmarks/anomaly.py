"""How well each anomaly score of ``mnist_autoencoder.scoring.scores`` tells anomalies from digits.

    python -m benchmarks.anomaly [--mnist ../shared/data/mnist]
        [--fashion /usr/share/datasets/fashion-mnist] [--epochs 50] [--out artifacts/bench]

Trains the shallow autoencoder (the pipeline's defaults) on MNIST and on
Fashion-MNIST, fits every score in ``scoring.SCORES`` on one half of each model's own
validation split and takes its thresholds from the other half, and scores:

- ``mnist->fashion``: the MNIST model on the Fashion-MNIST test split;
- ``fashion->mnist``: the Fashion-MNIST model on the MNIST test split;
- ``mnist-><corruption>``: the MNIST model on each corruption of
  ``corruptions.CORRUPTIONS`` applied to the MNIST test split (seed 0).

Per case and score: the AUROC against the model's own test split (clean
digits are the negatives) and the share of the anomalous set flagged at the
threshold that flags 1% of the validation split; per model, the share of its own
test split flagged there (the false alarms). Without the Fashion-MNIST files the
two cases that need them are skipped. Prints the tables and writes them to
``<out>/anomaly.md`` and ``<out>/anomaly.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FPR = 0.01
SEED = 0  # splits, initial weights, shuffling and the corruptions' generator
TRAINING = {"latent_dim": 32, "batch_size": 256, "learning_rate": 1e-3, "patience": 5,
            "seed": SEED}
LOG_EVERY = 10  # epochs between the training progress lines shown


@dataclass
class Model:
    """One trained model: its error function, a calibration per score and its clean test scores."""

    name: str
    errors: Callable
    calibration: Any  # scoring.Calibration: every score, fitted on one half of the
    # validation split, its thresholds from the other half
    test_scores: dict[str, np.ndarray]
    training: dict[str, Any]


def data_arguments(description: str, epochs: int, stem: str) -> argparse.ArgumentParser:
    """The options every side-by-side benchmark on the two datasets takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--mnist", type=Path, default=Path("../shared/data/mnist"),
                        help="directory of the four MNIST .gz IDX files")
    parser.add_argument("--fashion", type=Path,
                        default=Path("/usr/share/datasets/fashion-mnist"),
                        help="directory of the four Fashion-MNIST .gz IDX files (optional)")
    parser.add_argument("--epochs", type=int, default=epochs, help="at most, for each model")
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench"),
                        help=f"folder for {stem}.json and {stem}.md")
    return parser


def parse_args() -> argparse.Namespace:
    return data_arguments(__doc__.split("\n\n")[0], 50, "anomaly").parse_args()


def say(message: str) -> None:
    print(message, flush=True)


def write_report(out: Path, stem: str, result: dict[str, Any], text: str,
                 started: float) -> None:
    """Print the tables and write ``<stem>.json`` and ``<stem>.md`` to ``out`` atomically."""
    from mnist_autoencoder.storage import write_bytes_atomic, write_json_atomic

    result["seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"{stem}.json", result)
    write_bytes_atomic(out / f"{stem}.md", text.encode())
    say("\n" + text)
    say(f"Wrote {out / f'{stem}.md'} and {out / f'{stem}.json'} ({result['seconds']:.0f} s)")


def dataset_splits(directory: Path) -> dict | None:
    """The train/val/test splits of the IDX files in ``directory``, as preprocess builds them
    (``benchmarks.common``); None if any file is missing."""
    from benchmarks.common import build_splits, idx_files

    if idx_files(directory) is None:
        return None
    return build_splits(directory, val_size=10_000, seed=SEED)


def training_log(name: str) -> Callable[[str], None]:
    """A ``log`` for ``train_model`` that shows every ``LOG_EVERY``-th epoch line, and the rest."""
    epoch_line = re.compile(r"epoch (\d+)/(\d+):")

    def log(line: str) -> None:
        match = epoch_line.search(line)
        if match is None or int(match[1]) % LOG_EVERY == 0 or match[1] == match[2]:
            say(f"  {name}: {line}")

    return log


def train(name: str, splits: dict, epochs: int) -> Model:
    """Train the shallow model on ``splits`` and calibrate every score on its validation split."""
    from mnist_autoencoder.models.training import train_model
    from mnist_autoencoder.scoring.scores import calibrate, make_error_function

    say(f"Training the {name} model (at most {epochs} epochs)")
    started = time.perf_counter()
    trained = train_model("shallow", splits["train"].x, splits["val"].x, epochs=epochs,
                          log=training_log(name), **TRAINING)
    seconds = time.perf_counter() - started
    errors = make_error_function(trained.encoder, trained.decoder)
    calibration = calibrate(errors, splits["val"].x)  # every score, fitted and calibrated
    return Model(name, errors, calibration, score_all(errors, calibration, splits["test"].x),
                 trained.summary(epochs) | {"seconds": round(seconds, 1)})


def score_all(errors: Callable, calibration: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every score of every image in ``x``, from one pass of the model."""
    codes, parts = errors(x)
    return {name: calibration.apply({"codes": codes, **parts}, name)
            for name in calibration.scores}


def evaluate(model: Model, x_anomalous: np.ndarray) -> tuple[dict, dict]:
    """Per score: AUROC of ``x_anomalous`` against the clean test split, and its share flagged."""
    from sklearn.metrics import roc_auc_score

    scores = score_all(model.errors, model.calibration, x_anomalous)
    auroc, detected = {}, {}
    for name, anomalous in scores.items():
        clean = model.test_scores[name]
        labels = np.r_[np.zeros(len(clean)), np.ones(len(anomalous))]
        auroc[name] = float(roc_auc_score(labels, np.r_[clean, anomalous]))
        detected[name] = float(np.mean(anomalous > model.calibration.threshold(FPR, name)))
    return auroc, detected


def false_alarms(model: Model) -> dict[str, float]:
    """Per score: the share of the model's own clean test split flagged at the threshold."""
    return {name: float(np.mean(scores > model.calibration.threshold(FPR, name)))
            for name, scores in model.test_scores.items()}


def anomalous_sets(data: dict[str, dict | None]) -> list[tuple[str, str, np.ndarray]]:
    """(case, model name, anomalous images): Fashion, each corruption, then MNIST."""
    from mnist_autoencoder.evaluation.corruptions import CORRUPTIONS, corrupt

    x_test = data["mnist"]["test"].x
    cases = []
    if data["fashion"] is not None:
        cases.append(("mnist->fashion", "mnist", data["fashion"]["test"].x))
    cases += [(f"mnist->{name}", "mnist", corrupt(x_test, name, seed=SEED))
              for name in CORRUPTIONS]
    if data["fashion"] is not None:
        cases.append(("fashion->mnist", "fashion", x_test))
    return cases


def summarise(auroc: dict[str, dict[str, float]], scores: list[str]) -> dict[str, dict]:
    """The rows under the AUROC table: the worst case and the mean of the mild four."""
    from mnist_autoencoder.evaluation.corruptions import MILD

    return {
        "worst case": {s: min(row[s] for row in auroc.values()) for s in scores},
        "mean of the mild four": {
            s: float(np.mean([auroc[f"mnist->{c}"][s] for c in MILD])) for s in scores},
    }


def table(rows: dict[str, dict[str, float]], scores: list[str], default: str,
          fmt: Callable[[float], str], first: str = "case") -> str:
    """A Markdown table: one row per entry of ``rows``, one column per score."""
    header = [f"{s} (default)" if s == default else s for s in scores]
    lines = ["| " + " | ".join([first, *header]) + " |", "|---" * (len(scores) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(fmt(row[s]) for s in scores) + " |"
              for name, row in rows.items()]
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """The three tables of ``result`` under their headings."""
    scores, default = result["scores"], result["default_score"]
    percent = int(round(100 * result["fpr"]))
    rows = result["auroc"] | result["summary"]
    parts = [
        f"## AUROC (anomalous set against the model's own test split; {result['epochs']} epochs)",
        table(rows, scores, default, lambda v: f"{v:.4f}"),
        f"## Share flagged at the {percent}% threshold (validation-calibrated)",
        table(result["detected"], scores, default, lambda v: f"{100 * v:.1f}%"),
        f"## False alarms at the {percent}% threshold (own test split)",
        table({f"{m} test": row for m, row in result["false_alarms"].items()}, scores, default,
              lambda v: f"{100 * v:.2f}%", first="model"),
    ]
    if result["skipped"]:
        parts.append(f"Skipped: {result['skipped']}")
    return "\n\n".join(parts) + "\n"


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    data = {"mnist": dataset_splits(args.mnist), "fashion": dataset_splits(args.fashion)}
    if data["mnist"] is None:
        raise SystemExit(f"no MNIST IDX files in {args.mnist}")
    skipped = ""
    if data["fashion"] is None:
        skipped = (f"no Fashion-MNIST IDX files in {args.fashion}: "
                   "skipping mnist->fashion and fashion->mnist")
        say(skipped)

    from mnist_autoencoder.scoring.scores import DEFAULT_SCORE, SCORES

    models = {name: train(name, splits, args.epochs)
              for name, splits in data.items() if splits is not None}
    auroc, detected = {}, {}
    for case, model, x_anomalous in anomalous_sets(data):
        say(f"Scoring {case} ({len(x_anomalous)} images)")
        auroc[case], detected[case] = evaluate(models[model], x_anomalous)

    scores = list(SCORES)
    result = {
        "epochs": args.epochs, "fpr": FPR, "scores": scores, "default_score": DEFAULT_SCORE,
        "auroc": auroc, "summary": summarise(auroc, scores), "detected": detected,
        "false_alarms": {name: false_alarms(model) for name, model in models.items()},
        "thresholds": {name: {s: model.calibration.threshold(FPR, s) for s in scores}
                       for name, model in models.items()},
        "training": {name: model.training for name, model in models.items()},
        "training_settings": TRAINING, "skipped": skipped,
        "sources": {name: str(path) for name, path in
                    (("mnist", args.mnist), ("fashion", args.fashion))},
    }
    write_report(args.out, "anomaly", result, markdown(result), started)


if __name__ == "__main__":
    main()
