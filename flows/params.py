"""Validation of flow parameters, done once at the flow boundary before any work."""

from __future__ import annotations

import os
from typing import Any

from tasks.download import DATASETS, local_source_dir
from tasks.paths import resolve_dir
from tasks.preprocess import FORMATS

MNIST_TRAIN_SIZE = 60_000


class ParameterError(ValueError):
    """A flow parameter is out of range; the message names it and the allowed values."""


def _require(condition: bool, name: str, value: Any, allowed: str) -> None:
    if not condition:
        raise ParameterError(f"Invalid parameter {name}={value!r}: {allowed}.")


def _writable_dir(name: str, value: str) -> None:
    path = resolve_dir(value)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    _require(existing is not None and existing.is_dir() and os.access(existing, os.W_OK | os.X_OK),
             name, value, f"must be a writable directory (checked {existing})")


def validate_params(params: dict[str, Any]) -> None:
    """Raise ``ParameterError`` for the first parameter of the pipeline flow that cannot work."""
    _validate_data(params)
    _require(params["latent_dim"] >= 1, "latent_dim", params["latent_dim"], "must be at least 1")
    _validate_training(params)
    _require(params["seed"] >= 0, "seed", params["seed"], "must be a non-negative integer")
    _require(0 <= params["promotion_tolerance"] < 1, "promotion_tolerance",
             params["promotion_tolerance"], "must be in [0, 1)")
    _validate_dirs(params)


def validate_sweep_params(params: dict[str, Any], variants: tuple[str, ...]) -> None:
    """Raise ``ParameterError`` for the first parameter of the sweep flow that cannot work."""
    _validate_data(params)
    _grid("variants", params, lambda v: v in variants,
          f"give one or more distinct names from {list(variants)}")
    _grid("latent_dims", params, lambda size: size >= 1,
          "give one or more distinct sizes, each at least 1")
    _grid("seeds", params, lambda seed: seed >= 0,
          "give one or more distinct non-negative integers")
    _require(params["split_seed"] >= 0, "split_seed", params["split_seed"],
             "must be a non-negative integer")
    _validate_training(params)
    _validate_dirs(params)


def _grid(name: str, params: dict[str, Any], valid, allowed: str) -> None:
    """A sweep axis: non-empty, no repeats, every value ``valid``."""
    values = list(params[name])
    _require(bool(values) and len(set(values)) == len(values) and all(map(valid, values)),
             name, values, allowed)


def _validate_data(params: dict[str, Any]) -> None:
    _require(params["dataset"] in DATASETS, "dataset", params["dataset"],
             f"choose one of {sorted(DATASETS)}")
    source = params["source"]
    if source and not source.startswith(("http://", "https://")):
        directory = local_source_dir(source)
        _require(directory.is_dir(), "source", source,
                 f"{directory} is not a directory; give a directory or file:// URL holding "
                 "the four .gz IDX files, an http(s) base URL, or nothing for the public mirrors")
    _require(params["cache_format"] in FORMATS, "cache_format", params["cache_format"],
             f"choose one of {list(FORMATS)}")
    _require(0 < params["val_size"] < MNIST_TRAIN_SIZE, "val_size", params["val_size"],
             f"must leave training data: 1 <= val_size < {MNIST_TRAIN_SIZE}")
    _require(params["train_subset"] >= 0, "train_subset", params["train_subset"],
             "must be 0 (all) or a positive number of images")


def _validate_training(params: dict[str, Any]) -> None:
    for name in ("epochs", "batch_size", "patience"):
        _require(params[name] >= 1, name, params[name], "must be at least 1")
    _require(0 < params["learning_rate"] <= 1, "learning_rate", params["learning_rate"],
             "must be in (0, 1]")


def _validate_dirs(params: dict[str, Any]) -> None:
    for name in ("data_dir", "artifacts_dir"):
        _writable_dir(name, params[name])


def resolved(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters with directories made absolute (relative ones are anchored at the project)."""
    return params | {name: str(resolve_dir(params[name])) for name in ("data_dir", "artifacts_dir")}
