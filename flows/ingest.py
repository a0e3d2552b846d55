"""Ingest: a batch of labelled images becomes the dataset's next snapshot: download -> ingest.

Run it with ``python -m flows.ingest --batch PATH``. The run ends with the line
``Snapshot: <id> (<n> new, <m> duplicates)``; the retraining deployment reacts
to the ``mnist.snapshot.created`` event it emits.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.summary import StageRun, format_stages, run_stage
from mnist_autoencoder.params import PathsConfig, validate_ingest
from tasks.download import download
from tasks.ingest import ingest


@flow(name="mnist-ingest", validate_parameters=True)
def mnist_ingest(
    batch: str,
    dataset: str = "mnist",
    source: str | None = None,
    paths: PathsConfig = PathsConfig(),
) -> dict[str, Any]:
    """Add a batch of labelled images to the dataset as a new, immutable snapshot.

    Args:
        batch: the labelled images: a directory, http(s) URL or file in an input format
            with labels (python -m mnist_autoencoder.data.inputs lists them).
        dataset: the dataset that grows (mnist, fashion_mnist, ...).
        source: where the base dataset's files come from if they are not yet in
            data/raw (as for the pipeline); empty for the public mirrors.
        paths: where data and artifacts go.
    """
    validate_ingest(batch, dataset, source, paths)
    # the folders, or scratch mirrors of storage URLs, pushed back at the end (docs/storage.md)
    with paths.local() as paths:
        return _ingest(batch, dataset, source, paths)


def _ingest(batch: str, dataset: str, source: str | None, paths: PathsConfig) -> dict[str, Any]:
    stages: list[StageRun] = []
    raw = run_stage(download, stages, dataset=dataset, source=source, data_dir=paths.data_dir)
    result = run_stage(ingest, stages, raw=raw, batch=batch, dataset=dataset,
                       data_dir=paths.data_dir)
    verdict = ("new snapshot" if result["created"] else
               "nothing new, the snapshot is unchanged")
    lines = [*format_stages(stages)[:-1],
             f"Batch: {result['offered']} images, {result['new']} new, "
             f"{result['duplicates']} already in {dataset}: {verdict}",
             f"Snapshot: {result['snapshot']} ({result['new']} new, "
             f"{result['duplicates']} duplicates)"]
    return result | {"stages": [vars(s) for s in stages], "summary": "\n".join(lines)}


if __name__ == "__main__":
    from flows.cli import main

    main(mnist_ingest, validate_ingest, prog="python -m flows.ingest")
