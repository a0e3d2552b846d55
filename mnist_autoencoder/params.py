"""The flows' parameters as typed groups, and their validation before any work.

Three groups are shared by every flow: ``DataConfig`` (which data, which split),
``TrainingConfig`` (how to fit) and ``PathsConfig`` (where things go); the
pipeline adds ``PipelineConfig`` (code size, promotion, retraining). Prefect
turns them into the deployments' parameter schema; ``flows.cli`` turns their
fields into command-line options and ``--help``. Types are checked by pydantic;
ranges by the ``validate_*`` functions here, which raise ``ParameterError`` with
a message that names the parameter and what is allowed. Per-dataset facts (the
training-set size) come from the dataset catalog.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mnist_autoencoder.data.catalog import datasets
from mnist_autoencoder.data.download import local_source_dir
from mnist_autoencoder.data.inputs import describe_formats, format_of
from mnist_autoencoder.errors import ParameterError
from mnist_autoencoder.lifecycle.registry import (
    DEFAULT_POLICY,
    DEFAULT_TOLERANCE,
    POLICIES,
    check_layout,
)
from mnist_autoencoder.mirror import probe
from mnist_autoencoder.models.training import TrainingConfig
from mnist_autoencoder.paths import models_dir, resolve_dir
from mnist_autoencoder.roots import local_roots
from mnist_autoencoder.store import ARTIFACTS_DIR_ENV, DATA_DIR_ENV, is_remote


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Group):
    """Which data, and how it is split."""

    dataset: str = Field("mnist", description="a dataset of the catalog: mnist, fashion_mnist")
    source: str | None = Field(None, description="local directory, file:// URL or http(s) base "
                               "URL holding the four .gz IDX files; empty for the public mirrors")
    val_size: int = Field(10_000, description="training images held out for validation")
    train_subset: int = Field(0, description="train on only this many of the remaining images "
                              "(0 = all); validation and test sets stay whole")
    seed: int = Field(0, description="seeds the train/validation split (in the pipeline also the "
                      "weight initialisation and the batch order)")
    snapshot: str = Field("latest", description="which snapshot of the dataset: latest, or an id "
                          "that `python -m flows.ingest` printed (reproduces that data)")


class PathsConfig(_Group):
    """Where data and artifacts go: local folders (relative ones anchored at the project) or
    storage URLs (``s3://bucket/prefix``: docs/storage.md); the defaults come from
    ``MNIST_AE_DATA_DIR`` and ``MNIST_AE_ARTIFACTS_DIR`` where set (for deployments)."""

    data_dir: str = Field(default_factory=lambda: os.environ.get(DATA_DIR_ENV) or "data",
                          description="where raw and processed data go: a folder or a URL")
    artifacts_dir: str = Field(
        default_factory=lambda: os.environ.get(ARTIFACTS_DIR_ENV) or "artifacts",
        description="where models, metrics and reports go: a folder or a URL")

    @property
    def remote(self) -> bool:
        return is_remote(self.data_dir) or is_remote(self.artifacts_dir)

    def resolved(self) -> PathsConfig:
        """The same paths, local ones made absolute (URLs as they are)."""
        return PathsConfig(**{name: value if is_remote(value) else str(resolve_dir(value))
                              for name, value in self.model_dump().items()})

    @contextlib.contextmanager
    def local(self) -> Iterator[PathsConfig]:
        """The folders a flow works in: these, resolved, or the scratch mirrors of URLs,
        pulled now and pushed when the block ends (``roots.local_roots``)."""
        resolved = self.resolved()
        with local_roots(resolved.data_dir, resolved.artifacts_dir) as (data, artifacts):
            yield PathsConfig(data_dir=data, artifacts_dir=artifacts)


def require(condition: bool, name: str, value: Any, allowed: str) -> None:
    if not condition:
        raise ParameterError(f"Invalid parameter {name}={value!r}: {allowed}.")


def validate_source(dataset: str, source: str | None) -> None:
    """The dataset is in the catalog and its source, if local, is a directory."""
    catalog = datasets()
    require(dataset in catalog, "dataset", dataset, f"choose one of {sorted(catalog)}")
    if source and not is_remote(source):  # a URL (http, s3, ...) is checked when fetched
        directory = local_source_dir(source)
        require(directory.is_dir(), "source", source,
                f"{directory} is not a directory; give a directory or file:// URL holding "
                "the four .gz IDX files, an http(s) base URL, or nothing for the public mirrors")


def validate_data(data: DataConfig) -> None:
    validate_source(data.dataset, data.source)
    catalog = datasets()
    train_size = catalog[data.dataset].train_size
    require(0 < data.val_size < train_size, "val_size", data.val_size,
            f"must leave training data: 1 <= val_size < {train_size} ({data.dataset})")
    require(data.train_subset >= 0, "train_subset", data.train_subset,
            "must be 0 (all) or a positive number of images")
    require(data.seed >= 0, "seed", data.seed, "must be a non-negative integer")


def validate_training(training: TrainingConfig) -> None:
    for name in ("epochs", "batch_size", "patience"):
        require(getattr(training, name) >= 1, name, getattr(training, name), "must be at least 1")
    require(0 < training.learning_rate <= 1, "learning_rate", training.learning_rate,
            "must be in (0, 1]")


def validate_paths(paths: PathsConfig, writing: bool = False) -> None:
    """Each root is a writable folder, or a store this process can list and write (probed);
    a configured database answers, with a schema this code knows (and takes writes, for a
    flow that ``writing`` records state). A root on a store needs a configured database."""
    from mnist_autoencoder import database as db

    url = db.configured_url()
    if paths.remote and url is None:
        where = paths.data_dir if is_remote(paths.data_dir) else paths.artifacts_dir
        raise ParameterError(
            f"{where} is on a store, so the registry and the manifests need a database that "
            f"every machine shares: set {db.DATABASE_ENV} (e.g. postgresql://user:password@"
            "host:5432/mnist_ae; docs/database.md). A SQLite file per machine would give "
            "each machine its own champion")
    if url is not None:
        db.check(url, writing)
    for name in ("data_dir", "artifacts_dir"):
        if is_remote(getattr(paths, name)):
            probe(getattr(paths, name))
            continue
        path = resolve_dir(getattr(paths, name))
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        require(existing is not None and existing.is_dir()
                and os.access(existing, os.W_OK | os.X_OK), name, getattr(paths, name),
                f"must be a writable directory (checked {existing})")


# A warm start: 5 epochs at 3e-4 from the parent matched 50 epochs from scratch on a grown
# MNIST snapshot (test BCE 0.09179 against 0.09197) in a fifth of the time; at the full
# learning rate of 1e-3 it was 0.09195 (docs/retraining.md, python -m benchmarks.retrain).
WARM_EPOCHS = 5
WARM_LEARNING_RATE = 3e-4
# Beside its new images, a warm retrain replays this many drawn from the history, so its
# cost follows the batch, not the snapshot (docs/growth.md measures the size).
WARM_REPLAY = 50_000


class PipelineConfig(_Group):
    """What the pipeline trains, how a retrain starts, and what makes its model champion."""

    latent_dim: int = Field(32, description="size of the code")
    promotion_tolerance: float = Field(
        DEFAULT_TOLERANCE, description="the new model replaces the champion if its test BCE is "
        "at most champion x (1 + promotion_tolerance)")
    warm_start: bool = Field(True, description="on a grown snapshot, start from the parent model "
                             "(the newest champion trained on an earlier snapshot of this data) "
                             "and its probes; false trains from scratch")
    warm_epochs: int = Field(WARM_EPOCHS, description="epochs of a warm-started training run "
                             "(instead of epochs)")
    warm_learning_rate: float = Field(WARM_LEARNING_RATE,
                                      description="Adam's learning rate in a warm-started run "
                                      "on at most warm_replay new images; on more, the run "
                                      "is mostly new data and trains at learning_rate")
    warm_replay: int = Field(WARM_REPLAY, description="training images of earlier snapshots "
                             "that a warm-started run replays beside the new ones (a uniform "
                             "sample; all of them when there are fewer)")
    drift_policy: str = Field(DEFAULT_POLICY, description="what a drift of the new batches from "
                              "the parent's data does to the promotion: hold-anomalous (hold it "
                              "when the anomaly score also flags the new images in bulk), hold "
                              "(on every drift) or record (note it, decide as usual)")

    def schedule(self, training: TrainingConfig, warm: bool, new_images: int = 0
                 ) -> TrainingConfig:
        """The training settings of this run: the warm ones when it starts from a parent.

        A warm run on more new images than its replay sample keeps the warm epochs but
        trains at the cold ``learning_rate``: at 3,000,000 images, growth retrains at 3e-4
        left the next retrain 1.09% above from scratch, at 1e-3 0.69% (docs/growth.md).
        """
        if not warm:
            return training
        rate = (training.learning_rate if new_images > self.warm_replay
                else self.warm_learning_rate)
        return training.model_copy(update={"epochs": self.warm_epochs, "learning_rate": rate})


def validate_pipeline(data: DataConfig, training: TrainingConfig, paths: PathsConfig,
                      pipeline: PipelineConfig) -> None:
    """Raise for the first parameter of the pipeline flow that cannot work."""
    validate_data(data)
    from mnist_autoencoder.scoring.scores import MIN_VALIDATION, STATISTICS

    require(data.val_size >= MIN_VALIDATION, "val_size", data.val_size,
            f"the anomaly score needs at least {MIN_VALIDATION} validation images: half fit "
            f"its density (a Gaussian of {len(STATISTICS)} statistics), half set its thresholds")
    require(pipeline.latent_dim >= 1, "latent_dim", pipeline.latent_dim, "must be at least 1")
    validate_training(training)
    require(0 <= pipeline.promotion_tolerance < 1, "promotion_tolerance",
            pipeline.promotion_tolerance, "must be in [0, 1)")
    require(pipeline.warm_epochs >= 1, "warm_epochs", pipeline.warm_epochs, "must be at least 1")
    require(0 < pipeline.warm_learning_rate <= 1, "warm_learning_rate",
            pipeline.warm_learning_rate, "must be in (0, 1]")
    require(pipeline.drift_policy in POLICIES, "drift_policy", pipeline.drift_policy,
            f"choose one of {list(POLICIES)}")
    validate_paths(paths, writing=True)
    if paths.remote:
        return  # the state is checked in the flow, once its mirror is pulled
    check_layout(models_dir(resolve_dir(paths.artifacts_dir)))
    from mnist_autoencoder.data.snapshots import resolve

    resolve(resolve_dir(paths.data_dir), data.dataset, data.snapshot)  # exists, batches intact


def validate_grid(name: str, values: Iterable[Any], valid: Callable[[Any], bool],
                  allowed: str) -> None:
    """A sweep axis: non-empty, no repeats, every value ``valid``."""
    values = list(values)
    require(bool(values) and len(set(values)) == len(values) and all(map(valid, values)),
            name, values, allowed)


def validate_sweep(data: DataConfig, training: TrainingConfig, paths: PathsConfig,
                   variants: tuple[str, ...], latent_dims: tuple[int, ...],
                   seeds: tuple[int, ...], known_variants: tuple[str, ...]) -> None:
    """Raise for the first parameter of the sweep flow that cannot work."""
    validate_data(data)
    validate_grid("variants", variants, lambda v: v in known_variants,
                  f"give one or more distinct names from {list(known_variants)}")
    validate_grid("latent_dims", latent_dims, lambda size: size >= 1,
                  "give one or more distinct sizes, each at least 1")
    validate_grid("seeds", seeds, lambda seed: seed >= 0,
                  "give one or more distinct non-negative integers")
    validate_training(training)
    validate_paths(paths)


def validate_images(name: str, location: str, labelled_only: bool = False) -> None:
    """An input of images: given, and on this machine unless it is an http(s) URL.

    ``labelled_only`` (a batch to ingest): not in a format without labels.
    """
    allowed = "give one of the input formats: " + describe_formats(labelled_only)
    require(bool(location), name, location, allowed)
    if not is_remote(location):
        require(Path(location).expanduser().exists(), name, location, "no such file or directory")
    found = format_of(location) if labelled_only else None
    require(found is None or found.labelled, name, location,
            f"{found.name if found else '?'} input has no labels; {allowed}")


def validate_score(input: str, dataset: str, model: str, fpr: float,
                   paths: PathsConfig, score: str = "typicality") -> None:
    """Raise for the first parameter of the scoring flow that cannot work (no model included)."""
    from mnist_autoencoder.lifecycle.registry import scoring_model_dir

    validate_images("input", input)
    catalog = datasets()
    require(dataset in catalog, "dataset", dataset, f"choose one of {sorted(catalog)}")
    from mnist_autoencoder.scoring.scores import SCORES, check_fpr  # the one range: FPR_RANGE

    check_fpr(fpr)
    require(score in SCORES, "score", score, f"choose one of {list(SCORES)}")
    validate_paths(paths)
    if paths.remote:
        return  # the model is checked in the flow, once its mirror is pulled
    from mnist_autoencoder.scoring.scores import read_calibration

    read_calibration(scoring_model_dir(models_dir(resolve_dir(paths.artifacts_dir)), dataset,
                                       model))  # intact and current, before any work


def validate_state(rebuild: bool, paths: PathsConfig) -> None:
    """Raise for the first parameter of the state flow that cannot work."""
    validate_paths(paths, writing=rebuild)


def validate_ingest(batch: str, dataset: str, source: str | None, paths: PathsConfig) -> None:
    """Raise for the first parameter of the ingest flow that cannot work."""
    validate_source(dataset, source)
    validate_images("batch", batch, labelled_only=True)
    validate_paths(paths, writing=True)
