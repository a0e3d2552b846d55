"""The run's report: its sections, its figures, ``report.md`` and a self-contained ``report.html``.

Plotting lives in ``figures`` and is imported only when a report is drawn, so a
cached run does not pay for matplotlib and seaborn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mnist_autoencoder.lifecycle.registry import VERDICTS, decision_event
from mnist_autoencoder.reports.rendering import Section, key_value_table, to_html, to_markdown

TITLE = "MNIST shallow autoencoder: report"


def build_sections(metrics: dict[str, Any], by_digit: pd.DataFrame, trained: dict[str, Any],
                   splits: dict[str, Any], raw: dict[str, Any], summary: dict[str, Any] | None,
                   decision: dict[str, Any] | None, code: str,
                   anomaly: pd.DataFrame | None = None,
                   drift: dict[str, Any] | None = None) -> list[Section]:
    """The report's content, shared by the Markdown and the HTML versions.

    ``drift`` is the pipeline's drift gate result (``drift`` holds its
    ``drift.json`` when the gate ran).
    """
    config = trained["config"]
    stopped = " (stopped early)" if trained["stopped_early"] else ""
    start = ("warm start from the parent model "
             f"{str(config.get('parent_model_sha256'))[:12]}" if config.get("init") == "warm"
             else "from scratch")
    recent = ([("recent holdout: binary cross-entropy / MSE",
                f"{metrics['recent_bce']:.4f} / {metrics['recent_mse']:.4f} "
                f"({metrics['n_recent']} images of the snapshot's batches)")]
              if "recent_bce" in metrics else [])
    sections = [Section("Test-set reconstruction", table=key_value_table([
        ("binary cross-entropy", metrics["test_bce"]),
        ("mean squared error", metrics["test_mse"]),
        ("test images", metrics["n_test"]),
        *recent,
        ("training", start),
        ("epochs run", f"{trained['epochs_run']} of {config['epochs']}{stopped}"),
        ("final training / validation loss",
         f"{trained['final_loss']:.4f} / {trained['final_val_loss']:.4f}")]))]
    if drift is not None:
        sections.append(drift_section(drift))
    if decision is not None:
        verdict = VERDICTS[decision_event(decision)].capitalize()
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
    if anomaly is not None:
        sections.append(Section(
            "Anomaly score on corrupted digits",
            "The model's calibrated anomaly score (the larger of BCE and BCE minus the image's "
            "own entropy, each standardised on the validation split) on MNIST-C-style "
            "corruptions of the test split: AUROC against the clean test images, and the share "
            "flagged at the threshold that flags 1% of validation images. The first row is the "
            "clean test split's share: the false alarms. Mild corruptions keep the digit "
            "readable and are the hard cases (docs/scoring.md has the measurements).",
            table=anomaly.fillna("")))
    sections += [
        Section("Loss per digit", table=by_digit),
        Section("Exploratory: argmax-pixel matrix",
                "As in the seed: for each test image, the index of its brightest pixel in the "
                "original (rows) against the reconstruction (columns). A strong diagonal means "
                "the brightest stroke stays in place. A diagnostic, not a classification. "
                f"Agreement: {metrics['argmax_pixel_agreement']:.1%} of test images.",
                figure="argmax_confusion"),
        Section("Parameters", table=key_value_table(
            [*config.items(), ("split sizes", splits["counts"]),
             ("code version (train stage)", code)],
            columns=("parameter", "value"))),
        Section("Data", table=key_value_table(list(raw["files"].items()),
                                              columns=("raw file", "SHA-256"))),
    ]
    return sections


def drift_section(gate: dict[str, Any]) -> Section:
    """The drift gate on the snapshot's new batches: its verdict and one row per test."""
    title = "Drift gate: the new data against the parent model"
    if not gate.get("checked"):
        return Section(title, gate["line"] + ".")
    result = gate["drift"]
    rows = [(t["name"], "skipped: " + t["skipped"], "", "", "") if t["skipped"] else
            (t["name"], f"{'chi2' if t['name'] == 'labels' else 'KS D'} {t['statistic']:.4f}",
             f"{t['p_value']:.3g}", f"{t['threshold']:.3g}", "yes" if t["drift"] else "no")
            for t in result["tests"]]
    return Section(title, f"{result['n_batch']} new images against the parent's "
                          f"{result['n_reference']} validation images; reference: "
                          f"{result['reference']['note']}. {gate['line']}. "
                          + " ".join(f"{r[0].upper()}{r[1:]}." for r in result["reasons"]),
                   table=pd.DataFrame(rows, columns=["test", "statistic", "p-value",
                                                     "threshold", "drift"]))


def draw_figures(history: pd.DataFrame, samples: dict[str, np.ndarray],
                 confusion: pd.DataFrame, analysis: dict[str, Any] | None) -> dict[str, Any]:
    """Every figure of the report, keyed by the name sections refer to.

    ``analysis`` holds the analyze stage's ``analysis.json``, ``views.npz`` and
    ``unit_stats.csv`` values, by file name.
    """
    from mnist_autoencoder.reports import figures as fg

    s = samples
    drawn = {"loss_curves": fg.plot_loss_curves(history),
             "samples": fg.plot_samples(s["x"], s["codes"], s["reconstruction"], s["labels"]),
             "argmax_confusion": fg.plot_argmax_confusion(confusion)}
    if analysis is None:
        return drawn
    summary, v = analysis["analysis.json"], analysis["views.npz"]
    labels, bce = v["labels"], v["bce"]
    drawn |= {
        "probe_confusion": fg.plot_probe_confusion(
            v["probe_confusion"], summary["probe_accuracy"]["autoencoder codes"]),
        "projections": fg.plot_projections(v["pca_2d"], v["tsne_2d"], v["tsne_sample"], labels),
        "error_distribution": fg.plot_error_distribution(bce, labels),
        "gallery": fg.plot_gallery([
            ("worst", v["worst_x"], v["worst_reconstruction"], labels[v["worst"]],
             bce[v["worst"]]),
            ("best", v["best_x"], v["best_reconstruction"], labels[v["best"]],
             bce[v["best"]])]),
        "unit_statistics": fg.plot_unit_statistics(analysis["unit_stats.csv"]),
    }
    return drawn


def report_files(sections: list[Section], drawn: dict[str, Any]) -> dict[str, Any]:
    """``{file name: value}``: one PNG per figure, ``report.md`` and ``report.html``."""
    from mnist_autoencoder.reports.figures import to_png

    png = {key: to_png(fig) for key, fig in drawn.items()}
    names = {key: f"{key}.png" for key in png}
    return ({names[key]: data for key, data in png.items()}
            | {"report.md": to_markdown(TITLE, sections, names),
               "report.html": to_html(TITLE, sections, png)})


def summary_markdown(metrics: dict[str, Any], summary: dict[str, Any],
                     decision: dict[str, Any], report_dir: str) -> str:
    probes = ", ".join(f"{k} {v:.1%}" for k, v in summary["probe_accuracy"].items())
    verdict = VERDICTS[decision_event(decision)]
    return (f"**Test BCE {metrics['test_bce']:.4f}, MSE {metrics['test_mse']:.4f}** "
            f"(PCA with {summary['latent_dim']} components: MSE {summary['pca_test_mse']:.4f}). "
            f"Linear probe accuracy: {probes}. Dead latent units: {summary['dead_units']}. "
            f"Model {verdict}: {decision['reason']}.\n\n"
            f"Report: `{report_dir}/report.html` (self-contained) and `report.md`.")
