"""The drift gate on synthetic arrays: no TensorFlow, no Prefect."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mnist_autoencoder.lifecycle.registry import hold_reason
from mnist_autoencoder.scoring import drift
from mnist_autoencoder.scoring.drift import MIN_BATCH, Sample, detect, pool_classes
from tests.helpers import PROJECT


def sample(n, rng, shift=0.0, code_shift=0.0, labels=True, without=None, dims=8):
    """Scores ~ N(shift, 1); ReLU-like codes with two dead units; labels 0-9 uniform."""
    y = rng.integers(0, 10, n)
    if without is not None:
        y = np.where(y == without, (without + 1) % 10, y)
    codes = np.maximum(rng.normal(code_shift, 1.0, (n, dims)), 0)
    codes[:, :2] = 0  # dead units
    return Sample(rng.normal(shift, 1.0, n), codes, y if labels else None)


@pytest.fixture(scope="module")
def reference():
    return sample(5000, np.random.default_rng(0))


def test_same_distribution_rarely_trips_and_p_values_are_uniform(reference):
    rng = np.random.default_rng(1)
    reports = [detect(reference, sample(500, rng)) for _ in range(100)]
    false_alarms = np.mean([r.drift for r in reports])
    assert false_alarms <= 0.10  # the gate's alpha is 5%; 100 draws
    score_p = np.array([r.test("score").p_value for r in reports])
    assert 0.35 < np.mean(score_p) < 0.65  # roughly uniform under the null
    assert np.mean(score_p < 0.1) < 0.2
    assert all(r.test("codes").detail["dimensions_tested"] == 6 for r in reports)
    assert all(r.test("codes").detail["dead_dimensions"] == [0, 1] for r in reports)


def test_the_core_module_imports_neither_tensorflow_nor_prefect():
    code = ("import sys, mnist_autoencoder.scoring.drift; "
            "print(sorted({'tensorflow', 'prefect'} & set(sys.modules)))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=PROJECT, check=True)
    assert found.stdout.strip() == "[]"


def test_thresholds_split_alpha_by_bonferroni(reference):
    report = detect(reference, sample(500, np.random.default_rng(2)))
    score, codes, labels = (report.test(name) for name in drift.TESTS)
    assert score.threshold == labels.threshold == pytest.approx(0.05 / 3)
    assert codes.threshold == pytest.approx(0.05 / 3 / 6)  # 6 live dimensions
    unlabelled = detect(reference, sample(500, np.random.default_rng(2), labels=False))
    assert unlabelled.test("score").threshold == pytest.approx(0.05 / 2)


@pytest.mark.parametrize("change, test", [({"shift": 0.3}, "score"),
                                          ({"code_shift": 0.3}, "codes"),
                                          ({"without": 3}, "labels")])
def test_a_shift_trips_the_test_that_sees_it(reference, change, test):
    report = detect(reference, sample(1000, np.random.default_rng(3), **change))
    assert report.drift and report.test(test).drift
    assert report.line().startswith("Drift: yes (")
    assert any(reason.startswith(test) or test == "score" and "anomaly score" in reason
               for reason in report.reasons)
    if test == "labels":
        assert "missing from the batch: 3" in " ".join(report.reasons)


def test_a_drift_is_material_only_when_its_effect_reaches_the_alarm_threshold(reference):
    small = detect(reference, sample(5000, np.random.default_rng(7), shift=0.08))
    large = detect(reference, sample(1000, np.random.default_rng(7), shift=1.0))
    missing = detect(reference, sample(1000, np.random.default_rng(7), without=3))
    for report in (small, large, missing):
        assert report.drift
        for test in report.tests:
            kind = drift.BY_NAME[test.name]
            assert test.material == (test.drift and test.effect >= kind.material), test.name
        assert report.material == any(t.material for t in report.tests)
    # KS D of the scores: a 0.08 shift moves about 3% of the mass, a shift of 1 about 38%
    assert small.test("score").effect < 0.05 < 0.3 < large.test("score").effect
    assert large.material and "; material: score D+" in large.line()
    # the labels' total-variation distance: one digit of ten missing moves about a tenth
    assert 0.08 < missing.test("labels").effect < 0.2  # 0.1, plus sampling noise
    if not small.material:
        assert small.line().endswith("; below every alarm effect size)")


def test_no_labels_skips_the_label_test_and_says_so(reference):
    report = detect(reference, sample(500, np.random.default_rng(4), labels=False))
    labels = report.test("labels")
    assert labels.skipped == "the batch has no labels" and labels.p_value is None
    assert "labels skipped: the batch has no labels" in report.line()
    assert "labels test skipped: the batch has no labels" in report.reasons
    partial = sample(500, np.random.default_rng(4))
    partial.labels[:10] = drift.NO_LABEL
    assert detect(reference, partial).test("labels").skipped == "10 of 500 images have no label"


def test_a_batch_below_the_minimum_is_refused_naming_it(reference):
    with pytest.raises(ValueError, match=f"at least {MIN_BATCH}: below that the tests"):
        detect(reference, sample(MIN_BATCH - 1, np.random.default_rng(5)))
    detect(reference, sample(MIN_BATCH, np.random.default_rng(5)))


def test_the_report_is_json_ready_and_has_a_table(reference):
    report = detect(reference, sample(500, np.random.default_rng(6), shift=0.5))
    value = json.loads(json.dumps(report.to_json()))
    assert value["drift"] is True and [t["name"] for t in value["tests"]] == list(drift.TESTS)
    assert {"statistic", "p_value", "threshold", "drift", "skipped"} <= set(value["tests"][0])
    assert "| score | KS D" in report.markdown() and "**Drift: yes.**" in report.markdown()


def test_rare_classes_are_pooled_until_each_is_expected_five_times():
    counts = {0: (5000, 500), 1: (4930, 493), 2: (60, 6), 3: (10, 1), 4: (0, 2)}
    groups = pool_classes(counts)
    assert sorted(map(sorted, groups)) == [[0], [1], [2, 3, 4]]
    assert pool_classes({0: (10, 1), 1: (10, 1)}) == [[0, 1]]  # nothing left to compare


def test_a_class_the_reference_never_had_is_drift_not_a_crash(reference):
    batch = sample(1000, np.random.default_rng(7))
    batch.labels[:100] = 11
    report = detect(reference, batch)
    assert report.test("labels").drift and np.isfinite(report.test("labels").statistic)


def test_reference_and_batch_samples_come_from_a_columns_callable():
    def columns(x):
        return {"codes": x[:, :4], "score": x.sum(axis=1), "bce": x.mean(axis=1)}

    x = np.random.default_rng(8).random((250, 784)).astype(np.float32)
    reference = drift.reference_sample(columns, x, np.arange(250) % 10)
    assert reference.codes.shape == (250, 4) and len(reference) == 250

    class Chunk:
        def __init__(self, rows):
            self.x, self.labels = x[rows], np.full(len(x[rows]), -1, np.int16)

    batch = drift.batch_sample(columns, [Chunk(slice(0, 100)), Chunk(slice(100, 250))])
    assert len(batch) == 250 and np.allclose(batch.scores, reference.scores)
    assert detect(reference, batch).test("labels").skipped == "the batch has no labels"


def test_the_flagged_shares_are_an_effect_size_beside_the_tests(reference):
    threshold = float(np.quantile(reference.scores, 0.99))
    clean = detect(reference, sample(2000, np.random.default_rng(9)), threshold=(threshold, 0.01))
    assert clean.flagged["reference"] == pytest.approx(0.01, abs=1e-3)
    assert clean.flagged["batch"] == pytest.approx(0.01, abs=0.008)
    shifted = detect(reference, sample(2000, np.random.default_rng(9), shift=1.0),
                     threshold=(threshold, 0.01))
    assert shifted.flagged["batch"] > 0.05
    assert "flagged as anomalous, 1% expected" in shifted.line()
    assert detect(reference, sample(500, np.random.default_rng(9))).flagged is None


def gate(tripped=True, share=0.10):
    return {"checked": True, "tripped": tripped, "line": "Drift: yes (...)", "dir": "/a/drift-k",
            "drift": {"flagged": {"batch": share, "reference": 0.01, "expected": 0.01,
                                  "threshold": 3.0}}}


@pytest.mark.parametrize("policy, state, holds", [
    ("hold-anomalous", gate(share=0.10), True),   # corrupted or foreign images
    ("hold-anomalous", gate(share=0.012), False),  # new writers, a class missing
    ("hold", gate(share=0.012), True),
    ("record", gate(share=0.50), False),
    ("hold", gate(tripped=False), False),
    ("hold", {"checked": False, "tripped": False, "line": "Drift: not checked (...)"}, False),
    ("hold", None, False),
])
def test_what_a_trip_does_to_the_promotion(policy, state, holds):
    reason = hold_reason(state, policy)
    assert (reason is not None) is holds
    if holds:
        assert "/a/drift-k/drift.md" in reason and "--drift-policy record" in reason
        assert ("10.0% of the new images" in reason) is (policy == "hold-anomalous")


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="unknown drift policy 'maybe'"):
        hold_reason(gate(), "maybe")
