"""How often the drift gate (``scoring.drift``) trips on clean and on shifted batches.

    python -m benchmarks.drift [--mnist ../shared/data/mnist]
        [--fashion /usr/share/datasets/fashion-mnist] [--epochs 20] [--batches 50]
        [--out artifacts/bench]

Trains the shallow autoencoder on MNIST (the pipeline's settings, on 40,000 of
the 50,000 training images; 20 epochs are plenty for a reference: validation
BCE 0.095, against 0.092 after the pipeline's 50), calibrates its
anomaly score on the validation split and takes that split as the reference.
Batches are drawn (seeded) from images the model never saw:

- ``held-out (same writers)``: random draws from 10,000 training images kept
  from the model: the same writers as the reference, so the gate's false-alarm
  rate as the statistics promise it (at most 5%);
- ``test split (new writers)``: random draws from the test split (never trained on);
- ``rotated 30``, ``noise 0.3``, ``inverted``: the draws rotated 30 degrees, with
  Gaussian noise of sigma 0.3, or inverted (``corruptions``);
- ``fashion 10%``: 10% of the batch replaced by Fashion-MNIST test images (with
  their own labels 0-9);
- ``missing digit``: no image of one digit (batch k leaves out digit k mod 10),
  refilled from the others.

Per case the share of ``--batches`` batches on which the gate and each of its
tests trip (and, at 1,000 images, the median share of a batch that the anomaly
score flags at its 1% threshold, and how often the pipeline's default
``drift_policy`` would hold a promotion), at 1,000 images and as a function of
the batch size (50, 100, 300, 1,000; 50 is below ``MIN_BATCH`` and is run to
show why). Then the test split's
ten contiguous 1,000-image slices, each against the reference: the first 5,000
and the last 5,000 test images come from different writer populations. Prints
the tables and writes ``<out>/drift.json`` and ``<out>/drift.md``. Measured: 70 s
on 2 cores, 15 s of it training, the rest some 1,400 runs of the gate.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.anomaly import (  # noqa: E402
    TRAINING,
    data_arguments,
    dataset_splits,
    say,
    training_log,
    write_report,
)
from mnist_autoencoder.lifecycle.registry import DEFAULT_POLICY, hold_reason  # noqa: E402
from mnist_autoencoder.scoring.drift import (  # noqa: E402
    ALPHA,
    DRIFT_TESTS,
    MIN_BATCH,
    TESTS,
    Sample,
    detect,
    reference_sample,
    validation_reference,
)

SIZES = (50, 100, 300, 1000)
AT = 1000  # the batch size of the main table
SEED = 0
SLICE = 1000  # the contiguous slices of the test split
ALARM_BATCHES = 200  # new-writer batches per half of the test split, to tune the event
HELD_OUT = 10_000  # training images kept from the model: a null drawn like the reference
HELD_OUT_CASE = "held-out (same writers)"
CLEAN = "test split (new writers)"


def parse_args() -> argparse.Namespace:
    parser = data_arguments(__doc__.split("\n\n")[0], 20, "drift")
    parser.add_argument("--batches", type=int, default=50,
                        help="batches drawn per case and batch size (at least 50 recommended)")
    return parser.parse_args()


def pools(columns: Callable, mnist: dict, held_out, fashion: dict | None) -> dict[str, Sample]:
    """The held-out images, the test split and its shifted versions seen through the model."""
    from mnist_autoencoder.evaluation.corruptions import add_noise, invert, rotate

    test = mnist["test"]
    samples = {HELD_OUT_CASE: reference_sample(columns, held_out.x, held_out.y)}
    found = {CLEAN: test.x, "rotated 30": rotate(test.x, 30),
             "noise 0.3": add_noise(test.x, 0.3, np.random.default_rng(SEED)),
             "inverted": invert(test.x)}
    samples |= {name: reference_sample(columns, x, test.y) for name, x in found.items()}
    if fashion is not None:
        samples["fashion"] = reference_sample(columns, fashion["test"].x, fashion["test"].y)
    return samples


def batch_makers(samples: dict[str, Sample]) -> dict[str, Callable[..., Sample]]:
    """case -> (generator, size, batch number) -> a batch drawn from the test split."""
    clean = samples[CLEAN]

    def draw(sample: Sample) -> Callable[..., Sample]:
        return lambda rng, n, k: sample.take(rng.choice(len(sample), n, replace=False))

    def fashion_mix(rng, n, k):
        mixed = round(0.1 * n)
        return Sample.concat([draw(clean)(rng, n - mixed, k), draw(samples["fashion"])(rng,
                                                                                      mixed, k)])

    def missing_digit(rng, n, k):
        others = np.flatnonzero(clean.labels != k % 10)
        return clean.take(rng.choice(others, n, replace=False))

    makers = {name: draw(sample) for name, sample in samples.items() if name != "fashion"}
    if "fashion" in samples:
        makers["fashion 10%"] = fashion_mix
    return makers | {"missing digit": missing_digit}


def rates(reference: Sample, make: Callable[..., Sample], n: int, batches: int,
          seed: int, threshold: tuple[float, float]) -> dict[str, float]:
    """The share of ``batches`` batches of ``n`` on which the gate and each test trip; the
    median share of a batch the anomaly score flags; how often the default policy holds."""
    rng = np.random.default_rng(seed)
    tripped = {name: 0 for name in ("gate", *TESTS, "event", "held")}
    flagged = []
    for k in range(batches):
        report = detect(reference, make(rng, n, k), min_batch=1, threshold=threshold)
        tripped["gate"] += report.drift
        tripped["event"] += report.material
        for test in report.tests:
            tripped[test.name] += test.drift
        gate = {"tripped": report.drift, "line": "", "drift": {"flagged": report.flagged}}
        tripped["held"] += hold_reason(gate, DEFAULT_POLICY) is not None
        flagged.append(report.flagged["batch"])
    return {name: count / batches for name, count in tripped.items()} | {
        "flagged": float(np.median(flagged))}


def slices(reference: Sample, clean: Sample, held_out: Sample) -> dict[str, dict[str, Any]]:
    """The gate on each contiguous ``SLICE`` of the test split, in file order; then on the
    whole test split and on all the held-out images (10,000 images: the most power)."""
    found = {}
    batches = {f"{start}-{start + SLICE}": clean.take(np.arange(start, start + SLICE))
               for start in range(0, len(clean), SLICE)}
    batches |= {f"whole test split ({len(clean):,})": clean,
                f"all held-out training images ({len(held_out):,})": held_out}
    for name, batch in batches.items():
        report = detect(reference, batch)
        found[name] = {
            "drift": report.drift,
            **{t.name: t.p_value for t in report.tests},
            "score_median": report.test("score").detail["batch_median"]}
    return found


def batch_effects(reference: Sample, pool: Sample, batches: int, seed: int
                  ) -> list[dict[str, tuple[float, bool]]]:
    """Per batch of ``AT`` images drawn from ``pool``: each test's (effect, whether it trips)."""
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(batches):
        report = detect(reference, pool.take(rng.choice(len(pool), AT, replace=False)))
        found.append({t.name: (t.effect or 0.0, t.drift) for t in report.tests})
    return found


