"""The sweep's comparison table and rate-distortion plot, from its trials' metrics.

Produces ``trials.csv`` (one row per trial), ``summary.csv`` (mean and std over
seeds per variant and code size), ``rate_distortion.png``, and ``sweep.md`` / a
self-contained ``sweep.html`` built with the pipeline report's renderer.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from mnist_autoencoder.reports.rendering import Section, to_html, to_markdown

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


def sweep_report_files(metrics: list[dict[str, Any]],
                       settings: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame]:
    """Return (``{file name: value}``: tables, plot, ``sweep.md``, ``sweep.html``; summary)."""
    from mnist_autoencoder.reports.figures import plot_rate_distortion, to_png

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
    files = {
        "trials.csv": trials, "summary.csv": summary, "rate_distortion.png": png,
        "sweep.md": to_markdown(TITLE, sections, {"rate_distortion": "rate_distortion.png"}),
        "sweep.html": to_html(TITLE, sections, {"rate_distortion": png}),
    }
    return files, summary


def summary_records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The summary table as JSON-ready rows (missing values as None)."""
    return summary.astype(object).where(summary.notna(), None).to_dict(orient="records")
