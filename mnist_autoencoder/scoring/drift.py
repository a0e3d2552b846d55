"""A drift gate: does a batch of images look like the data the champion was calibrated on?

The reference is the champion's validation split, seen through the champion:
per image its calibrated anomaly score, its code and its label. A batch is seen
the same way, and three two-sample tests compare them:

- ``score``: a KS test (``scipy.stats.ks_2samp``) on the anomaly score;
- ``codes``: a KS test per code dimension, Bonferroni-corrected over the
  dimensions (as alibi-detect tests autoencoder encodings); a dimension that is
  one constant value in both samples (a dead unit) is left out;
- ``labels``: a chi-square test of homogeneity of the label counts (the 2 x k
  table of reference and batch counts), when every image of the batch has a label;
  classes expected fewer than ``MIN_EXPECTED`` times are pooled (``pool_classes``).
  Without labels the test is skipped, and the report says why.

Beside the tests, the report gives an effect size that does not grow with the
batch: the share of the batch the anomaly score flags at the model's calibrated
1% threshold (``flagged``), against the 1% it flags of images like the reference.

The batch drifts when any test that ran is below its threshold. The thresholds
share ``ALPHA`` (the false-alarm rate of the whole gate) by Bonferroni: ``ALPHA / k``
per test, for the k tests that ran, and ``ALPHA / k / d`` per code dimension for d
tested dimensions; so on batches drawn like the reference the gate trips at most
``ALPHA`` of the time. Below ``MIN_BATCH`` images the check refuses (``WHY_MIN_BATCH``).
Measurements on real MNIST: ``docs/drift.md``.

Pure NumPy and SciPy; TensorFlow is never imported here (the model is a
``columns`` callable, e.g. ``Scorer.columns``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from mnist_autoencoder.errors import ParameterError

ALPHA = 0.05  # the gate's false-alarm rate on batches drawn like the reference
MIN_BATCH = 100
WHY_MIN_BATCH = (
    "below that the tests have almost no power: a KS test on 100 images only notices a "
    "shift of the distribution by more than ~0.16, and a chi-square test of 10 classes "
    "needs at least 5 expected images per class")
MIN_EXPECTED = 5.0  # Cochran's rule for the chi-square approximation
NO_LABEL = -1


@dataclass(frozen=True)
class Sample:
    """Images as the drift tests see them: anomaly scores, codes and labels (-1: unknown)."""

    scores: np.ndarray  # (n,)
    codes: np.ndarray  # (n, d)
    labels: np.ndarray | None = None  # (n,) int, NO_LABEL where unknown; None: no labels

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, rows: np.ndarray) -> Sample:
        """The images at ``rows`` (indices or a mask)."""
        return Sample(self.scores[rows], self.codes[rows],
                      None if self.labels is None else self.labels[rows])

    @staticmethod
    def concat(samples: Iterable[Sample]) -> Sample:
        samples = list(samples)
        labels = [s.labels for s in samples]
        return Sample(np.concatenate([s.scores for s in samples]),
                      np.concatenate([s.codes for s in samples]),
                      None if any(y is None for y in labels) else np.concatenate(labels))


def reference_sample(columns: Callable[[np.ndarray], dict[str, np.ndarray]], x: np.ndarray,
                     labels: np.ndarray | None = None) -> Sample:
    """A ``Sample`` of images ``x`` (the reference: the validation split) under a model.

    ``columns`` is ``Scorer.columns``-like: images -> ``{"codes", "score", ...}``.
    """
    found = columns(x)
    return Sample(np.asarray(found["score"], np.float64), np.asarray(found["codes"]),
                  None if labels is None else np.asarray(labels).astype(np.int64))


def validation_reference(columns: Callable[[np.ndarray], dict[str, np.ndarray]],
                         x_val: np.ndarray, y_val: np.ndarray | None = None) -> Sample:
    """The gate's reference: the calibrating half of a model's validation split.

    The anomaly score's density was fitted on the other half (``scores.validation_halves``),
    so the reference's scores are distributed as a new batch's from the same population.
    """
    from mnist_autoencoder.scoring.scores import validation_halves

    rows = validation_halves(len(x_val))[1]
    return reference_sample(columns, x_val[rows], None if y_val is None else y_val[rows])


def batch_sample(columns: Callable[[np.ndarray], dict[str, np.ndarray]],
                 chunks: Iterable[Any]) -> Sample:
    """A ``Sample`` of a batch read chunk by chunk (``inputs.Input.iter_chunks``)."""
    return Sample.concat(reference_sample(columns, chunk.x, chunk.labels) for chunk in chunks)


def check_batch_size(n: int, minimum: int = MIN_BATCH) -> None:
    if n < minimum:
        raise ParameterError(f"the batch holds {n} images; a drift check needs at least "
                         f"{minimum}: {WHY_MIN_BATCH}")


@dataclass
class TestResult:
    """One test: its statistic, p-value and threshold (p below it: drift), or why it was skipped.

    For ``codes``, ``p_value`` is the smallest p-value over the dimensions and
    ``threshold`` the per-dimension one.
    """

    name: str
    statistic: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    drift: bool = False
    skipped: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    effect: float | None = None  # how large the difference is, whatever the sample sizes
    material: bool = False  # it drifts and its effect reaches the test's alarm threshold

    def phrase(self) -> str:
        """A few words for the summary line."""
        if self.skipped:
            return f"{self.name} skipped: {self.skipped}"
        return f"{BY_NAME[self.name].label} p={self.p_value:.2g} vs {self.threshold:.2g}"


@dataclass
class DriftReport:
    """The gate's decision, every statistic, and the reasons; ``to_json`` is JSON-ready.

    ``flagged``: ``{threshold, expected, reference, batch}``, the shares of the
    reference and of the batch above the anomaly score's threshold that flags
    ``expected`` of the validation split (None when no threshold was given).
    """

    drift: bool
    alpha: float
    n_reference: int
    n_batch: int
    tests: list[TestResult]
    reasons: list[str]
    flagged: dict[str, float] | None = None
    material: bool = False  # a test drifts by at least its alarm effect: the event fires

    def test(self, name: str) -> TestResult:
        return next(t for t in self.tests if t.name == name)

    def line(self) -> str:
        """``Drift: yes (...)`` or ``Drift: no (...)`` with the statistics."""
        share = (f"; {self.flagged['batch']:.1%} flagged as anomalous, "
                 f"{self.flagged['expected']:.0%} expected" if self.flagged else "")
        alarm = ("" if not self.drift else "; material: " + ", ".join(
            f"{BY_NAME[t.name].effect_label} {t.effect:.3f}" for t in self.tests if t.material)
            if self.material else "; below every alarm effect size")
        return (f"Drift: {'yes' if self.drift else 'no'} ("
                + ", ".join(t.phrase() for t in self.tests) + share + alarm + ")")

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=_plain))

    def markdown(self) -> str:
        """One table row per test, then the decision and its reasons."""
        rows = ["| test | statistic | p-value | threshold | drift |", "|---|---|---|---|---|"]
        for t in self.tests:
            if t.skipped:
                rows.append(f"| {t.name} | skipped: {t.skipped} | | | |")
                continue
            kind = BY_NAME[t.name]
            rows.append(f"| {t.name} | {kind.statistic} {t.statistic:.4f} | "
                        f"{t.p_value:.3g}{kind.p_note} | "
                        f"{t.threshold:.3g} | {'**yes**' if t.drift else 'no'} |")
        verdict = "**Drift: yes.**" if self.drift else "**Drift: no.**"
        share = (f" The anomaly score flags {self.flagged['batch']:.1%} of the batch and "
                 f"{self.flagged['reference']:.1%} of the reference at the threshold that "
                 f"flags {self.flagged['expected']:.0%} of validation images "
                 f"({self.flagged['threshold']:.3g})." if self.flagged else "")
        return "\n".join([f"{verdict} {self.n_batch} images against {self.n_reference} "
                          f"reference images; the gate's false-alarm rate is {self.alpha:.0%}."
                          + share, "", *rows, "", *[f"- {r}" for r in self.reasons]]) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-ready: {type(value).__name__}")


def ks(reference: np.ndarray, batch: np.ndarray) -> tuple[float, float]:
    """(D, p) of the two-sample KS test; asymptotic p (the exact one is slow at 10,000 images)."""
    from scipy import stats  # imported here: 0.6 s that a cached pipeline run does not pay

    result = stats.ks_2samp(reference, batch, method="asymp")
    return float(result.statistic), float(result.pvalue)


def upward_shift(reference: np.ndarray, batch: np.ndarray) -> float:
    """How far the batch's scores moved towards the anomalous end: ``max(F_ref - F_batch)``.

    The one-sided KS statistic D+: a batch whose scores are *lower* (more typical than
    the reference, as the MNIST test split's second half is) has none.
    """
    grid = np.concatenate([reference, batch])
    below_ref = np.searchsorted(np.sort(reference), grid, side="right") / len(reference)
    below_batch = np.searchsorted(np.sort(batch), grid, side="right") / len(batch)
    return float(max(0.0, np.max(below_ref - below_batch)))


def score_test(reference: Sample, batch: Sample, alpha: float) -> TestResult:
    statistic, p = ks(reference.scores, batch.scores)
    return TestResult("score", statistic, p, alpha, p < alpha,
                      effect=upward_shift(reference.scores, batch.scores), detail={
        "reference_median": float(np.median(reference.scores)),
        "batch_median": float(np.median(batch.scores))})


def live_dimensions(reference: Sample, batch: Sample) -> list[int]:
    """The code dimensions that are not one constant value across both samples."""
    both = np.concatenate([reference.codes, batch.codes])
    return np.flatnonzero(~np.all(both == both[:1], axis=0)).tolist()


def codes_test(reference: Sample, batch: Sample, alpha: float) -> TestResult:
    """Per-dimension KS at ``alpha / d``; dimensions constant (one value) in both are left out."""
    tested = live_dimensions(reference, batch)
    dead = sorted(set(range(reference.codes.shape[1])) - set(tested))
    if not tested:
        return TestResult("codes", skipped="every code dimension is constant in both samples",
                          detail={"dead_dimensions": dead})
    results = [ks(reference.codes[:, j], batch.codes[:, j]) for j in tested]
    p_values = np.array([p for _, p in results])
    threshold = alpha / len(tested)
    worst = int(np.argmin(p_values))
    drifted = [tested[i] for i in np.flatnonzero(p_values < threshold)]
    return TestResult("codes", results[worst][0], float(p_values[worst]), threshold,
                      bool(drifted), effect=float(max(d for d, _ in results)), detail={
                          "dimensions_tested": len(tested), "dead_dimensions": dead,
                          "smallest_p_dimension": tested[worst],
                          "drifted_dimensions": drifted,
                          "bonferroni_p": float(min(1.0, p_values[worst] * len(tested)))})


def pool_classes(counts: dict[int, tuple[int, int]], minimum: float = MIN_EXPECTED
                 ) -> list[list[int]]:
    """Group classes so each group is expected at least ``minimum`` times in both samples.

    ``counts`` maps a class to its (reference, batch) counts. Under homogeneity a
    class is expected ``n * share`` times in a sample of ``n``, with ``share`` its
    share of both samples together. While the rarest group is expected fewer than
    ``minimum`` times in the smaller sample, it is merged with the next-rarest.
    """
    n_ref = sum(r for r, _ in counts.values())
    n_batch = sum(b for _, b in counts.values())
    smaller, total = min(n_ref, n_batch), n_ref + n_batch
    groups = sorted(([c] for c in sorted(counts)), key=lambda g: sum(counts[c][0] + counts[c][1]
                                                                      for c in g))

    def expected(group: list[int]) -> float:
        return smaller * sum(counts[c][0] + counts[c][1] for c in group) / total

    while len(groups) > 1 and expected(groups[0]) < minimum:
        groups = sorted([groups[0] + groups[1], *groups[2:]], key=expected)
    return groups


def labels_skipped(reference: Sample, batch: Sample) -> str | None:
    """Why the label test cannot run on ``batch``; None when it can."""
    if batch.labels is None or not len(batch.labels) or np.all(batch.labels == NO_LABEL):
        return "the batch has no labels"
    unknown = int(np.sum(batch.labels == NO_LABEL))
    if unknown:
        return f"{unknown} of {len(batch)} images have no label"
    if reference.labels is None:
        return "the reference has no labels"
    return None


def labels_test(reference: Sample, batch: Sample, alpha: float) -> TestResult:
    """Chi-square test of homogeneity of the label counts (classes pooled by ``pool_classes``)."""
    why = labels_skipped(reference, batch)
    if why:
        return TestResult("labels", skipped=why)
    classes = sorted(set(np.unique(reference.labels).tolist())
                     | set(np.unique(batch.labels).tolist()))
    counts = {c: (int(np.sum(reference.labels == c)), int(np.sum(batch.labels == c)))
              for c in classes}
    groups = pool_classes(counts)
    if len(groups) < 2:
        return TestResult("labels", skipped="too few images per class for a chi-square test")
    from scipy import stats

    table = np.array([[sum(counts[c][k] for c in g) for g in groups] for k in (0, 1)])
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    shares = table / table.sum(1, keepdims=True)  # per sample, per pooled group
    return TestResult("labels", float(chi2), float(p), alpha, bool(p < alpha),
                      effect=float(np.abs(shares[0] - shares[1]).sum() / 2), detail={
        "dof": int(dof), "pooled": [g for g in groups if len(g) > 1],
        "reference_share": {str(c): counts[c][0] / len(reference) for c in classes},
        "batch_share": {str(c): counts[c][1] / len(batch) for c in classes}})


def detect(reference: Sample, batch: Sample, alpha: float = ALPHA,
           min_batch: int = MIN_BATCH,
           threshold: tuple[float, float] | None = None) -> DriftReport:
    """Run every test of ``DRIFT_TESTS`` on ``batch``; drift if any is below its threshold.

    ``threshold``: (the anomaly score's threshold, the share of validation images it
    flags), for the report's ``flagged`` shares. Raises ``ValueError`` for a batch
    of fewer than ``min_batch`` images.
    """
    check_batch_size(len(batch), min_batch)
    if batch.codes.shape[1:] != reference.codes.shape[1:]:
        raise ValueError(f"codes of {batch.codes.shape[1:]} against the reference's "
                         f"{reference.codes.shape[1:]}: not the same model")
    running = [kind for kind in DRIFT_TESTS if kind.skipped(reference, batch) is None]
    share = alpha / max(1, len(running))  # Bonferroni over the tests that run
    tests = [kind.run(reference, batch, share) for kind in DRIFT_TESTS]
    for test in tests:
        test.material = test.drift and test.effect >= BY_NAME[test.name].material
    reasons = ([BY_NAME[t.name].reason(t) for t in tests if t.drift]
               or ["no test is below its threshold"])
    reasons += [f"{t.name} test skipped: {t.skipped}" for t in tests if t.skipped]
    flagged = None if threshold is None else {
        "threshold": float(threshold[0]), "expected": float(threshold[1]),
        "reference": float(np.mean(reference.scores > threshold[0])),
        "batch": float(np.mean(batch.scores > threshold[0]))}
    return DriftReport(any(t.drift for t in tests), alpha, len(reference), len(batch), tests,
                       reasons, flagged, material=any(t.material for t in tests))


def _score_reason(test: TestResult) -> str:
    return (f"anomaly score: KS D={test.statistic:.3f}, p={test.p_value:.2g} < "
            f"{test.threshold:.2g} (median {test.detail['reference_median']:.3g} -> "
            f"{test.detail['batch_median']:.3g})")


def _codes_reason(test: TestResult) -> str:
    dims = test.detail["drifted_dimensions"]
    return (f"codes: {len(dims)} of {test.detail['dimensions_tested']} dimensions below "
            f"p={test.threshold:.2g} (smallest p={test.p_value:.2g}, dimension "
            f"{test.detail['smallest_p_dimension']})")


def _labels_reason(test: TestResult) -> str:
    moved = sorted(test.detail["batch_share"], key=lambda c: -abs(
        test.detail["batch_share"][c] - test.detail["reference_share"].get(c, 0.0)))[0]
    missing = [c for c, share in test.detail["reference_share"].items()
               if share > 0 and test.detail["batch_share"][c] == 0]
    return (f"labels: chi2={test.statistic:.1f}, p={test.p_value:.2g} < {test.threshold:.2g} "
            f"(class {moved}: {test.detail['reference_share'].get(moved, 0.0):.1%} of the "
            f"reference, {test.detail['batch_share'][moved]:.1%} of the batch"
            + (f"; missing from the batch: {', '.join(missing)}" if missing else "") + ")")


def _never_skipped(reference: Sample, batch: Sample) -> None:
    return None


def _codes_skipped(reference: Sample, batch: Sample) -> str | None:
    if live_dimensions(reference, batch):
        return None
    return "every code dimension is constant in both samples"


@dataclass(frozen=True)
class DriftTest:
    """One test of the gate: its name, how it runs and explains itself, how tables show it.

    Adding a test is one entry in ``DRIFT_TESTS`` (and its test): ``detect``, the
    summary line, the report, the Bonferroni share and the benchmark's tables read it.
    """

    name: str  # its key in drift.json and the benchmark's rows
    label: str  # in the summary line, before its p-value: "score KS p=..."
    title: str  # its column in the benchmark's trip-rate table
    statistic: str  # what its statistic is, in the report's table
    run: Callable[[Sample, Sample, float], TestResult]  # (reference, batch, alpha)
    skipped: Callable[[Sample, Sample], str | None]  # why it cannot run; None when it can
    reason: Callable[[TestResult], str]  # why it tripped, for the report's reasons
    effect_label: str  # its effect size: "score D", "codes D", "labels TV"
    material: float  # the effect at which a drift is worth an alarm (MATERIAL)
    p_note: str = ""  # beside its p-value in the report


# The effect sizes at which a drift is material, so the event fires: how far the scores
# moved towards the anomalous end (KS D+), the largest KS D over the code's dimensions, the
# total-variation distance of the label shares. Each is the 99th percentile of its effect
# over 200 batches of 1,000 new-writer images from the first half of the MNIST test split
# (images 0-4,999), on which the statistical tests alone trip on about one batch in five
# (python -m benchmarks.drift; docs/drift.md).
MATERIAL = {"score": 0.0502, "codes": 0.1783, "labels": 0.0640}

DRIFT_TESTS: tuple[DriftTest, ...] = (
    DriftTest("score", "score KS", "score KS", "KS D", score_test, _never_skipped,
              _score_reason, "score D+", MATERIAL["score"]),
    DriftTest("codes", "codes min", "codes KS", "KS D", codes_test, _codes_skipped,
              _codes_reason, "codes D", MATERIAL["codes"], p_note=" (smallest over dimensions)"),
    DriftTest("labels", "labels chi2", "labels chi2", "chi2", labels_test, labels_skipped,
              _labels_reason, "labels TV", MATERIAL["labels"]),
)
BY_NAME = {kind.name: kind for kind in DRIFT_TESTS}
TESTS = tuple(BY_NAME)


class GateResult(TypedDict, total=False):
    """The drift gate's outcome before training, as the pipeline passes it on.

    Always ``checked``, ``tripped`` and ``line`` (the summary's ``Drift: ...``); when the
    check ran, also the stage's output (``dir``, ``files``, ``hash``) and ``drift``, the
    ``drift.json`` of ``DriftReport.to_json`` (``flagged`` holds the share the anomaly
    score flags, which ``registry.hold_reason`` weighs).
    """

    checked: bool
    tripped: bool
    line: str
    dir: str
    files: dict[str, str]
    hash: str
    drift: dict[str, Any]


# ---- the reference split of a champion -------------------------------------------------

DEFAULT_VAL_SIZE = 10_000  # params.DataConfig's default




def reference_split(data_dir: Path, dataset: str, info: dict[str, Any]):
    """The validation split the champion was calibrated on, and where it came from.

    First choice: the processed splits folder under ``data/processed/<dataset>/``
    whose content hash is the ``splits_sha256`` that ``champion.json`` records (the
    very images of the calibration). Otherwise the base split is rebuilt from the
    raw IDX files with the recorded seed and validation size (a snapshot's added
    images are then missing); the returned source says which. Returns
    ``(Split, source)``; raises ``FileNotFoundError`` saying what to do.
    """
    from mnist_autoencoder.data.splits import load_splits
    from mnist_autoencoder.lifecycle.registry import TrainingRecord
    from mnist_autoencoder.paths import index_path, processed_dir, raw_dir
    from mnist_autoencoder.storage import read_indexed

    training = TrainingRecord.from_json(info.get("parameters"))
    wanted = info.get("splits_sha256")
    counts = training.counts if training else {}
    found = wanted and read_indexed(index_path(processed_dir(data_dir, dataset), wanted))
    if found:  # the index names it, and its files still hash as recorded
        split = load_splits(Path(found["dir"]), ("val",))["val"]
        return split, {"kind": "exact", "dir": found["dir"], "n": len(split.y),
                       "note": "the model's own validation split (its splits_sha256)"}
    from mnist_autoencoder.data.snapshots import base_id

    snapshot = info.get("snapshot")
    grown = bool(snapshot) and snapshot != base_id(dataset)  # batches joined the splits
    seed = training.seed if training else 0
    val_size = DEFAULT_VAL_SIZE if grown or "val" not in counts else int(counts["val"])
    raw = raw_dir(Path(data_dir), dataset)
    split = rebuild_validation_split(raw, dataset, val_size, seed)
    note = (f"no processed split under {processed_dir(Path(data_dir), dataset)} matches the "
            "champion's splits_sha256: the base validation split rebuilt from the raw files "
            f"(seed {seed}, val_size {val_size})")
    if grown:
        note += (f"; the model trained on snapshot {snapshot}, whose ingested images are not "
                 f"in it, and the default val_size {DEFAULT_VAL_SIZE} was assumed")
    return split, {"kind": "rebuilt", "dir": str(raw), "n": len(split.y), "seed": seed,
                   "val_size": val_size, "note": note}


def rebuild_validation_split(raw: Path, dataset: str, val_size: int, seed: int):
    """The base validation split of the raw IDX files in ``raw``, as ``build_splits`` cuts it."""
    from mnist_autoencoder.data.catalog import get_dataset
    from mnist_autoencoder.data.idx import load_images_and_labels
    from mnist_autoencoder.data.preprocessing import split_train_val
    from mnist_autoencoder.data.splits import Split, normalize

    names = get_dataset(dataset).file_names()
    paths = {role: Path(raw) / name for role, name in names.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:  # a user's problem (exit 2, no traceback); still a FileNotFoundError
        from mnist_autoencoder.errors import MissingFileError

        raise MissingFileError(
            f"no validation split of {dataset} to compare with: {missing[0]} is missing and no "
            f"processed split matches the champion; run `python -m flows.autoencoder --dataset "
            f"{dataset}` with the same --data-dir (it downloads and splits the data)")
    images, labels = load_images_and_labels(paths["train_images"], paths["train_labels"])
    _, val = split_train_val(len(images), val_size, seed)
    return Split(normalize(images[val]), labels[val], val)


def reference_problem(data_dir: Path, dataset: str) -> str | None:
    """Why no reference split can be found under ``data_dir``; None if one can (no hashing)."""
    from mnist_autoencoder.data.catalog import get_dataset
    from mnist_autoencoder.paths import processed_dir, raw_dir

    if any(processed_dir(Path(data_dir), dataset).glob("*/splits.json")):
        return None
    raw = raw_dir(Path(data_dir), dataset)
    if all((raw / name).is_file() for name in get_dataset(dataset).file_names().values()):
        return None
    return (f"neither processed splits ({processed_dir(Path(data_dir), dataset)}) nor raw files "
            f"({raw}) of {dataset} are there to rebuild the champion's validation split; give "
            "the --data-dir the champion was trained with")
