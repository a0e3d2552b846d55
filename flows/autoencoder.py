"""The pipeline as one Prefect flow: download -> preprocess -> train -> evaluate -> report.

Around that spine, ``baselines`` (PCA, raw-pixel probe; needs no model) and
``analyze`` (linear probe, latent statistics, anomalies) measure the
representation, and ``promote`` replaces the dataset's champion
(``artifacts/models/<dataset>/champion/``) only if the new one is at least as good.

On a grown snapshot, ``parent`` finds the model trained on the data it grew
from; ``drift`` checks the new batches against it before training, and
``train``, ``baselines`` and ``analyze`` start from the parent's weights, probes
and t-SNE layout (a warm start: a fraction of a run from scratch). A drifted
batch of anomalous images holds the promotion for review (``drift_policy``).

Run it with ``python -m flows.autoencoder [--name value ...]``; ``--help`` lists the
parameters and their defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.data import run_data_stages
from flows.summary import StageRun, format_summary, run_stage
from mnist_autoencoder.lifecycle.gc import lease
from mnist_autoencoder.lifecycle.registry import decision_event
from mnist_autoencoder.params import (
    DataConfig,
    PathsConfig,
    PipelineConfig,
    TrainingConfig,
    validate_pipeline,
)
from mnist_autoencoder.roots import published_url
from tasks.analyze import analyze
from tasks.baselines import baselines
from tasks.corrupt import corrupt
from tasks.drift import drift_gate
from tasks.evaluate import evaluate
from tasks.ingest import snapshot_of
from tasks.lineage import resolve_parent
from tasks.promote import promote
from tasks.report import report
from tasks.train import train


@flow(name="mnist-autoencoder", validate_parameters=True)
def mnist_autoencoder(
    data: DataConfig = DataConfig(),
    training: TrainingConfig = TrainingConfig(),
    paths: PathsConfig = PathsConfig(),
    pipeline: PipelineConfig = PipelineConfig(),
) -> dict[str, Any]:
    """Train, evaluate and report the seed's shallow autoencoder; promote it if it is as good.

    Args:
        data: which dataset, where from, and how it is split.
        training: epochs, batch size, learning rate, patience.
        paths: where data and artifacts go.
        pipeline: the code size, the promotion tolerance, and how a retrain on a grown
            snapshot starts (warm_*) and what a drift does to its promotion (drift_policy).
            A held model is trained and reported; the champion stays until a person
            reruns with drift_policy record.
    """
    # a run triggered by mnist.snapshot.created gets the event's resource id
    data = data.model_copy(update={"snapshot": snapshot_of(data.snapshot)})
    validate_pipeline(data, training, paths, pipeline)
    remote = paths.remote
    # the folders, or scratch mirrors of storage URLs, pushed back at the end (docs/storage.md)
    with paths.local() as paths:
        if remote:  # the state checks, now that the mirror is pulled
            validate_pipeline(data, training, paths, pipeline)
        return _pipeline(data, training, paths, pipeline)


def _pipeline(data: DataConfig, training: TrainingConfig, paths: PathsConfig,
              pipeline: PipelineConfig) -> dict[str, Any]:
    # gc (make gc) removes nothing this run uses, and waits for it
    with lease(paths.data_dir, {"flow": "mnist-autoencoder", "artifacts_dir": paths.artifacts_dir,
                                "dataset": data.dataset, "snapshot": data.snapshot}):
        stages: list[StageRun] = []
        raw, snapshot, splits = run_data_stages(data, paths, stages)
        common = {"splits": splits, "artifacts_dir": paths.artifacts_dir}
        parent = run_stage(resolve_parent, stages, snapshot=snapshot,
                           latent_dim=pipeline.latent_dim,
                           artifacts_dir=paths.artifacts_dir)
        warm = pipeline.warm_start and parent["model"] is not None
        # Before train: these baselines need no model, and running them while TensorFlow is
        # not yet loaded keeps the run's peak memory under 2 GiB (measured 2.3 GiB after).
        # Not beside train: on 2 cores that was slower (69.0 s against 63.6 s) and peaked
        # at 2.2 GiB, since both stages already use both cores.
        references = run_stage(baselines, stages, **common, latent_dim=pipeline.latent_dim,
                               seed=data.seed, warm=parent["baselines"] if warm else None)
        corrupted = run_stage(corrupt, stages, **common, test_sha256=splits["test_sha256"],
                              seed=data.seed)
        gate = run_stage(drift_gate, stages, model=parent["model"], batches=parent["new_batches"],
                         reference=parent["reference"], reason=parent["reason"],
                         dataset=data.dataset, data_dir=paths.data_dir,
                         artifacts_dir=paths.artifacts_dir)
        trained = run_stage(train, stages, **common, latent_dim=pipeline.latent_dim,
                            seed=data.seed, training=pipeline.schedule(
                                training, warm, sum(b["count"] for b in parent["new_batches"])),
                            init=parent["model"] if warm else None,
                            new_batches=[b["id"] for b in parent["new_batches"]] if warm else None,
                            replay=pipeline.warm_replay if warm else 0)
        evaluation = run_stage(evaluate, stages, **common, trained=trained)
        analysis = run_stage(analyze, stages, **common, trained=trained, evaluation=evaluation,
                             baselines=references, corrupted=corrupted, seed=data.seed,
                             warm=parent["analysis"] if warm else None)
        decision = run_stage(promote, stages, **common, trained=trained, evaluation=evaluation,
                             raw=raw, dataset=data.dataset, tolerance=pipeline.promotion_tolerance,
                             drift=gate, drift_policy=pipeline.drift_policy)
        written = run_stage(report, stages, raw=raw, splits=splits, trained=trained,
                            evaluation=evaluation, analysis=analysis, decision=decision,
                            drift=gate, artifacts_dir=paths.artifacts_dir)
        # on a store: the report's object there (docs/storage.md)
        report_path = published_url(Path(written["dir"]) / "report.html")
        notes = [f"Training: {'warm start from ' + parent['reason'] if warm else 'from scratch'}",
                 gate["line"],
                 f"Decision: {decision_event(decision)} ({decision['reason']})"]
        outputs = {"download": raw, "preprocess": splits, "train": trained, "evaluate": evaluation,
                   "baselines": references, "analyze": analysis, "report": written}
        return {"stages": [vars(s) for s in stages], "metrics": evaluation["metrics"],
                "decision": decision, "parent": parent["reason"], "drift": gate,
                "outputs": {stage: value["dir"] for stage, value in outputs.items()},
                "report": report_path,
                "analysis": analysis["summary"],
                "summary": format_summary(stages, evaluation["metrics"] | {
                    f"probe ({k})": v for k, v in analysis["summary"]["probe_accuracy"].items()},
                    report_path, notes)}


if __name__ == "__main__":
    from flows.cli import main

    main(mnist_autoencoder, validate_pipeline, prog="python -m flows.autoencoder")
