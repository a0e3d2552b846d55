"""sweep_report: the sweep's tables, plot and report (``mnist_autoencoder.reports.sweep``)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact

from mnist_autoencoder.paths import stage_root
from mnist_autoencoder.reports.sweep import summary_records, sweep_report_files
from tasks.caching import stage_task_options
from tasks.io import StageIO


@task(**stage_task_options("sweep_report"))
def sweep_report(trials: list[dict[str, Any]], settings: dict[str, Any],
                 artifacts_dir: str) -> dict[str, Any]:
    """Write the sweep report and publish it as Prefect artifacts."""
    io = StageIO(stage_root(artifacts_dir, "sweep"), *trials)
    files, summary = sweep_report_files([t["metrics"] for t in trials], settings)
    result = io.write(files, summary=summary_records(summary))
    create_table_artifact(key="mnist-sweep-summary", table=[
        {k: v for k, v in row.items() if not k.endswith("_std")} for row in result["summary"]],
        description="Sweep: mean test metrics per variant and code size")
    io.publish("mnist-sweep-report", "sweep.html", "The sweep report (opens offline)")
    return result
