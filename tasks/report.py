"""report: the Markdown/HTML report and Prefect artifacts (``mnist_autoencoder.reports.run``)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from mnist_autoencoder.paths import HISTORY_FILE, stage_root
from mnist_autoencoder.reports.run import (
    build_sections,
    draw_figures,
    report_files,
    summary_markdown,
)
from tasks.caching import stage_task_options
from tasks.io import StageIO, read


@task(**stage_task_options("report"))
def report(raw: dict[str, Any], splits: dict[str, Any], trained: dict[str, Any],
           evaluation: dict[str, Any], analysis: dict[str, Any], decision: dict[str, Any],
           artifacts_dir: str, drift: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the report and publish it as Prefect artifacts; return ``{dir, files, hash}``."""
    io = StageIO(stage_root(artifacts_dir, "report"), trained, evaluation, analysis)
    confusion = read(evaluation, "argmax_confusion.csv").set_index("original_argmax")
    confusion.columns = confusion.columns.astype(int)  # CSV headers come back as strings
    drawn = draw_figures(read(trained, HISTORY_FILE), read(evaluation, "samples.npz"), confusion,
                         {name: read(analysis, name) for name in
                          ("analysis.json", "views.npz", "unit_stats.csv")})
    summary, metrics = analysis["summary"], evaluation["metrics"]
    sections = build_sections(metrics, read(evaluation, "loss_by_digit.csv"), trained, splits,
                              raw, summary, decision, trained["code_version"],
                              read(analysis, "anomaly.csv"), drift)
    result = io.write(report_files(sections, drawn))
    create_markdown_artifact(key="mnist-autoencoder-summary",
                             markdown=summary_markdown(metrics, summary, decision, result["dir"]),
                             description="Shallow autoencoder: the run in one paragraph")
    rows = [{"metric": k, "value": v} for k, v in metrics.items()]
    rows += [{"metric": k, "value": v} for k, v in summary.items() if k != "probe_accuracy"]
    rows += [{"metric": f"probe accuracy: {k}", "value": v}
             for k, v in summary["probe_accuracy"].items()]
    create_table_artifact(key="mnist-autoencoder-metrics", table=rows,
                          description="Test-set metrics and representation quality")
    io.publish("mnist-autoencoder-report", "report.html", "The full report (opens offline)")
    return result
