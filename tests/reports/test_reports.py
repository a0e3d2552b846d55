import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from mnist_autoencoder.reports.figures import (
    latent_grid_shape,
    plot_argmax_confusion,
    plot_error_distribution,
    plot_gallery,
    plot_loss_curves,
    plot_probe_confusion,
    plot_projections,
    plot_samples,
    plot_unit_statistics,
)
from mnist_autoencoder.reports.rendering import markdown_table, to_html, to_markdown
from mnist_autoencoder.reports.run import build_sections


@pytest.mark.parametrize("dim, shape", [(32, (4, 8)), (16, (4, 4)), (7, (1, 7)), (64, (8, 8))])
def test_latent_grid_shape(dim, shape):
    assert latent_grid_shape(dim) == shape


def test_loss_curves_have_both_series():
    history = pd.DataFrame({"epoch": [1, 2, 3], "loss": [3, 2, 1.0], "val_loss": [3, 2.5, 2]})
    fig = plot_loss_curves(history)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == ["training", "validation"]
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), [3, 2.5, 2])
    plt.close(fig)


def test_samples_figure_has_three_rows_and_codes_as_4x8():
    n = 4
    fig = plot_samples(np.random.rand(n, 784), np.random.rand(n, 32), np.random.rand(n, 784),
                       np.arange(n))
    assert len(fig.axes) == 3 * n
    assert fig.axes[n].get_images()[0].get_array().shape == (4, 8)
    assert fig.axes[0].get_ylabel() == "original"
    assert fig.axes[2 * n].get_ylabel() == "reconstruction"
    plt.close(fig)


def test_confusion_heatmap_limits_to_most_frequent_pixels():
    labels = list(range(30))
    matrix = pd.DataFrame(np.diag(np.arange(30)), index=labels, columns=labels)
    fig = plot_argmax_confusion(matrix, top=5)
    heat = fig.axes[0]
    assert [t.get_text() for t in heat.get_yticklabels()] == ["25", "26", "27", "28", "29"]
    assert "Exploratory" in heat.get_title()
    plt.close(fig)


SUMMARY = {"latent_dim": 32, "autoencoder_test_mse": 0.0096, "autoencoder_test_bce": 0.0916,
           "pca_test_mse": 0.0168, "pca_test_bce": 0.12, "dead_units": 2,
           "probe_accuracy": {"autoencoder codes": 0.9, "PCA codes": 0.89, "raw pixels": 0.92}}
FIGURES = ["loss_curves", "samples", "probe_confusion", "projections", "unit_statistics",
           "error_distribution", "gallery", "argmax_confusion"]


def sections():
    metrics = {"test_bce": 0.09, "test_mse": 0.01, "n_test": 10, "argmax_pixel_agreement": 0.2}
    trained = {"config": {"epochs": 5, "latent_dim": 32}, "epochs_run": 5, "stopped_early": False,
               "final_loss": 0.1, "final_val_loss": 0.11}
    by_digit = pd.DataFrame({"digit": [0], "n": [10], "bce": [0.09], "mse": [0.01]})
    decision = {"promoted": False, "reason": "challenger test BCE 0.1 > champion",
                "champion_dir": "/m/champion"}
    return build_sections(metrics, by_digit, trained, {"counts": {"train": 1}},
                          {"files": {"a.gz": "abc"}}, SUMMARY, decision, "c0de")


def test_markdown_has_every_section_and_figure():
    text = to_markdown("T", sections(), {key: f"{key}.png" for key in FIGURES})
    for needle in ["Test-set reconstruction", "| binary cross-entropy | 0.0900 |",
                   "Loss per digit", "Exploratory", "| latent_dim | 32 |", "| a.gz | abc |",
                   "| 0 | 10 | 0.0900 | 0.0100 |", "Not promoted: challenger test BCE",
                   "| PCA | 0.0168 | 0.1200 |", "| raw pixels | 0.9200 |", "2 unit(s) never fire",
                   "| code version (train stage) | c0de |", *[f"({key}.png)" for key in FIGURES]]:
        assert needle in text, needle


def test_html_is_self_contained_with_every_figure_embedded():
    png = {key: f"png-of-{key}".encode() for key in FIGURES}
    page = to_html("T <report>", sections(), png)
    assert page.startswith("<!doctype html>") and "T &lt;report&gt;" in page
    assert page.count("src='data:image/png;base64,") == len(FIGURES)
    assert "http://" not in page and "https://" not in page  # opens offline
    assert "<code>/m/champion</code>" in page and "<table" in page
    for section in sections():
        assert section.title in page


def test_markdown_table_formats_floats():
    assert markdown_table(pd.DataFrame({"a": [1], "b": [0.123456]})).splitlines() == [
        "| a | b |", "| --- | --- |", "| 1 | 0.1235 |"]


def test_analysis_figures_have_the_expected_axes():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 200)
    fig = plot_projections(rng.random((200, 2)), rng.random((50, 2)), np.arange(50), labels)
    assert len(fig.axes) == 3 and "t-SNE of 50" in fig.axes[1].get_title()
    plt.close(fig)
    fig = plot_probe_confusion(np.eye(10, dtype=int) * 5, 0.9)
    assert "90.0%" in fig.axes[0].get_title()
    plt.close(fig)
    units = pd.DataFrame({"unit": range(4), "mean": [1, 0, 2, 0.5], "std": [0.1] * 4,
                          "active_fraction": [0.5, 0, 1, 0.2], "dead": [False, True, False, False]})
    fig = plot_unit_statistics(units)
    assert "1 dead of 4" in fig.axes[0].get_title()
    assert [p.get_facecolor()[:3] for p in fig.axes[0].patches][1] == (0.8392156862745098,
                                                                      0.15294117647058825,
                                                                      0.1568627450980392)
    plt.close(fig)
    fig = plot_error_distribution(rng.random(200), labels)
    assert len(fig.axes) == 2 and fig.axes[1].get_xlabel() == "digit"
    plt.close(fig)
    x = rng.random((3, 784))
    fig = plot_gallery([("worst", x, x, np.array([1, 2, 3]), np.array([0.3, 0.2, 0.1])),
                        ("best", x, x, np.array([4, 5, 6]), np.array([0.01, 0.02, 0.03]))])
    assert len(fig.axes) == 4 * 3 and fig.axes[0].get_title() == "1: 0.300"
    plt.close(fig)
