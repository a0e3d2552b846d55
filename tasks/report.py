"""report: a Markdown report with figures, and Prefect artifacts, from train and evaluate outputs.

Plotting lives in ``tasks.figures`` and is imported only when the report is
actually written, so a cached run does not pay for matplotlib and seaborn.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from tasks.caching import current_cache_key, stage_task_options
from tasks.paths import stage_dir
from tasks.storage import atomic_dir, describe_outputs, require_valid


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table, floats to 4 decimals."""
    rows = [list(frame.columns), ["---"] * frame.shape[1],
            *[[_cell(v) for v in row] for row in frame.itertuples(index=False)]]
    return "\n".join("| " + " | ".join(map(str, row)) + " |" for row in rows)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@dataclass
class Section:
    """One part of the report: a heading, how to read it, and a table and/or a figure."""

    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    figure: str | None = None  # key of the figure drawn for this section


def _table(rows: list[tuple[str, Any]], columns=("measure", "value")) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


def build_sections(metrics: dict[str, Any], by_digit: pd.DataFrame, trained: dict[str, Any],
                   splits: dict[str, Any], raw: dict[str, Any], summary: dict[str, Any] | None,
                   decision: dict[str, Any] | None, code: str) -> list[Section]:
    """The report's content, shared by the Markdown and the HTML versions."""
    config = trained["config"]
    stopped = " (stopped early)" if trained["stopped_early"] else ""
    sections = [Section("Test-set reconstruction", table=_table([
        ("binary cross-entropy", metrics["test_bce"]),
        ("mean squared error", metrics["test_mse"]),
        ("test images", metrics["n_test"]),
        ("epochs run", f"{trained['epochs_run']} of {config['epochs']}{stopped}"),
        ("final training / validation loss",
         f"{trained['final_loss']:.4f} / {trained['final_val_loss']:.4f}")]))]
    if decision is not None:
        verdict = "Promoted to champion" if decision["promoted"] else "Not promoted"
        sections.append(Section("Champion decision", f"{verdict}: {decision['reason']}. "
                                                     f"Champion: `{decision['champion_dir']}`."))
    sections += [
        Section("Loss curves", "Training and validation binary cross-entropy per epoch; curves "
                "that stay together mean the model is not overfitting.", figure="loss_curves"),
        Section("Originals, latent codes and reconstructions",
                "Top row: test digits. Middle: each one's latent code reshaped to a grid "
                "(brighter = larger activation, dark cells are inactive units). Bottom: the "
                "decoder's reconstruction.", figure="samples"),
    ]
    if summary is not None:
        probes = summary["probe_accuracy"]
        sections += [
            Section("Baseline: PCA with as many components",
                    f"PCA with {summary['latent_dim']} components fitted on the same training "
                    "split. Lower is better; PCA reconstructions are clipped to [0, 1] for BCE.",
                    table=pd.DataFrame({
                        "model": ["autoencoder", "PCA"],
                        "test MSE": [summary["autoencoder_test_mse"], summary["pca_test_mse"]],
                        "test BCE": [summary["autoencoder_test_bce"], summary["pca_test_bce"]]})),
            Section("Linear probe",
                    "Logistic regression trained on training-set features, scored on the test "
                    "set: how linearly the digit identity can be read from each representation. "
                    "The heatmap shows the probe on autoencoder codes (rows: true digit).",
                    table=pd.DataFrame({"features": list(probes),
                                        "test accuracy": list(probes.values())}),
                    figure="probe_confusion"),
            Section("Latent space",
                    "Each point is a test image's code, coloured by its digit. Separate clusters "
                    "mean the code keeps digit identity without ever seeing a label. The "
                    "codes themselves are in `latent_codes.parquet` of the analyze stage.",
                    figure="projections"),
            Section("Latent units",
                    f"How often each of the {summary['latent_dim']} ReLU units is active on the "
                    f"test set. {summary['dead_units']} unit(s) never fire (dead, in red): "
                    "they carry no information.", figure="unit_statistics"),
            Section("Anomaly view: reconstruction error",
                    "Per-image BCE. The long right tail holds unusual digits; the spread per "
                    "digit shows which classes the code represents worst.",
                    figure="error_distribution"),
            Section("Worst and best reconstructions",
                    "Digit and per-image BCE above each original. The worst are candidates for "
                    "anomalies or label noise; the best are typically thin, common shapes.",
                    figure="gallery"),
        ]
    sections += [
        Section("Loss per digit", table=by_digit),
        Section("Exploratory: argmax-pixel matrix",
                "As in the seed: for each test image, the index of its brightest pixel in the "
                "original (rows) against the reconstruction (columns). A strong diagonal means "
                "the brightest stroke stays in place. A diagnostic, not a classification. "
                f"Agreement: {metrics['argmax_pixel_agreement']:.1%} of test images.",
                figure="argmax_confusion"),
        Section("Parameters", table=_table(
            [*config.items(), ("split sizes", splits["counts"]), ("code version", code)],
            columns=("parameter", "value"))),
        Section("Data", table=_table(list(raw["files"].items()), columns=("raw file", "SHA-256"))),
    ]
    return sections


