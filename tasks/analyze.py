"""analyze: probe, latent views and anomalies of the model (``evaluation.analysis``)."""

from __future__ import annotations

import json
from typing import Any

from prefect import task

from mnist_autoencoder.evaluation.analysis import (
    analysis_content,
    analyze_representation,
    anomaly_table,
)
from mnist_autoencoder.evaluation.probes import read_states
from mnist_autoencoder.evaluation.reconstruction import TEST_ERRORS
from mnist_autoencoder.lifecycle.registry import model_sha256
from mnist_autoencoder.models.inference import apply_in_chunks, encode, load_model
from mnist_autoencoder.paths import MODEL_FILES, SOURCE_FILE, stage_root
from mnist_autoencoder.scoring.scores import DEFAULT_FPR, load_scorer
from tasks.caching import stage_task_options
from tasks.corrupt import CORRUPTED_FILE
from tasks.io import StageIO, read, read_splits


@task(**stage_task_options("analyze"))
def analyze(trained: dict[str, Any], evaluation: dict[str, Any], splits: dict[str, Any],
            baselines: dict[str, Any], corrupted: dict[str, Any], seed: int,
            artifacts_dir: str, warm: dict[str, Any] | None = None) -> dict[str, Any]:
    """Probe, latent views and anomalies; return ``{dir, files, hash, summary}``.

    ``corrupted``: the ``corrupt`` stage's test images; ``warm``: the parent model's
    analyze output, whose probe and t-SNE layout these start from.
    """
    io = StageIO(stage_root(artifacts_dir, "analyze"), trained, evaluation, splits, corrupted,
                 *([warm] if warm else []))
    data = read_splits(splits, ("train", "test"))
    decoder = load_model(trained["dir"], "decoder.keras")
    start = warm and {"probe": read_states(read(warm, "probes.npz")).get("codes"),
                      **read(warm, "views.npz")}
    outputs, summary = analyze_representation(
        data["train"], data["test"], encode(trained["dir"], data["train"].x),
        read(evaluation, TEST_ERRORS), lambda codes: apply_in_chunks(decoder, codes),
        baselines["summary"], seed, log=io.log, warm=start)
    scorer = load_scorer(trained["dir"])
    threshold = scorer.calibration.threshold(DEFAULT_FPR)
    io.log("Anomaly score on corrupted test digits")
    outputs["anomaly.csv"] = anomaly_table(scorer.score, threshold, data["test"].x,
                                           read(corrupted, CORRUPTED_FILE))
    outputs[SOURCE_FILE] = {"model_files": {name: trained["files"][name] for name in MODEL_FILES}}
    io.log(f"Representation summary: {json.dumps(summary)}")
    written = io.write(outputs, summary=summary)
    # a retrain on a grown snapshot starts from the analysis of its parent model
    io.index(analysis_content(model_sha256(outputs[SOURCE_FILE]["model_files"])), written)
    return written
