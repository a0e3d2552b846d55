import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from tasks.figures import (
    latent_grid_shape,
    plot_argmax_confusion,
    plot_loss_curves,
    plot_samples,
)
from tasks.report import markdown_table, render_markdown


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


def test_markdown_has_every_section():
    metrics = {"test_bce": 0.09, "test_mse": 0.01, "n_test": 10, "argmax_pixel_agreement": 0.2}
    trained = {"config": {"epochs": 5, "latent_dim": 32}, "epochs_run": 5, "stopped_early": False,
               "final_loss": 0.1, "final_val_loss": 0.11}
    by_digit = pd.DataFrame({"digit": [0], "n": [10], "bce": [0.09], "mse": [0.01]})
    text = render_markdown(metrics, by_digit, trained, {"counts": {"train": 1}},
                           {"files": {"a.gz": "abc"}},
                           {"loss_curves": "l.png", "samples": "s.png",
                            "argmax_confusion": "c.png"},
                           {"promoted": False, "reason": "challenger test BCE 0.1 > champion",
                            "champion_dir": "/m/champion"})
    for needle in ["Test-set reconstruction", "| binary cross-entropy | 0.0900 |", "(l.png)",
                   "(s.png)", "(c.png)", "Loss per digit", "Exploratory", "| latent_dim | 32 |",
                   "`abc`", "| 0 | 10 | 0.0900 | 0.0100 |", "Not promoted: challenger test BCE"]:
        assert needle in text, needle


def test_markdown_table_formats_floats():
    assert markdown_table(pd.DataFrame({"a": [1], "b": [0.123456]})).splitlines() == [
        "| a | b |", "| --- | --- |", "| 1 | 0.1235 |"]
