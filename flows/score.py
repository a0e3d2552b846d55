"""Scoring: the champion (or a registered model) scores new images: model -> input -> score.

Every image gets its code, reconstruction errors and the calibrated anomaly score;
``flagged`` marks those above the threshold that flags ``fpr`` of the validation
split. Run it with ``python -m flows.score --input PATH``; ``--help`` lists the rest.
With ``MNIST_AE_DASK_ADDRESS`` set, the input is scored in shards on that Dask
cluster (``MNIST_AE_SCORE_SHARDS``, default 4) and the shards are merged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow

from flows.runners import dask_address, task_runner
from flows.summary import StageRun, format_stages, run_stage
from mnist_autoencoder.params import PathsConfig, validate_score
from mnist_autoencoder.roots import published_url
from mnist_autoencoder.scoring.scores import DEFAULT_FPR, DEFAULT_SCORE
from tasks.score import SCORES_FILE, inspect_input, merge, resolve_model
from tasks.score import score as score_task

SHARDS_ENV = "MNIST_AE_SCORE_SHARDS"  # how many shards on a Dask cluster (default 4)


@flow(name="mnist-score", task_runner=task_runner(), validate_parameters=True)
def mnist_score(
    input: str,
    dataset: str = "mnist",
    model: str = "champion",
    fpr: float = DEFAULT_FPR,
    paths: PathsConfig = PathsConfig(),
    score: str = DEFAULT_SCORE,
) -> dict[str, Any]:
    """Score new images with a trained model: codes, errors, a calibrated anomaly score.

    Args:
        input: the images: a directory, http(s) URL or file in any input format
            (python -m mnist_autoencoder.data.inputs lists them).
        dataset: whose champion scores (mnist, fashion_mnist).
        model: "champion", or a run id from the registry (docs/database.md).
        fpr: the share of images like the validation split that is flagged.
        paths: where data and artifacts go.
        score: which anomaly score: typicality (two-sided: how unlikely the image's
            reconstruction statistics are, either way), or a one-sided one: max_z(bce,kl),
            max_z(bce,mse), bce, mse, kl (docs/scoring.md).
    """
    validate_score(input, dataset, model, fpr, paths, score)
    remote = paths.remote
    # the folders, or scratch mirrors of storage URLs, pushed back at the end (docs/storage.md)
    with paths.local() as paths:
        if remote:  # the model's checks, now that the mirrors are pulled
            validate_score(input, dataset, model, fpr, paths, score)
        stages: list[StageRun] = []
        chosen = run_stage(resolve_model, stages, dataset=dataset, model=model,
                           artifacts_dir=paths.artifacts_dir)
        found = run_stage(inspect_input, stages, location=input, data_dir=paths.data_dir)
        common = {"model": chosen, "location": found["location"], "fpr": fpr,
                  "score_name": score, "artifacts_dir": paths.artifacts_dir}
        if not dask_address():
            scored = run_stage(score_task, stages, **common, fingerprint=found["fingerprint"])
        else:  # shards on the cluster's workers, like sweep trials
            shards = int(os.environ.get(SHARDS_ENV) or 4)
            futures = [score_task.submit(**common, fingerprint=found["fingerprint"], shard=k,
                                    shards=shards) for k in range(shards)]
            scored = run_stage(merge, stages, **common, parts=[f.result() for f in futures])
        scores = published_url(Path(scored["dir"]) / SCORES_FILE)  # on a store: its object
        counts = scored["summary"]
        lines = [*format_stages(stages),
                 f"Images: {counts['count']}, flagged {counts['flagged']} "
                 f"({counts['flagged_share']:.2%}; expected {fpr:.2%} on data like the "
                 "training data)",
                 f"Summary: {published_url(Path(scored['dir']) / 'summary.html')}",
                 f"Scores: {scores}"]
        return {"stages": [vars(s) for s in stages], "model": chosen["dir"], "scores": scores,
                "counts": counts, "summary": "\n".join(lines)}




if __name__ == "__main__":
    from flows.cli import main

    main(mnist_score, validate_score, prog="python -m flows.score")
