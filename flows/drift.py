"""Drift: is a batch of images still like the data the dataset's champion was calibrated on?

Checks any batch the scoring flow reads (IDX, PNG folders, Parquet, ``.npy``)
against the champion's validation split, without ingesting it: a KS test on the
anomaly score, per-dimension KS tests on the codes, and a chi-square test on the
labels when the batch has them (``mnist_autoencoder.scoring.drift``; ``docs/drift.md``).
Run it with ``python -m flows.drift --batch PATH``; the output ends with
``Drift: yes (...)`` or ``Drift: no (...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.summary import StageRun, format_stages, run_stage
from mnist_autoencoder.data.catalog import datasets
from mnist_autoencoder.data.inputs import open_input
from mnist_autoencoder.data.pixels import InputError
from mnist_autoencoder.lifecycle.registry import scoring_model_dir
from mnist_autoencoder.params import PathsConfig, require, validate_images, validate_paths
from mnist_autoencoder.paths import is_url, models_dir, resolve_dir
from mnist_autoencoder.scoring.drift import MIN_BATCH, WHY_MIN_BATCH, reference_problem
from mnist_autoencoder.scoring.scores import read_calibration
from tasks.drift import drift
from tasks.score import inspect_input, resolve_model


def validate_drift(batch: str, dataset: str, paths: PathsConfig) -> None:
    """Raise for the first parameter of the drift flow that cannot work (champion included)."""
    validate_images("batch", batch)
    local = not is_url(batch)
    catalog = datasets()
    require(dataset in catalog, "dataset", dataset, f"choose one of {sorted(catalog)}")
    validate_paths(paths)
    if not paths.remote:  # else checked in the flow, once the mirrors are pulled
        read_calibration(scoring_model_dir(models_dir(resolve_dir(paths.artifacts_dir)),
                                           dataset, "champion"))  # intact and current
        problem = reference_problem(resolve_dir(paths.data_dir), dataset)
        require(problem is None, "data_dir", paths.data_dir, str(problem))
    if local:  # headers only: the size and the image shape, nothing decoded
        try:
            count = open_input(batch).count()
        except InputError as exc:
            require(False, "batch", batch, str(exc))
        require(count >= MIN_BATCH, "batch", batch, f"it holds {count} images; a drift check "
                f"needs at least {MIN_BATCH}: {WHY_MIN_BATCH}")


@flow(name="mnist-drift", validate_parameters=True)
def mnist_drift(batch: str, dataset: str = "mnist",
                paths: PathsConfig = PathsConfig()) -> dict[str, Any]:
    """Check a batch of images for drift against the dataset's champion, without ingesting it.

    Args:
        batch: the images: a directory, http(s) URL or file in any input format
            (python -m mnist_autoencoder.data.inputs lists them).
        dataset: whose champion and validation split are the reference (mnist, fashion_mnist).
        paths: where data (the champion's validation split) and artifacts are.
    """
    validate_drift(batch, dataset, paths)
    remote = paths.remote
    # the folders, or scratch mirrors of storage URLs, pushed back at the end (docs/storage.md)
    with paths.local() as paths:
        if remote:  # the state checks, now that the mirrors are pulled
            validate_drift(batch, dataset, paths)
        stages: list[StageRun] = []
        chosen = run_stage(resolve_model, stages, dataset=dataset, model="champion",
                           artifacts_dir=paths.artifacts_dir)
        found = run_stage(inspect_input, stages, location=batch, data_dir=paths.data_dir)
        checked = run_stage(drift, stages, model=chosen, location=found["location"],
                            fingerprint=found["fingerprint"], dataset=dataset,
                            data_dir=paths.data_dir, artifacts_dir=paths.artifacts_dir)
        result = checked["drift"]
        lines = [*format_stages(stages),
                 f"Reference: {result['n_reference']} images, {result['reference']['note']}",
                 f"Batch: {result['n_batch']} images; report {Path(checked['dir']) / 'drift.md'}",
                 *[f"  {reason}" for reason in result["reasons"]],
                 result["line"]]
        return {"stages": [vars(s) for s in stages], "drift": result["drift"], "result": result,
                "dir": checked["dir"], "summary": "\n".join(lines)}


if __name__ == "__main__":
    from flows.cli import main

    main(mnist_drift, validate_drift, prog="python -m flows.drift")