def material_rate(effects: list[dict[str, tuple[float, bool]]],
                  thresholds: dict[str, float]) -> float:
    """The share of batches on which some test trips with an effect at its threshold or more."""
    return float(np.mean([any(e[t][1] and e[t][0] >= thresholds[t] for t in TESTS)
                          for e in effects]))


def alarm(reference: Sample, clean: Sample, batches: int) -> dict[str, Any]:
    """Tune the event's effect sizes on one half of the test split's writers, evaluate them on
    the other half (their writers are disjoint: SD-3 then SD-1), both ways."""
    half = len(clean) // 2
    pools = {"images 0-4,999": clean.take(np.arange(half)),
             "images 5,000-9,999": clean.take(np.arange(half, len(clean)))}
    effects = {name: batch_effects(reference, pool, batches, seed=SEED + 7 + i)
               for i, (name, pool) in enumerate(pools.items())}
    halves = {}
    for name, other in zip(pools, reversed(list(pools))):
        thresholds = {t: float(np.quantile([e[t][0] for e in effects[name]], 0.99))
                      for t in TESTS}
        halves[name] = {"thresholds": thresholds,
                        "tuned": material_rate(effects[name], thresholds),
                        "held_out": material_rate(effects[other], thresholds)}
    in_use = {kind.name: kind.material for kind in DRIFT_TESTS}
    return {"batches": batches, "halves": halves, "in_use": in_use,
            "in_use_held_out": material_rate(effects[list(pools)[1]], in_use)}


def percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def markdown(result: dict[str, Any]) -> str:
    n, batches = result["at"], result["batches"]
    lines = [f"## Trip rates at {n:,} images ({batches} batches per case; the gate's alpha "
             f"{result['alpha']:.0%})", "",
             "| case | gate | " + " | ".join(kind.title for kind in DRIFT_TESTS)
             + " | event (material) | flagged (median) | "
             f"held ({DEFAULT_POLICY}) |", "|---" * (len(DRIFT_TESTS) + 5) + "|"]
    lines += [f"| {case} | {' | '.join(percent(row[t]) for t in ('gate', *TESTS, 'event'))} | "
              f"{100 * row['flagged']:.1f}% | {percent(row['held'])} |"
              for case, row in result["at_size"].items()]
    tuning = result["alarm"]
    lines += ["", f"## The event's effect sizes, tuned on one half of the test split's writers "
              f"and evaluated on the other ({tuning['batches']} batches of {AT:,} per half)", "",
              "| tuned on | " + " | ".join(kind.effect_label for kind in DRIFT_TESTS)
              + " | event on the tuning half | event on the other half |",
              "|---" * (len(DRIFT_TESTS) + 3) + "|"]
    lines += [f"| {half} | " + " | ".join(f"{row['thresholds'][t]:.4f}" for t in TESTS)
              + f" | {percent(row['tuned'])} | {percent(row['held_out'])} |"
              for half, row in tuning["halves"].items()]
    lines += ["", "In use (`scoring.drift.MATERIAL`): " + ", ".join(
        f"{kind.effect_label} {tuning['in_use'][kind.name]:.4f}" for kind in DRIFT_TESTS)
        + f"; new-writer batches of the half not tuned on that emit the event: "
        f"{percent(tuning['in_use_held_out'])}."]
    sizes = result["sizes"]
    lines += ["", f"## The gate's trip rate by batch size ({batches} batches each; "
              f"{result['min_batch']} is the minimum the flow accepts)", "",
              "| case | " + " | ".join(f"n={s:,}" for s in sizes) + " |",
              "|---" * (len(sizes) + 1) + "|"]
    lines += [f"| {case} | " + " | ".join(percent(row[str(s)]["gate"]) for s in sizes) + " |"
              for case, row in result["by_size"].items()]
    lines += ["", "## Contiguous 1,000-image slices of the MNIST test split against the "
              "reference; then whole sets", "",
              "| slice | " + " | ".join(f"{kind.label} p" for kind in DRIFT_TESTS)
              + " | median score | drift |",
              "|---" * (len(DRIFT_TESTS) + 3) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{row[t]:.2g}" for t in TESTS)
              + f" | {row['score_median']:.3f} | {'yes' if row['drift'] else 'no'} |"
              for name, row in result["slices"].items()]
    lines += ["", f"Thresholds: score and labels p < {result['alpha'] / 3:.3g}, each code "
              f"dimension p < {result['alpha'] / 3 / result['code_dimensions']:.3g} "
              f"({result['code_dimensions']} live dimensions). Reference: "
              f"{result['n_reference']:,} validation images, median score "
              f"{result['reference_median']:.3f}. Model: {result['training']}."]
    if result["skipped"]:
        lines.append(f"Skipped: {result['skipped']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    mnist, fashion = dataset_splits(args.mnist), dataset_splits(args.fashion)
    if mnist is None:
        raise SystemExit(f"no MNIST IDX files in {args.mnist}")
    skipped = "" if fashion is not None else (
        f"no Fashion-MNIST IDX files in {args.fashion}: the fashion 10% case is left out")
    if skipped:
        say(skipped)

    from mnist_autoencoder.models.training import train_model
    from mnist_autoencoder.scoring.drift import live_dimensions
    from mnist_autoencoder.scoring.scores import DEFAULT_FPR, Scorer, calibrate, make_error_function

    order = np.random.default_rng(SEED).permutation(len(mnist["train"].y))
    train, held_out = mnist["train"], mnist["train"]._replace(
        x=mnist["train"].x[order[:HELD_OUT]], y=mnist["train"].y[order[:HELD_OUT]])
    say(f"Training the MNIST model on {len(order) - HELD_OUT} images, {HELD_OUT} held out "
        f"(at most {args.epochs} epochs)")
    trained = train_model("shallow", train.x[order[HELD_OUT:]], mnist["val"].x,
                          epochs=args.epochs, log=training_log("mnist"), **TRAINING)
    calibration = calibrate(make_error_function(trained.encoder, trained.decoder),
                            mnist["val"].x)
    scorer = Scorer(trained.encoder, trained.decoder, calibration)
    reference = validation_reference(scorer.columns, mnist["val"].x, mnist["val"].y)
    say(f"Reference: {len(reference)} validation images ({time.perf_counter() - started:.0f} s)")
    samples = pools(scorer.columns, mnist, held_out, fashion)
    makers = batch_makers(samples)
    by_size: dict[str, dict[str, dict[str, float]]] = {case: {} for case in makers}
    for number, (case, make) in enumerate(makers.items()):
        for n in SIZES:
            by_size[case][str(n)] = rates(reference, make, n, args.batches,
                                          seed=SEED + 1000 * number + n, threshold=(
                                              calibration.threshold(DEFAULT_FPR), DEFAULT_FPR))
        say(f"  {case}: gate trips on " + ", ".join(
            f"{percent(by_size[case][str(n)]['gate'])} at n={n}" for n in SIZES)
            + f" ({time.perf_counter() - started:.0f} s)")
    result = {
        "alpha": ALPHA, "min_batch": MIN_BATCH, "at": AT, "batches": args.batches,
        "sizes": list(SIZES), "at_size": {case: row[str(AT)] for case, row in by_size.items()},
        "by_size": by_size,
        "slices": slices(reference, samples[CLEAN], samples[HELD_OUT_CASE]),
        "alarm": alarm(reference, samples[CLEAN], max(args.batches, ALARM_BATCHES)),
        "n_reference": len(reference), "reference_median": float(np.median(reference.scores)),
        "code_dimensions": len(live_dimensions(reference, samples[CLEAN])),
        "training": trained.summary(args.epochs) | {"epochs": args.epochs},
        "training_settings": TRAINING, "skipped": skipped,
        "sources": {"mnist": str(args.mnist), "fashion": str(args.fashion)},
    }
    write_report(args.out, "drift", result, markdown(result), started)


if __name__ == "__main__":
    main()
