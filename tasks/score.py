"""score: a trained model scores new images, streamed in chunks (``scoring.batch``).

``score`` is cached on the model's content, the input's content and the rate:
the same input with the same champion is a cached no-op; a new champion rescores.
On a Dask cluster the input is cut into shards, each a ``score`` task on a
worker, and ``merge`` joins their tables and summaries.
"""

from __future__ import annotations

from functools import reduce
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mnist_autoencoder.data.inputs import open_input
from mnist_autoencoder.lifecycle.registry import champion_files, scoring_model_dir
from mnist_autoencoder.paths import download_dir, is_url, models_dir, stage_root
from mnist_autoencoder.reports.score import summary_files
from mnist_autoencoder.roots import task_roots
from mnist_autoencoder.scoring.batch import Summary, new_summary, score_chunks
from mnist_autoencoder.scoring.scores import DEFAULT_SCORE, load_scorer
from mnist_autoencoder.storage import describe_outputs, write_parquet_stream
from tasks.caching import stage_task_options
from tasks.io import StageIO, read

SCORES_FILE = "scores.parquet"


@task(name="model", cache_policy=NO_CACHE)
def resolve_model(dataset: str, model: str, artifacts_dir: str) -> dict[str, Any]:
    """The model's folder as it is now, described (so a new champion changes the key)."""
    directory = scoring_model_dir(models_dir(artifacts_dir), dataset, model)
    return describe_outputs(directory, list(champion_files(directory)))


@task(name="input", cache_policy=NO_CACHE)
def inspect_input(location: str, data_dir: str) -> dict[str, Any]:
    """Find the input's files (downloading a URL once) and hash their content."""
    downloads = download_dir(data_dir, location)
    found = open_input(location, download_dir=downloads)
    local = str(downloads) if is_url(location) else location
    return {"location": local, "kind": found.kind, "fingerprint": found.fingerprint()}


@task(**stage_task_options("score", ignore=("location",)),
      task_run_name="score-shard{shard}-of-{shards}")
def score(model: dict[str, Any], location: str, fingerprint: str, fpr: float,
          artifacts_dir: str, score_name: str = DEFAULT_SCORE, shard: int = 0,
          shards: int = 1) -> dict[str, Any]:
    """Score every image of the input (of one shard of it); write ``scores.parquet``.

    A whole input also gets its summary; a shard gets ``summary.npz`` for ``merge``.
    """
    with task_roots():  # on a Dask worker: the store's mirrors (docs/storage.md)
        io = StageIO(stage_root(artifacts_dir, "score"), model)
        scorer = load_scorer(model["dir"])
        summary = new_summary(scorer, fpr, score_name)
        chunks = open_input(location).iter_chunks(shard=shard, shards=shards)
        with io.streaming() as tmp:
            _write_tables(tmp / SCORES_FILE, score_chunks(scorer, chunks, summary, score_name))
            io.put(tmp, _summary_outputs(scorer, summary, model, location, score_name)
                   if shards == 1
                   else {"summary.npz": summary.to_arrays()})
        if shards > 1:
            return io.describe(count=summary.count)
        return _published(io, io.describe(summary=summary.as_json()), fpr)


@task(**stage_task_options("score_merge", ignore=("location",)))
def merge(parts: list[dict[str, Any]], model: dict[str, Any], location: str,
          fpr: float, artifacts_dir: str, score_name: str = DEFAULT_SCORE) -> dict[str, Any]:
    """One ``scores.parquet`` and one summary from the shards' outputs."""
    io = StageIO(stage_root(artifacts_dir, "score"), model, *parts)
    summaries = [Summary.from_arrays(read(part, "summary.npz")) for part in parts]
    summary = reduce(Summary.merge, summaries)
    tables = (batch for part in parts if SCORES_FILE in part["files"]
              for batch in pq.ParquetFile(Path(part["dir"]) / SCORES_FILE).iter_batches())
    with io.streaming() as tmp:
        _write_tables(tmp / SCORES_FILE, (pa.Table.from_batches([b]) for b in tables))
        io.put(tmp, _summary_outputs(load_scorer(model["dir"]), summary, model, location,
                                     score_name))
    return _published(io, io.describe(summary=summary.as_json()), fpr)


def _write_tables(path: Path, tables) -> None:
    write_parquet_stream(path, tables, dictionary=("source", "label"))


def _summary_outputs(scorer, summary: Summary, model: dict[str, Any],
                     location: str, score_name: str) -> dict[str, Any]:
    return summary_files(summary, scorer.calibration.name(score_name),
                         scorer.calibration.quantiles(score_name),
                         scorer.reconstruct(summary.top_x), model, location)


def _published(io: StageIO, result: dict[str, Any], fpr: float) -> dict[str, Any]:
    counts = result["summary"]
    create_markdown_artifact(
        key="mnist-score-summary", description="Anomaly scores of a batch of images",
        markdown=f"**{counts['count']} images scored, {counts['flagged']} flagged "
                 f"({counts['flagged_share']:.2%}; expected {fpr:.2%} on data like the "
                 f"training data).** Scores: `{Path(result['dir']) / SCORES_FILE}`")
    io.publish("mnist-score-report", "summary.html", "Scoring summary (opens offline)")
    return result
