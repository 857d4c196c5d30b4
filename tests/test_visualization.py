import matplotlib.pyplot as plt
import pytest
import torch

from transformer_course.models.embeddings import sinusoidal_encoding
from transformer_course.utils.visualization import (
    plot_attention,
    plot_attention_grid,
    plot_attention_heads,
    plot_curves,
    plot_positional_encoding,
    plot_similarity,
)


def teardown_function():
    plt.close("all")


def test_attention_heatmap_has_the_labels_and_values():
    weights = torch.softmax(torch.randn(3, 4), -1)
    ax = plot_attention(weights, ["a", "b", "c"], ["w", "x", "y", "z"], annotate=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["w", "x", "y", "z"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert len(ax.texts) == 12
    assert ax.images[0].get_array().shape == (3, 4)


def test_attention_heatmap_rejects_mismatched_labels_and_shapes():
    with pytest.raises(ValueError, match="3 query labels for 2 rows"):
        plot_attention(torch.rand(2, 2), ["a", "b", "c"])
    with pytest.raises(ValueError, match="2-D"):
        plot_attention(torch.rand(2, 2, 2))


def test_head_and_layer_grids():
    fig = plot_attention_heads(torch.rand(6, 4, 4), ncols=4)
    assert len([ax for ax in fig.axes if ax.images]) == 6
    fig = plot_attention_grid([torch.rand(2, 3, 5)] * 3)
    assert len(fig.axes) == 6 and fig.axes[0].get_title() == "head 0"
    with pytest.raises(ValueError):
        plot_attention_grid([torch.rand(3, 5)])


def test_positional_similarity_and_curves():
    ax = plot_positional_encoding(sinusoidal_encoding(20, 16))
    assert ax.images[0].get_array().shape == (20, 16)
    ax = plot_similarity(torch.eye(5), labels=list("abcde"))
    assert ax.images[0].get_array().shape == (5, 5)
    with pytest.raises(ValueError, match="square"):
        plot_similarity(torch.rand(2, 3))
    ax = plot_curves([{"loss": 3.0, "bleu": None}, {"loss": 2.0, "bleu": 10.0}], ["loss", "bleu"])
    lines = {line.get_label(): line.get_ydata().tolist() for line in ax.get_lines()}
    assert lines == {"loss": [3.0, 2.0], "bleu": [10.0]}
    with pytest.raises(ValueError, match="no metric"):
        plot_curves({"loss": [1, 2]}, ["bleu"])
