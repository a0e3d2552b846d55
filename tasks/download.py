"""download: fetch and verify the raw IDX files (``mnist_autoencoder.data.download``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from mnist_autoencoder.data.download import download_dataset
from mnist_autoencoder.paths import raw_dir
from tasks.caching import stage_task_options


@task(**stage_task_options("download"), retries=2, retry_delay_seconds=[5, 30])
def download(dataset: str, source: str | None, data_dir: str) -> dict[str, Any]:
    """Fetch and verify the raw IDX files; return ``{dir, files, hash}``.

    Files already present and verified are kept; every write is atomic.
    """
    return download_dataset(dataset, source, raw_dir(Path(data_dir), dataset),
                            log=get_run_logger().info)
