"""drift: a batch checked against a model's validation split (``mnist_autoencoder.scoring.drift``).

Two stages of that name share the check and what follows it. ``drift`` (flow
``mnist-drift``) checks any batch against the dataset's champion without
ingesting it; ``drift_gate`` (the pipeline, before ``train``) checks the batches
a snapshot added since its parent model (``mnist_autoencoder.lifecycle.lineage``) against
that model. Both are cached on the model's content, the images' content and the
data folder the reference comes from: the same images against the same model
are checked, and announced, once. A batch that drifts is announced as the
Prefect event ``mnist.drift.detected``; every check leaves the markdown
artifact ``mnist-drift`` with its table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from mnist_autoencoder.data.inputs import open_input
from mnist_autoencoder.data.snapshots import batch_shards, sample_batches
from mnist_autoencoder.data.splits import SAMPLE_LIMITS, normalize
from mnist_autoencoder.lifecycle.registry import read_champion
from mnist_autoencoder.paths import stage_root
from mnist_autoencoder.scoring.drift import (
    MIN_BATCH,
    WHY_MIN_BATCH,
    GateResult,
    Sample,
    batch_sample,
    detect,
    reference_sample,
    reference_split,
    validation_reference,
)
from mnist_autoencoder.scoring.scores import DEFAULT_FPR, load_scorer
from mnist_autoencoder.storage import sha256_json
from tasks.caching import stage_task_options
from tasks.io import StageIO

EVENT = "mnist.drift.detected"
RESOURCE_PREFIX = "mnist.drift."  # resource ids: mnist.drift.<dataset>.<images' hash[:12]>


@task(**stage_task_options("drift", ignore=("location",)))
def drift(model: dict[str, Any], location: str, fingerprint: str, dataset: str,
          data_dir: str, artifacts_dir: str) -> dict[str, Any]:
    """Compare the batch with the champion's validation split; write ``drift.json``/``.md``."""
    io = StageIO(stage_root(artifacts_dir, "drift"), model)
    scorer = load_scorer(model["dir"])
    batch = batch_sample(scorer.columns, open_input(location).iter_chunks())
    return _check(io, scorer, read_champion(model["dir"]) or {}, batch, dataset, data_dir,
                  fingerprint, f"batch `{location}`", {"location": location})


@task(**stage_task_options("drift"))
def drift_gate(model: dict[str, Any] | None, batches: list[dict[str, Any]],
               reference: dict[str, Any] | None, reason: str, dataset: str, data_dir: str,
               artifacts_dir: str) -> GateResult:
    """Check the snapshot's new batches against the parent model, before training on them.

    ``model`` is the parent's stored model (None: no parent, nothing to check),
    ``batches`` the batches added since its snapshot, ``reference`` the registry
    fields that find its validation split. Returns ``{checked, tripped, line, ...}``.
    """
    if model is None:
        return GateResult(checked=False, tripped=False, line=f"Drift: not checked ({reason})")
    io = StageIO(stage_root(artifacts_dir, "drift"), model)
    count = sum(b["count"] for b in batches)
    if count < MIN_BATCH:
        line = (f"Drift: not checked ({count} new images since the parent's snapshot; the "
                f"gate needs at least {MIN_BATCH}: {WHY_MIN_BATCH})")
        io.log(line)
        return GateResult(checked=False, tripped=False, line=line)
    scorer = load_scorer(model["dir"])
    # a bounded sample: the test's power is settled long before 10,000 images (docs/drift.md)
    images, labels = sample_batches(batch_shards(Path(data_dir), batches),
                                    SAMPLE_LIMITS["recent"])
    fingerprint = sha256_json([b["sha256"] for b in batches])
    names = ", ".join(b["id"] for b in batches)
    sample = reference_sample(scorer.columns, normalize(images), labels)
    checked = _check(io, scorer, reference, sample,
                     dataset, data_dir, fingerprint, f"the new batches {names} ({count} images)",
                     {"parent_snapshot": reference["snapshot"], "batches": names})
    return GateResult(**checked, checked=True, tripped=checked["drift"]["drift"])


def _check(io: StageIO, scorer, info: dict[str, Any], batch: Sample, dataset: str,
           data_dir: str, fingerprint: str, what: str,
           context: dict[str, Any]) -> dict[str, Any]:
    """Test ``batch`` against the model's validation split; write, publish and announce."""
    split, source = reference_split(Path(data_dir), dataset, info)
    io.log(f"Reference: {source['n']} images ({source['kind']}: {source['note']})")
    report = detect(validation_reference(scorer.columns, split.x, split.y), batch,
                    threshold=(scorer.calibration.threshold(DEFAULT_FPR), DEFAULT_FPR))
    result = report.to_json() | {"dataset": dataset, "fingerprint": fingerprint,
                                 "reference": source, "line": report.line()}
    markdown = (f"# Drift check of a {dataset} batch\n\n{what[0].upper() + what[1:]} "
                f"(content {fingerprint[:12]}); reference: {source['note']}.\n\n"
                f"{report.markdown()}")
    written = io.write({"drift.json": result, "drift.md": markdown}, drift=result)
    create_markdown_artifact(key="mnist-drift", markdown=markdown,
                             description=f"Drift check: {report.line()}")
    if report.material:  # a drift large enough to act on, not every statistical trip
        emit_event(event=EVENT,
                   resource={"prefect.resource.id": f"{RESOURCE_PREFIX}{dataset}."
                                                    f"{fingerprint[:12]}",
                             "prefect.resource.name": f"{dataset} batch {fingerprint[:12]}",
                             "dataset": dataset},
                   payload={k: result[k] for k in ("drift", "material", "alpha", "n_reference",
                                                   "n_batch", "tests", "reasons", "flagged",
                                                   "line")}
                   | context | {"report": str(Path(written["dir"]) / "drift.md")})
        io.log(f"{report.line()}; event {EVENT} emitted")
    else:
        io.log(report.line())
    return written | {"line": report.line()}
