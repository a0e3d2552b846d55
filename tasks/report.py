"""report: a Markdown report with figures, and Prefect artifacts, from train and evaluate outputs.

Plotting lives in ``tasks.figures`` and is imported only when the report is
actually written, so a cached run does not pay for matplotlib and seaborn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.caching import current_cache_key, stage_task_options
from tasks.paths import stage_dir
from tasks.storage import atomic_dir, describe_outputs, require_valid


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table, floats to 4 decimals."""
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    rows = [list(frame.columns), ["---"] * frame.shape[1],
            *[[cell(v) for v in row] for row in frame.itertuples(index=False)]]
    return "\n".join("| " + " | ".join(map(str, row)) + " |" for row in rows)


def render_markdown(metrics: dict[str, Any], by_digit: pd.DataFrame, trained: dict[str, Any],
                    splits: dict[str, Any], raw: dict[str, Any], figures: dict[str, str],
                    decision: dict[str, Any] | None = None) -> str:
    config = trained["config"]
    verdict = [] if decision is None else [
        "## Champion decision", "",
        f"{'Promoted to champion' if decision['promoted'] else 'Not promoted'}: "
        f"{decision['reason']}. Champion: `{decision['champion_dir']}`.", ""]
    lines = [
        "# MNIST shallow autoencoder: report", "",
        "## Test-set reconstruction", "",
        "| metric | value |", "|---|---|",
        f"| binary cross-entropy | {metrics['test_bce']:.4f} |",
        f"| mean squared error | {metrics['test_mse']:.4f} |",
        f"| test images | {metrics['n_test']} |",
        f"| epochs run | {trained['epochs_run']} of {config['epochs']}"
        f"{' (stopped early)' if trained['stopped_early'] else ''} |",
        f"| final training / validation loss | {trained['final_loss']:.4f} / "
        f"{trained['final_val_loss']:.4f} |", "",
        *verdict,
        "## Loss curves", "",
        "Training and validation binary cross-entropy per epoch; curves that stay together "
        "mean the model is not overfitting.", "",
        f"![loss curves]({figures['loss_curves']})", "",
        "## Originals, latent codes and reconstructions", "",
        "Top row: test digits. Middle: each one's latent code reshaped to a grid (brighter = "
        "larger activation, dark cells are inactive units). Bottom: the decoder's reconstruction.",
        "", f"![samples]({figures['samples']})", "",
        "## Loss per digit", "",
        markdown_table(by_digit), "",
        "## Exploratory: argmax-pixel matrix", "",
        "As in the seed: for each test image, the index of its brightest pixel in the original "
        "(rows) against the reconstruction (columns). A strong diagonal means the brightest "
        "stroke stays in place. This is a diagnostic, not a classification. "
        f"Agreement: {metrics['argmax_pixel_agreement']:.1%} of test images.", "",
        f"![argmax confusion]({figures['argmax_confusion']})", "",
        "## Parameters and data", "",
        "| parameter | value |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in config.items()],
        f"| split sizes | {splits['counts']} |", "",
        "| raw file | SHA-256 |", "|---|---|",
        *[f"| {name} | `{digest}` |" for name, digest in raw["files"].items()], "",
    ]
    return "\n".join(lines)


def write_report(trained: dict[str, Any], evaluation: dict[str, Any], splits: dict[str, Any],
                 raw: dict[str, Any], out_dir: Path,
                 decision: dict[str, Any] | None = None) -> dict[str, Any]:
    """Draw the figures and write ``report.md`` into ``out_dir``; return their description."""
    import matplotlib.pyplot as plt
    import numpy as np

    from tasks.figures import plot_argmax_confusion, plot_loss_curves, plot_samples

    train_dir, eval_dir = Path(trained["dir"]), Path(evaluation["dir"])
    history = pd.read_csv(train_dir / "history.csv")
    with np.load(eval_dir / "samples.npz") as samples:
        sample_fig = plot_samples(samples["x"], samples["codes"], samples["reconstruction"],
                                  samples["labels"])
    confusion = pd.read_csv(eval_dir / "argmax_confusion.csv", index_col=0)
    confusion.columns = confusion.columns.astype(int)  # CSV headers come back as strings
    figures = {"loss_curves": plot_loss_curves(history), "samples": sample_fig,
               "argmax_confusion": plot_argmax_confusion(confusion)}
    by_digit = pd.read_csv(eval_dir / "loss_by_digit.csv")
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    names = {key: f"{key}.png" for key in figures}
    with atomic_dir(out_dir) as tmp:
        for key, fig in figures.items():
            fig.savefig(tmp / names[key], dpi=110)
            plt.close(fig)
        (tmp / "report.md").write_text(
            render_markdown(metrics, by_digit, trained, splits, raw, names, decision))
    return describe_outputs(out_dir, ["report.md", *names.values()])


MODULES = ("tasks.report", "tasks.figures", "tasks.storage")


@task(**stage_task_options("report", MODULES, packages=("matplotlib", "seaborn")))
def report(raw: dict[str, Any], splits: dict[str, Any], trained: dict[str, Any],
           evaluation: dict[str, Any], decision: dict[str, Any],
           artifacts_dir: str) -> dict[str, Any]:
    """Write the report and publish it as Prefect artifacts; return ``{dir, files, hash}``."""
    for upstream in (trained, evaluation):
        require_valid(upstream)
    result = write_report(trained, evaluation, splits, raw,
                          stage_dir(Path(artifacts_dir), "report", current_cache_key()), decision)
    report_path = Path(result["dir"]) / "report.md"
    create_markdown_artifact(
        key="mnist-autoencoder-report",
        markdown=report_path.read_text() + f"\n\nFiles: `{result['dir']}`\n",
        description="Shallow autoencoder report")
    create_table_artifact(
        key="mnist-autoencoder-metrics",
        table=[{"metric": k, "value": v} for k, v in evaluation["metrics"].items()],
        description="Test-set metrics")
    get_run_logger().info("Report written to %s", report_path)
    return result
