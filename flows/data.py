"""The data stages every training flow starts with: download -> snapshot -> preprocess."""

from __future__ import annotations

from typing import Any

from flows.summary import StageRun, run_stage
from mnist_autoencoder.params import DataConfig, PathsConfig
from tasks.download import download
from tasks.ingest import resolve_snapshot
from tasks.preprocess import preprocess


def run_data_stages(data: DataConfig, paths: PathsConfig, stages: list[StageRun]
                    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Return the (raw, snapshot, splits) descriptions of ``data``; ``paths`` must be resolved."""
    raw = run_stage(download, stages, dataset=data.dataset, source=data.source,
                    data_dir=paths.data_dir)
    snapshot = run_stage(resolve_snapshot, stages, dataset=data.dataset, snapshot=data.snapshot,
                         data_dir=paths.data_dir)
    splits = run_stage(preprocess, stages, raw=raw, snapshot=snapshot, dataset=data.dataset,
                       val_size=data.val_size, seed=data.seed, train_subset=data.train_subset,
                       data_dir=paths.data_dir)
    return raw, snapshot, splits
