"""The summary of a scoring run: counts against the expected rate, the score histogram
against the validation reference, and the most anomalous inputs, as Markdown and HTML."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mnist_autoencoder.reports.rendering import Section, key_value_table, to_html, to_markdown
from mnist_autoencoder.scoring.batch import Summary

TITLE = "Anomaly scores"


def summary_sections(summary: Summary, score: str, model: dict[str, Any],
                     source: str) -> list[Section]:
    share = summary.flagged / summary.count if summary.count else 0.0
    return [
        Section("Summary", f"Images from `{source}`, scored with `{model['dir']}`.",
                table=key_value_table([
                    ("images", summary.count),
                    ("with labels", summary.labelled),
                    ("flagged", f"{summary.flagged} ({share:.2%})"),
                    ("expected share on data like the validation split", f"{summary.fpr:.2%}"),
                    ("score", score),
                    ("threshold", f"{summary.threshold:.4g}")])),
        Section("Score distribution", "Scores of these images against those of the model's "
                "validation split; images right of the red line are flagged. Far more than "
                "the expected share flagged means these images do not look like the training "
                "data.", figure="histogram"),
        Section("Most anomalous inputs", "The highest-scoring images (top row) and the "
                "model's reconstructions (bottom), with label (? when unknown) and score.",
                figure="gallery", table=pd.DataFrame({
                    "source": summary.top_sources,
                    "score": summary.top_scores.astype(float)})),
    ]


def summary_files(summary: Summary, score: str, reference: np.ndarray,
                  reconstructions: np.ndarray, model: dict[str, Any],
                  source: str) -> dict[str, Any]:
    """``{file name: value}``: ``summary.json``, ``summary.md``, ``summary.html`` and figures."""
    from mnist_autoencoder.reports.figures import plot_gallery, plot_score_histogram, to_png

    png = {"histogram": to_png(plot_score_histogram(summary.edges, summary.histogram,
                                                    reference, summary.threshold, score)),
           "gallery": to_png(plot_gallery([("most anomalous", summary.top_x, reconstructions,
                                            summary.top_labels, summary.top_scores)]))}
    sections = summary_sections(summary, score, model, source)
    names = {key: f"{key}.png" for key in png}
    return ({names[k]: v for k, v in png.items()}
            | {"summary.json": summary.as_json() | {"score": score, "source": source},
               "summary.md": to_markdown(TITLE, sections, names),
               "summary.html": to_html(TITLE, sections, png)})
