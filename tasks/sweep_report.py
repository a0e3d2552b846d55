"""sweep_report: the sweep's comparison table and rate-distortion plot, from its trials.

Writes ``trials.csv`` (one row per trial), ``summary.csv`` (mean and std over
seeds per variant and code size), ``rate_distortion.png``, and ``sweep.md`` /
a self-contained ``sweep.html`` built with the pipeline report's renderer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact

from tasks.caching import current_cache_key, stage_task_options
from tasks.paths import stage_dir
from tasks.storage import atomic_dir, describe_outputs, require_valid

TITLE = "MNIST autoencoder sweep: variants and code sizes"
SUMMARY_COLUMNS = ["variant", "latent_dim", "seeds", "test_bce", "test_bce_std", "test_mse",
                   "test_mse_std", "probe_accuracy", "parameters", "epochs_run", "fit_seconds"]


def trials_table(metrics: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial, sorted by variant (in the order given), code size and seed."""
    table = pd.DataFrame(metrics)
    order = {variant: i for i, variant in enumerate(dict.fromkeys(table["variant"]))}
    return (table.sort_values(["variant", "latent_dim", "seed"],
                              key=lambda c: c.map(order) if c.name == "variant" else c)
            .reset_index(drop=True))


def summary_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Mean (and std over seeds) per variant and code size."""
    grouped = trials.groupby(["variant", "latent_dim"], sort=False)
    summary = grouped.agg(
        seeds=("seed", "size"), test_bce=("test_bce", "mean"), test_bce_std=("test_bce", "std"),
        test_mse=("test_mse", "mean"), test_mse_std=("test_mse", "std"),
        probe_accuracy=("probe_accuracy", "mean"), parameters=("parameters", "first"),
        epochs_run=("epochs_run", "max"), fit_seconds=("fit_seconds", "mean"),
    ).reset_index()
    return summary[SUMMARY_COLUMNS]


def best_per_size(summary: pd.DataFrame) -> pd.DataFrame:
    """For each code size, the variant with the lowest mean test BCE."""
    best = summary.loc[summary.groupby("latent_dim")["test_bce"].idxmin()]
    return best[["latent_dim", "variant", "test_bce", "test_mse"]].reset_index(drop=True)


def write_sweep_report(metrics: list[dict[str, Any]], out_dir: Path,
                       settings: dict[str, Any]) -> dict[str, Any]:
    """Write the tables, the plot, ``sweep.md`` and ``sweep.html``; describe them."""
    from tasks.figures import plot_rate_distortion, to_png
    from tasks.report import Section, to_html, to_markdown

    trials = trials_table(metrics)
    summary = summary_table(trials)
    png = to_png(plot_rate_distortion(summary))
    shown = summary.drop(columns=["test_bce_std", "test_mse_std"]).fillna("-")
    sections = [
        Section("Comparison", "Mean over seeds of each variant at each code size. BCE and MSE "
                "are per pixel on the test split; the probe is logistic regression on the "
                "codes (`-` where disabled); `pca` is PCA with as many components as the code "
                "(reconstructions clipped to [0, 1] for BCE).", table=shown),
        Section("Rate-distortion", "Lower is better; the dashed black line is PCA.",
                figure="rate_distortion"),
        Section("Best variant per code size", table=best_per_size(summary)),
        Section("Settings", table=pd.DataFrame(
            [(k, str(v)) for k, v in settings.items()], columns=["setting", "value"])),
    ]
    with atomic_dir(out_dir) as tmp:
        trials.to_csv(tmp / "trials.csv", index=False)
        summary.to_csv(tmp / "summary.csv", index=False)
        (tmp / "rate_distortion.png").write_bytes(png)
        (tmp / "sweep.md").write_text(
            to_markdown(TITLE, sections, {"rate_distortion": "rate_distortion.png"}))
        (tmp / "sweep.html").write_text(
            to_html(TITLE, sections, {"rate_distortion": png}))
    files = ["trials.csv", "summary.csv", "rate_distortion.png", "sweep.md", "sweep.html"]
    records = summary.astype(object).where(summary.notna(), None).to_dict(orient="records")
    return describe_outputs(out_dir, files) | {"summary": records}


MODULES = ("tasks.sweep_report", "tasks.report", "tasks.figures", "tasks.storage")


@task(**stage_task_options("sweep_report", MODULES, packages=("matplotlib", "seaborn")))
def sweep_report(trials: list[dict[str, Any]], settings: dict[str, Any],
                 artifacts_dir: str) -> dict[str, Any]:
    """Write the sweep report and publish it as Prefect artifacts."""
    for done in trials:
        require_valid(done)
    result = write_sweep_report([t["metrics"] for t in trials],
                                stage_dir(Path(artifacts_dir), "sweep", current_cache_key()),
                                settings)
    create_table_artifact(key="mnist-sweep-summary", table=[
        {k: v for k, v in row.items() if not k.endswith("_std")} for row in result["summary"]],
        description="Sweep: mean test metrics per variant and code size")
    html_path = Path(result["dir"]) / "sweep.html"
    create_link_artifact(key="mnist-sweep-report", link=html_path.as_uri(),
                         link_text="sweep.html", description="The sweep report (opens offline)")
    get_run_logger().info("Sweep report written to %s", html_path)
    return result