def to_markdown(title: str, sections: list[Section], figure_files: dict[str, str]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.text:
            lines += [section.text, ""]
        if section.table is not None:
            lines += [markdown_table(section.table), ""]
        if section.figure:
            lines += [f"![{section.title}]({figure_files[section.figure]})", ""]
    return "\n".join(lines)


HTML_STYLE = """
body{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem}
th{background:#f3f3f3;text-align:left}img{max-width:100%}code{background:#f3f3f3;padding:0 .2rem}
h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}"""


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def to_html(title: str, sections: list[Section], figure_png: dict[str, bytes]) -> str:
    """One self-contained page: figures embedded as base64 PNG, no external resources."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{HTML_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{_inline(section.text)}</p>")
        if section.table is not None:
            parts.append(section.table.to_html(index=False, float_format=_cell, border=0))
        if section.figure:
            data = base64.b64encode(figure_png[section.figure]).decode()
            parts.append(f"<img alt='{html.escape(section.title)}' "
                         f"src='data:image/png;base64,{data}'>")
    return "\n".join(parts) + "\n</body></html>\n"


def draw_figures(train_dir: Path, eval_dir: Path, analysis_dir: Path | None) -> dict[str, Any]:
    """Every figure of the report, keyed by the name sections refer to."""
    import numpy as np

    from tasks import figures as fg

    history = pd.read_csv(train_dir / "history.csv")
    confusion = pd.read_csv(eval_dir / "argmax_confusion.csv", index_col=0)
    confusion.columns = confusion.columns.astype(int)  # CSV headers come back as strings
    with np.load(eval_dir / "samples.npz") as s:
        drawn = {"loss_curves": fg.plot_loss_curves(history),
                 "samples": fg.plot_samples(s["x"], s["codes"], s["reconstruction"], s["labels"]),
                 "argmax_confusion": fg.plot_argmax_confusion(confusion)}
    if analysis_dir is None:
        return drawn
    summary = json.loads((analysis_dir / "analysis.json").read_text())
    with np.load(analysis_dir / "views.npz") as v:
        labels, bce = v["labels"], v["bce"]
        drawn |= {
            "probe_confusion": fg.plot_probe_confusion(
                v["probe_confusion"], summary["probe_accuracy"]["autoencoder codes"]),
            "projections": fg.plot_projections(v["pca_2d"], v["tsne_2d"], v["tsne_sample"],
                                               labels),
            "error_distribution": fg.plot_error_distribution(bce, labels),
            "gallery": fg.plot_gallery([
                ("worst", v["worst_x"], v["worst_reconstruction"], labels[v["worst"]],
                 bce[v["worst"]]),
                ("best", v["best_x"], v["best_reconstruction"], labels[v["best"]],
                 bce[v["best"]])]),
        }
    drawn["unit_statistics"] = fg.plot_unit_statistics(
        pd.read_csv(analysis_dir / "unit_stats.csv"))
    return drawn


TITLE = "MNIST shallow autoencoder: report"


def write_report(trained: dict[str, Any], evaluation: dict[str, Any], splits: dict[str, Any],
                 raw: dict[str, Any], out_dir: Path, decision: dict[str, Any] | None = None,
                 analysis: dict[str, Any] | None = None) -> dict[str, Any]:
    """Draw the figures, write ``report.md`` and a self-contained ``report.html``."""
    from tasks.caching import code_version
    from tasks.figures import to_png

    eval_dir = Path(evaluation["dir"])
    analysis_dir = Path(analysis["dir"]) if analysis else None
    drawn = draw_figures(Path(trained["dir"]), eval_dir, analysis_dir)
    png = {key: to_png(fig) for key, fig in drawn.items()}
    sections = build_sections(
        json.loads((eval_dir / "metrics.json").read_text()),
        pd.read_csv(eval_dir / "loss_by_digit.csv"), trained, splits, raw,
        analysis["summary"] if analysis else None, decision,
        code_version(PIPELINE_MODULES)[:16])
    names = {key: f"{key}.png" for key in png}
    with atomic_dir(out_dir) as tmp:
        for key, data in png.items():
            (tmp / names[key]).write_bytes(data)
        (tmp / "report.md").write_text(to_markdown(TITLE, sections, names))
        (tmp / "report.html").write_text(to_html(TITLE, sections, png))
    return describe_outputs(out_dir, ["report.md", "report.html", *names.values()])


PIPELINE_MODULES = ("tasks.download", "tasks.idx", "tasks.preprocess", "tasks.model",
                    "tasks.train", "tasks.evaluate", "tasks.analyze", "tasks.promote",
                    "tasks.report", "tasks.figures", "tasks.storage", "tasks.caching")
MODULES = ("tasks.report", "tasks.figures", "tasks.storage")


def summary_markdown(metrics: dict[str, Any], summary: dict[str, Any],
                     decision: dict[str, Any], report_dir: str) -> str:
    probes = ", ".join(f"{k} {v:.1%}" for k, v in summary["probe_accuracy"].items())
    verdict = "promoted to champion" if decision["promoted"] else "not promoted"
    return (f"**Test BCE {metrics['test_bce']:.4f}, MSE {metrics['test_mse']:.4f}** "
            f"(PCA with {summary['latent_dim']} components: MSE {summary['pca_test_mse']:.4f}). "
            f"Linear probe accuracy: {probes}. Dead latent units: {summary['dead_units']}. "
            f"Model {verdict}: {decision['reason']}.\n\n"
            f"Report: `{report_dir}/report.html` (self-contained) and `report.md`.")


@task(**stage_task_options("report", MODULES, packages=("matplotlib", "seaborn")))
def report(raw: dict[str, Any], splits: dict[str, Any], trained: dict[str, Any],
           evaluation: dict[str, Any], analysis: dict[str, Any], decision: dict[str, Any],
           artifacts_dir: str) -> dict[str, Any]:
    """Write the report and publish it as Prefect artifacts; return ``{dir, files, hash}``."""
    for upstream in (trained, evaluation, analysis):
        require_valid(upstream)
    result = write_report(trained, evaluation, splits, raw,
                          stage_dir(Path(artifacts_dir), "report", current_cache_key()),
                          decision, analysis)
    summary, metrics = analysis["summary"], evaluation["metrics"]
    create_markdown_artifact(key="mnist-autoencoder-summary",
                             markdown=summary_markdown(metrics, summary, decision, result["dir"]),
                             description="Shallow autoencoder: the run in one paragraph")
    rows = [{"metric": k, "value": v} for k, v in metrics.items()]
    rows += [{"metric": k, "value": v} for k, v in summary.items() if k != "probe_accuracy"]
    rows += [{"metric": f"probe accuracy: {k}", "value": v}
             for k, v in summary["probe_accuracy"].items()]
    create_table_artifact(key="mnist-autoencoder-metrics", table=rows,
                          description="Test-set metrics and representation quality")
    html_path = Path(result["dir"]) / "report.html"
    create_link_artifact(key="mnist-autoencoder-report", link=html_path.as_uri(),
                         link_text="report.html", description="The full report (opens offline)")
    get_run_logger().info("Report written to %s", html_path)
    return result
