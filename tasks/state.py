"""state: the state database against what the storage holds; with ``rebuild``, the database
rebuilt from the storage (``mnist_autoencoder.lifecycle.recovery``, docs/database.md).

Not cached: it reads and writes the state itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist_autoencoder.lifecycle import recovery


@task(name="state", cache_policy=NO_CACHE)
def state(data_dir: str, artifacts_dir: str, rebuild: bool) -> dict[str, Any]:
    """Survey the storage's records (and rebuild the database from them)."""
    act = recovery.rebuild if rebuild else recovery.survey
    found = act(Path(data_dir), Path(artifacts_dir))
    lines = [line for item in found for line in recovery.describe(item)]
    for line in lines:
        get_run_logger().info(line)
    return {"lines": lines, "matches": all(item.matches for item in found),
            "datasets": {item.dataset: {"batches": len(item.batches),
                                        "decisions": len(item.decisions),
                                        "champion": item.champion, "notes": item.notes,
                                        "in_database": item.in_database} for item in found}}
