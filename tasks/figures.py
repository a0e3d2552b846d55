"""Figures for the report: each function takes data and returns a ``Figure`` (Agg, never shown)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

CONFUSION_SHOWN = 20  # the heatmap shows the most frequent original argmax pixels


def plot_loss_curves(history: pd.DataFrame) -> Figure:
    """Training and validation loss per epoch."""
    fig, ax = plt.subplots(figsize=(6, 4))
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
    fig, axes = plt.subplots(3, n, figsize=(1.3 * n, 4.2), squeeze=False)
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
    fig, ax = plt.subplots(figsize=(8, 7))
    sns.heatmap(shown, ax=ax, cmap="Blues", annot=False, cbar_kws={"label": "test images"})
    ax.set(xlabel="argmax pixel of reconstruction", ylabel="argmax pixel of original",
           title=f"Exploratory: brightest-pixel agreement ({len(keep)} most frequent pixels)")
    fig.tight_layout()
    return fig
