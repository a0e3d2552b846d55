"""drift: a batch checked against the champion's validation split (``mnist_autoencoder.drift``).

Cached like ``score``: on the model's content, the batch's content and the data
folder the reference comes from; the same batch against the same champion is a
cached no-op (and emits nothing again). A batch that drifts is announced as the
Prefect event ``mnist.drift.detected``; every check leaves the markdown artifact
``mnist-drift`` with its table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from mnist_autoencoder.drift import batch_sample, detect, reference_sample, reference_split
from mnist_autoencoder.inputs import open_input
from mnist_autoencoder.paths import stage_root
from mnist_autoencoder.registry import read_champion
from mnist_autoencoder.scoring import load_scorer
from tasks.caching import stage_task_options
from tasks.io import StageIO

EVENT = "mnist.drift.detected"
RESOURCE_PREFIX = "mnist.drift."  # resource ids: mnist.drift.<dataset>.<batch fingerprint[:12]>


@task(**stage_task_options("drift", ignore=("location",)))
def drift(model: dict[str, Any], location: str, fingerprint: str, dataset: str,
          data_dir: str, artifacts_dir: str) -> dict[str, Any]:
    """Compare the batch with the champion's validation split; write ``drift.json``/``.md``."""
    io = StageIO(stage_root(artifacts_dir, "drift"), model)
    scorer = load_scorer(model["dir"])
    split, source = reference_split(Path(data_dir), dataset, read_champion(model["dir"]) or {})
    io.log(f"Reference: {source['n']} images ({source['kind']}: {source['note']})")
    reference = reference_sample(scorer.columns, split.x, split.y)
    report = detect(reference, batch_sample(scorer.columns, open_input(location).iter_chunks()))
    result = report.to_json() | {"dataset": dataset, "fingerprint": fingerprint,
                                 "reference": source, "line": report.line()}
    markdown = (f"# Drift check of a {dataset} batch\n\nBatch `{location}` (content "
                f"{fingerprint[:12]}); reference: {source['note']}.\n\n{report.markdown()}")
    written = io.write({"drift.json": result, "drift.md": markdown}, drift=result)
    create_markdown_artifact(key="mnist-drift", markdown=markdown,
                             description=f"Drift check: {report.line()}")
    if report.drift:
        emit_event(event=EVENT,
                   resource={"prefect.resource.id": f"{RESOURCE_PREFIX}{dataset}."
                                                    f"{fingerprint[:12]}",
                             "prefect.resource.name": f"{dataset} batch {fingerprint[:12]}",
                             "dataset": dataset},
                   payload={k: result[k] for k in ("drift", "alpha", "n_reference", "n_batch",
                                                   "tests", "reasons", "line")}
                   | {"location": location, "report": str(Path(written["dir"]) / "drift.md")})
        io.log(f"{report.line()}; event {EVENT} emitted")
    else:
        io.log(report.line())
    return written
