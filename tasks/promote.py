"""promote: champion/challenger per dataset (``mnist_autoencoder.lifecycle.registry``).

The only stage that changes state outside its own outputs, so its cache record is
trusted only while the dataset's champion is intact: a champion deleted, damaged
or replaced by hand makes the stage run again, reinstate it and decide again.
When the drift gate tripped on the data the model was trained on, the
``drift_policy`` says whether the promotion is held (``registry.hold_reason``).
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from mnist_autoencoder.evaluation.metrics import mean_errors
from mnist_autoencoder.lifecycle.registry import (
    DEFAULT_POLICY,
    VERDICTS,
    Decision,
    RunInfo,
    TrainingRecord,
    champion_problems,
    decision_event,
    hold_reason,
    promote_model,
)
from mnist_autoencoder.models.inference import reconstruct
from mnist_autoencoder.paths import models_dir
from tasks.caching import stage_task_options
from tasks.io import StageIO, read_splits


def _champion_problems(inputs: dict[str, Any], recorded: list[dict[str, Any]]) -> list[str]:
    return champion_problems(models_dir(inputs["artifacts_dir"]), inputs["dataset"])


@task(**stage_task_options("promote", check=_champion_problems))
def promote(trained: dict[str, Any], evaluation: dict[str, Any], splits: dict[str, Any],
            raw: dict[str, Any], dataset: str, tolerance: float,
            artifacts_dir: str, drift: dict[str, Any] | None = None,
            drift_policy: str = DEFAULT_POLICY) -> Decision:
    """Compare the new model with the dataset's champion and promote it if it is not worse.

    ``drift``: the drift gate's result on the data the model was trained on.
    """
    from prefect.runtime import flow_run

    io = StageIO(None, trained, splits)
    test = read_splits(splits, ("test",))["test"]
    metrics = evaluation["metrics"]
    run = RunInfo(run_id=str(flow_run.id), flow_run_name=str(flow_run.name),
                  training=TrainingRecord(**trained["config"], counts=splits["counts"]),
                  data_sha256=raw["hash"], splits_sha256=splits["hash"],
                  snapshot=splits["snapshot"], code_version=trained["code_version"],
                  drift=(drift or {}).get("line"), drift_policy=drift_policy)
    decision = promote_model(
        {"model_dir": trained["dir"], "test_bce": metrics["test_bce"],
         "test_mse": metrics["test_mse"]}, models_dir(artifacts_dir), dataset, tolerance,
        lambda champion: mean_errors(test.x, reconstruct(champion, test.x)[1])["test_bce"], run,
        hold=hold_reason(drift, drift_policy))
    event = decision_event(decision)
    verdict = VERDICTS[event] + ("" if event == "promoted" else "; champion unchanged")
    if decision["repaired"]:
        io.log(decision["repaired"])
    create_markdown_artifact(
        key="champion-decision",
        markdown=f"**Challenger {verdict}.** {decision['reason']}.\n\n"
                 + (f"{decision['repaired']}\n\n" if decision["repaired"] else "")
                 + f"Champion: `{decision['champion_dir']}`; challenger: `{trained['dir']}`",
        description="Champion/challenger decision")
    io.log(f"Challenger {verdict}: {decision['reason']}")
    return decision
