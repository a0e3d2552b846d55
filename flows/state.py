"""State: the state database (manifests, registry) against what the storage holds.

Run it with ``python -m flows.state``: per dataset, the batches and registry rows
the storage keeps records of, and whether the database holds the same. With
``--rebuild true``, a lost database is rebuilt from those records into an empty one
(docs/database.md says what can and cannot be recovered).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.summary import StageRun, format_stages, run_stage
from mnist_autoencoder.params import PathsConfig, validate_state
from tasks.state import state


@flow(name="mnist-state", validate_parameters=True)
def mnist_state(rebuild: bool = False, paths: PathsConfig = PathsConfig()) -> dict[str, Any]:
    """Compare the state database with the storage's records, or rebuild it from them.

    Args:
        rebuild: write the storage's records into the database, which must hold nothing
            of their datasets (a new database, or the SQLite files moved aside).
        paths: where data and artifacts are.
    """
    validate_state(rebuild, paths)
    with paths.local() as paths:
        stages: list[StageRun] = []
        result = run_stage(state, stages, data_dir=paths.data_dir,
                           artifacts_dir=paths.artifacts_dir, rebuild=rebuild)
    verdict = ("Rebuilt: " if rebuild else "State: ") + (
        "the database holds what the storage records" if result["matches"] else
        "the database differs from the storage's records (python -m flows.state "
        "--rebuild true rebuilds a lost one)")
    lines = [*format_stages(stages)[:-1], *result["lines"], verdict]
    return result | {"stages": [vars(s) for s in stages], "summary": "\n".join(lines)}


if __name__ == "__main__":
    from flows.cli import main

    main(mnist_state, validate_state, prog="python -m flows.state")
