"""promote: champion/challenger; the model in use is replaced only by one at least as good.

The champion lives at a stable path, ``<artifacts>/models/champion/``. Each newly
trained model (the challenger) is compared with the champion *on the same test
split*: the champion is re-scored on the challenger's test set, so a change of
data cannot make an old score look better or worse than it is. The challenger
is promoted when its test BCE is at most ``champion * (1 + tolerance)``. Every
decision appends one row to ``<artifacts>/models/registry.parquet``.

A failed run never damages the champion: it is replaced as a whole directory
with an atomic rename, after the challenger has been scored.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from tasks.caching import code_version, stage_task_options
from tasks.storage import atomic_dir, atomic_path, require_valid, write_json_atomic
from tasks.train import MODEL_FILES

CHAMPION_INFO = "champion.json"
DEFAULT_TOLERANCE = 0.005  # a challenger may be 0.5% worse (noise between equal runs is ~0.1%)


def models_dir(artifacts_dir: Path) -> Path:
    return artifacts_dir / "models"


def decide(challenger_bce: float, champion_bce: float | None,
           tolerance: float) -> tuple[bool, str]:
    """Return (promote, reason)."""
    if champion_bce is None:
        return True, "no champion yet"
    limit = champion_bce * (1 + tolerance)
    verdict = "<=" if challenger_bce <= limit else ">"
    reason = (f"challenger test BCE {challenger_bce:.5f} {verdict} champion {champion_bce:.5f} "
              f"x (1 + {tolerance:g}) = {limit:.5f}")
    return challenger_bce <= limit, reason


def read_champion(directory: Path) -> dict[str, Any] | None:
    info = directory / CHAMPION_INFO
    return json.loads(info.read_text()) if info.is_file() else None


def install_champion(model_dir: Path, champion_dir: Path, info: dict[str, Any]) -> None:
    """Copy the challenger's models to the champion path as one atomic directory swap."""
    with atomic_dir(champion_dir) as tmp:
        for name in MODEL_FILES:
            shutil.copy2(model_dir / name, tmp / name)
        write_json_atomic(tmp / CHAMPION_INFO, info)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the duration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_registry(registry: Path, row: dict[str, Any]) -> pd.DataFrame:
    """Append one row to the Parquet registry atomically; return the whole table."""
    existing = pd.read_parquet(registry) if registry.is_file() else pd.DataFrame()
    table = pd.concat([existing, pd.DataFrame([row])], ignore_index=True)
    with atomic_path(registry) as tmp:
        table.to_parquet(tmp, index=False)
    return table


def promote_model(challenger: dict[str, Any], artifacts_dir: Path, tolerance: float,
                  score_champion: Callable[[Path], float], run: dict[str, Any]) -> dict[str, Any]:
    """Decide, install the challenger if it wins, and record the decision.

    ``challenger`` holds ``model_dir`` and ``test_bce``; ``score_champion`` re-scores
    the current champion's directory on the challenger's test split; ``run`` holds
    the registry's descriptive columns (run id, parameters, hashes, code version).
    """
    root = models_dir(artifacts_dir)
    champion_dir = root / "champion"
    with locked(root / ".lock"):  # one decision at a time, also across processes
        champion = read_champion(champion_dir)
        champion_bce = score_champion(champion_dir) if champion else None
        promoted, reason = decide(challenger["test_bce"], champion_bce, tolerance)
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        if promoted:
            install_champion(Path(challenger["model_dir"]), champion_dir,
                             {**run, "test_bce": challenger["test_bce"], "promoted_at": now,
                              "model_dir": challenger["model_dir"]})
        row = {**run, "time": now, "test_bce": challenger["test_bce"],
               "test_mse": challenger.get("test_mse"), "champion_test_bce": champion_bce,
               "model_path": challenger["model_dir"], "promoted": promoted, "reason": reason}
        append_registry(root / "registry.parquet", row)
    return {"promoted": promoted, "reason": reason, "champion_dir": str(champion_dir),
            "champion_test_bce": champion_bce, "challenger_test_bce": challenger["test_bce"]}


def score_on_test_split(splits_dir: Path, cache_format: str) -> Callable[[Path], float]:
    def score(model_dir: Path) -> float:
        from tasks.evaluate import per_sample_bce, reconstruct
        from tasks.preprocess import load_splits

        test = load_splits(splits_dir, cache_format, names=("test",))["test"]
        return float(per_sample_bce(test.x, reconstruct(model_dir, test.x)[1]).mean())

    return score


MODULES = ("tasks.promote", "tasks.evaluate", "tasks.train", "tasks.storage")


@task(**stage_task_options("promote", MODULES, packages=("tensorflow", "keras"),
                           ignore=("cache_format",)))
def promote(trained: dict[str, Any], evaluation: dict[str, Any], splits: dict[str, Any],
            raw: dict[str, Any], cache_format: str, tolerance: float,
            artifacts_dir: str) -> dict[str, Any]:
    """Compare the new model with the champion and promote it if it is not worse."""
    from prefect.runtime import flow_run

    require_valid(trained)
    require_valid(splits)
    metrics = evaluation["metrics"]
    run = {"run_id": str(flow_run.id), "flow_run_name": str(flow_run.name),
           "parameters": json.dumps(trained["config"] | {"counts": splits["counts"]},
                                    sort_keys=True),
           "data_sha256": raw["hash"], "splits_sha256": splits["hash"],
           "code_version": code_version(("tasks.train", "tasks.model", "tasks.preprocess"))}
    decision = promote_model(
        {"model_dir": trained["dir"], "test_bce": metrics["test_bce"],
         "test_mse": metrics["test_mse"]},
        Path(artifacts_dir), tolerance, score_on_test_split(Path(splits["dir"]), cache_format),
        run)
    verdict = "promoted to champion" if decision["promoted"] else "kept out; champion unchanged"
    create_markdown_artifact(
        key="champion-decision",
        markdown=f"**Challenger {verdict}.** {decision['reason']}.\n\n"
                 f"Champion: `{decision['champion_dir']}`; challenger: `{trained['dir']}`",
        description="Champion/challenger decision")
    get_run_logger().info("Challenger %s: %s", verdict, decision["reason"])
    return decision
