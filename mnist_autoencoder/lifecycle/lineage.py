"""A retrain's parent: the model (and its analyses) that a run on a grown snapshot starts from.

The parent of a run on snapshot S is the newest model the registry promoted for
S's dataset on one of the snapshots S grew from (the base, or the base plus a
prefix of S's batches), with the same code size, and still intact in the
registry's store. The batches S added since the parent's snapshot are the new
data: the drift gate checks them against the parent, and the warm starts begin
from the parent's weights, its probes and its t-SNE layout.

The rule looks only at the registry's history up to S's ancestors, never at the
champion of the moment, so a rerun finds the same parent after its own model
was promoted: an unchanged run stays cached.

A baselines or analyze output is matched to the parent through the index its
stage wrote (``paths.index_path``: by the splits and code size, or by the model, it
was computed from). Those files are starting points, not trusted state: each found
output is checked and described afresh (its content hash goes into the cache keys
of the stages that start from it), and one that is gone or changed is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_autoencoder.evaluation.analysis import analysis_content
from mnist_autoencoder.evaluation.baselines import baselines_content
from mnist_autoencoder.lifecycle.registry import (
    champion_files,
    holds_model,
    read_registry,
    registry_rows,
    store_dir,
)
from mnist_autoencoder.paths import index_path, models_dir, stage_root
from mnist_autoencoder.storage import describe_outputs, read_indexed

WARM_FILES = {"baselines": ("probes.npz",), "analyze": ("probes.npz", "views.npz")}


def find_parent(artifacts_dir: str | Path, snapshot: dict[str, Any],
                latent_dim: int) -> dict[str, Any]:
    """The parent of a run on ``snapshot`` (``Snapshot.describe()``); see the module docstring.

    Returns ``{run_id, snapshot, reason, model, baselines, analysis, new_batches,
    reference}``: ``model``, ``baselines`` and ``analysis`` are ``{dir, files,
    hash}`` descriptions (None when there is no such output; ``model`` also holds the
    registry's ``model_sha256``), ``new_batches`` the
    batches added since the parent's snapshot, ``reference`` what the drift gate
    needs to find the parent's validation split. Without a parent, ``run_id`` is
    None and ``reason`` says why.
    """
    dataset, ancestors = snapshot["dataset"], list(snapshot.get("ancestors") or [])
    none = {"run_id": None, "snapshot": None, "model": None, "baselines": None,
            "analysis": None, "new_batches": [], "reference": None}
    if not ancestors:
        return none | {"reason": f"{snapshot['id']} is the base snapshot of {dataset}: "
                                 "nothing earlier to start from"}
    models = models_dir(artifacts_dir)
    table = read_registry(models)
    if table.empty or "snapshot" not in table:
        return none | {"reason": f"no model of {dataset} was promoted yet"}
    row = next((row for row in reversed(registry_rows(table))
                if row.dataset == dataset and row.event == "promoted"
                and row.snapshot in ancestors and row.training is not None
                and row.training.latent_dim == latent_dim
                and holds_model(store_dir(models, dataset, row.model_sha256),
                                row.model_sha256)), None)
    if row is None:
        return none | {"reason": f"no model with latent_dim {latent_dim} was promoted on an "
                                 f"earlier snapshot of {dataset} ({len(ancestors)} of them), "
                                 "or its stored copy is gone"}
    store = store_dir(models, dataset, row.model_sha256)
    return {"run_id": str(row.run_id), "snapshot": row.snapshot,
            "reason": f"run {row.run_id} on snapshot {row.snapshot} (promoted "
                      f"{row.time}, test BCE {row.test_bce:.5f})",
            "model": describe_outputs(store, sorted(champion_files(store)))
            | {"model_sha256": row.model_sha256},
            "baselines": _indexed(artifacts_dir, "baselines",
                                  baselines_content(row.splits_sha256, latent_dim)),
            "analysis": _indexed(artifacts_dir, "analyze", analysis_content(row.model_sha256)),
            "new_batches": snapshot["batches"][ancestors.index(row.snapshot):],
            "reference": {"splits_sha256": row.splits_sha256, "parameters": row.parameters,
                          "snapshot": row.snapshot}}


def _indexed(artifacts_dir: str | Path, stage: str, content: str) -> dict[str, Any] | None:
    """The output of ``stage`` indexed under ``content`` (``tasks.io.StageIO.index``)."""
    return read_indexed(index_path(stage_root(artifacts_dir, stage), content), WARM_FILES[stage])
