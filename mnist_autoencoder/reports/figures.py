"""Figures for the report: each function takes data and returns a ``Figure`` (never shown).

Figures are ``matplotlib.figure.Figure`` objects made directly, not through pyplot:
no backend is chosen, no global figure manager holds them, and importing this module
leaves a notebook's backend as it was. ``savefig`` renders PNG with Agg by itself.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

CONFUSION_SHOWN = 20  # the heatmap shows the most frequent original argmax pixels
PNG_DPI = 100


def _subplots(*grid: int, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """A new ``Figure`` and its axes, as pyplot's ``subplots`` gives them, without pyplot."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kwargs)


def to_png(fig: Figure) -> bytes:
    """Encode ``fig`` as PNG (no pyplot holds it: it is freed with its last reference)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI)
    return buffer.getvalue()


def plot_loss_curves(history: pd.DataFrame) -> Figure:
    """Training and validation loss per epoch."""
    fig, ax = _subplots(figsize=(6, 4))
    ax.plot(history["epoch"], history["loss"], marker="o", markersize=3, label="training")
    ax.plot(history["epoch"], history["val_loss"], marker="o", markersize=3, label="validation")
    ax.set(xlabel="epoch", ylabel="binary cross-entropy", title="Loss curves")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_samples(x: np.ndarray, codes: np.ndarray, reconstruction: np.ndarray,
                 labels: np.ndarray) -> Figure:
    """Rows: original digits, their latent codes reshaped to a grid, reconstructions."""
    n, side = len(x), int(round(np.sqrt(x.shape[1])))
    code_shape = latent_grid_shape(codes.shape[1])
    fig, axes = _subplots(3, n, figsize=(1.3 * n, 4.2), squeeze=False)
    rows = [(x.reshape(n, side, side), "original"), (codes.reshape(n, *code_shape), "code"),
            (reconstruction.reshape(n, side, side), "reconstruction")]
    for row, (images, title) in enumerate(rows):
        for col in range(n):
            ax = axes[row, col]
            ax.imshow(images[col], cmap="gray" if row != 1 else "viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(title)
            if row == 0:
                ax.set_title(str(int(labels[col])))
    fig.suptitle(f"Test digits, their {codes.shape[1]}-d codes ({code_shape[0]}x{code_shape[1]}) "
                 "and reconstructions")
    fig.tight_layout()
    return fig


def latent_grid_shape(latent_dim: int) -> tuple[int, int]:
    """Most square (rows, cols) with rows * cols == latent_dim: 32 -> (4, 8)."""
    rows = max(r for r in range(1, int(np.sqrt(latent_dim)) + 1) if latent_dim % r == 0)
    return rows, latent_dim // rows


def plot_argmax_confusion(confusion: pd.DataFrame, top: int = CONFUSION_SHOWN) -> Figure:
    """Heatmap of the argmax-pixel matrix restricted to the ``top`` most frequent originals."""
    keep = confusion.sum(axis=1).nlargest(top).index.sort_values()
    shown = confusion.loc[keep, keep]
    fig, ax = _subplots(figsize=(8, 7))
    sns.heatmap(shown, ax=ax, cmap="Blues", annot=False, cbar_kws={"label": "test images"})
    ax.set(xlabel="argmax pixel of reconstruction", ylabel="argmax pixel of original",
           title=f"Exploratory: brightest-pixel agreement ({len(keep)} most frequent pixels)")
    fig.tight_layout()
    return fig


def _digit_scatter(ax, points: np.ndarray, labels: np.ndarray, title: str) -> None:
    scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=4, alpha=0.6,
                         vmin=-0.5, vmax=9.5)
    ax.set(title=title, xticks=[], yticks=[])
    return scatter


def plot_projections(pca_2d: np.ndarray, tsne_2d: np.ndarray, tsne_sample: np.ndarray,
                     labels: np.ndarray) -> Figure:
    """Test codes in 2-D, coloured by digit: PCA of all codes, t-SNE of a seeded sample."""
    fig, (left, right) = _subplots(1, 2, figsize=(11, 5))
    _digit_scatter(left, pca_2d, labels, f"PCA of {len(labels)} test codes")
    scatter = _digit_scatter(right, tsne_2d, labels[tsne_sample],
                             f"t-SNE of {len(tsne_sample)} test codes")
    fig.colorbar(scatter, ax=[left, right], ticks=range(10), label="digit")
    return fig


def plot_probe_confusion(matrix: np.ndarray, accuracy: float) -> Figure:
    """10x10 confusion of the linear probe on autoencoder codes (rows: true digit)."""
    fig, ax = _subplots(figsize=(6.5, 5.5))
    sns.heatmap(matrix, ax=ax, annot=True, fmt="d", cmap="Blues", cbar=False,
                annot_kws={"size": 7})
    ax.set(xlabel="predicted digit", ylabel="true digit",
           title=f"Linear probe on codes: {accuracy:.1%} test accuracy")
    fig.tight_layout()
    return fig


def plot_unit_statistics(units: pd.DataFrame) -> Figure:
    """How often each latent unit is active, and its mean activation; dead units in red."""
    fig, (top, bottom) = _subplots(2, 1, figsize=(9, 5), sharex=True)
    colours = np.where(units["dead"], "tab:red", "tab:blue")
    top.bar(units["unit"], units["active_fraction"], color=colours)
    top.set(ylabel="fraction active", ylim=(0, 1.05),
            title=f"Latent units ({int(units['dead'].sum())} dead of {len(units)})")
    bottom.bar(units["unit"], units["mean"], yerr=units["std"], color=colours, capsize=2)
    bottom.set(xlabel="unit", ylabel="mean activation (± std)")
    fig.tight_layout()
    return fig


def plot_error_distribution(bce: np.ndarray, labels: np.ndarray) -> Figure:
    """Per-sample reconstruction BCE on the test set: histogram and per-digit spread."""
    fig, (left, right) = _subplots(1, 2, figsize=(11, 4))
    left.hist(bce, bins=60, color="tab:blue")
    left.axvline(np.mean(bce), color="k", linestyle="--", label=f"mean {np.mean(bce):.4f}")
    left.set(xlabel="per-sample BCE", ylabel="test images", title="Reconstruction error")
    left.legend()
    sns.boxplot(x=labels.astype(int), y=bce, ax=right, color="tab:blue", fliersize=1)
    right.set(xlabel="digit", ylabel="per-sample BCE", title="Error per digit")
    fig.tight_layout()
    return fig


def plot_gallery(rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> Figure:
    """Pairs of rows (originals, reconstructions) with digit and error above each original.

    ``rows`` holds (title, originals, reconstructions, labels, errors) per group.
    """
    n = max(len(group[1]) for group in rows)
    side = int(round(np.sqrt(rows[0][1].shape[1])))
    fig, axes = _subplots(2 * len(rows), n, figsize=(1.3 * n, 2.9 * len(rows)),
                             squeeze=False)
    for g, (title, originals, rebuilt, labels, errors) in enumerate(rows):
        for col in range(n):
            for r, images in enumerate((originals, rebuilt)):
                ax = axes[2 * g + r, col]
                ax.set_xticks([])
                ax.set_yticks([])
                if col < len(images):
                    ax.imshow(images[col].reshape(side, side), cmap="gray", vmin=0, vmax=1)
            if col < len(originals):
                label = "?" if labels[col] < 0 else str(int(labels[col]))  # -1: unknown
                axes[2 * g, col].set_title(f"{label}: {errors[col]:.3f}", fontsize=8)
        axes[2 * g, 0].set_ylabel(f"{title}\noriginal", fontsize=8)
        axes[2 * g + 1, 0].set_ylabel("reconstruction", fontsize=8)
    fig.tight_layout()
    return fig


def plot_rate_distortion(summary: pd.DataFrame, reference: str = "pca") -> Figure:
    """Test BCE and MSE against code size, one line per variant (mean ± std over seeds).

    ``summary`` has columns variant, latent_dim, test_bce, test_bce_std, test_mse,
    test_mse_std; the ``reference`` variant is drawn dashed in black.
    """
    fig, axes = _subplots(1, 2, figsize=(11, 4.2))
    for ax, metric, label in ((axes[0], "test_bce", "test binary cross-entropy"),
                              (axes[1], "test_mse", "test mean squared error")):
        for variant, rows in summary.groupby("variant", sort=False):
            rows = rows.sort_values("latent_dim")
            style = ({"color": "black", "linestyle": "--"} if variant == reference else {})
            ax.errorbar(rows["latent_dim"], rows[metric], yerr=rows[f"{metric}_std"].fillna(0),
                        marker="o", markersize=4, capsize=2, label=variant, **style)
        ax.set_xscale("log", base=2)
        sizes = sorted(summary["latent_dim"].unique())
        ax.set_xticks(sizes, [str(size) for size in sizes])
        ax.minorticks_off()
        ax.set(xlabel="code size (latent units)", ylabel=label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(title="variant")
    fig.suptitle("Rate-distortion: reconstruction error against code size")
    fig.tight_layout()
    return fig


def plot_score_histogram(edges: np.ndarray, counts: np.ndarray, reference: np.ndarray,
                         threshold: float, score: str) -> Figure:
    """Scores of the scored images against the validation split's, with the flagging threshold.

    ``counts`` has one more bin at each end (below and above ``edges``), as
    ``np.searchsorted`` fills them; ``reference`` holds evenly spaced quantiles of
    the validation scores, which histogram to the validation distribution.
    """
    fig, ax = _subplots(figsize=(8, 4))
    widths = np.diff(edges)
    inner = counts[1:-1] / max(counts.sum(), 1) / widths
    ax.bar(edges[:-1], inner, width=widths, align="edge", alpha=0.6, label="scored images")
    ref, _ = np.histogram(reference, bins=edges)
    ax.step(edges[:-1], ref / max(len(reference), 1) / widths, where="post", color="black",
            label="validation split (reference)")
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:.3g}")
    beyond = counts[-1] / max(counts.sum(), 1)
    ax.set(xlabel=f"anomaly score ({score})", ylabel="density",
           title=f"Anomaly scores ({beyond:.1%} of images beyond the axis)")
    ax.legend()
    fig.tight_layout()
    return fig
