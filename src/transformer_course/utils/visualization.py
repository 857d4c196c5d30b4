"""Figures used throughout the course: attention heatmaps, head and layer grids, positional
encodings, similarity matrices and training curves (from chapter 1 on).

Every function draws with matplotlib and returns the figure (or axes), so a notebook can
show it, save it, or add to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = [
    "plot_attention",
    "plot_attention_heads",
    "plot_attention_grid",
    "plot_positional_encoding",
    "plot_similarity",
    "plot_curves",
]


def _to_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=float)


def _check_matrix(weights: np.ndarray, rows: Sequence[str] | None, cols: Sequence[str] | None):
    if weights.ndim != 2:
        raise ValueError(f"expected a 2-D (queries, keys) matrix, got shape {weights.shape}")
    if rows is not None and len(rows) != weights.shape[0]:
        raise ValueError(f"{len(rows)} query labels for {weights.shape[0]} rows")
    if cols is not None and len(cols) != weights.shape[1]:
        raise ValueError(f"{len(cols)} key labels for {weights.shape[1]} columns")


def plot_attention(
    weights,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    ax: plt.Axes | None = None,
    title: str | None = None,
    annotate: bool = False,
    colorbar: bool = True,
    cmap: str = "Blues",
) -> plt.Axes:
    """Heatmap of one attention matrix ``(queries, keys)``: row i shows where query i looks.

    ``annotate`` writes each weight in its cell (readable up to about 12 x 12).
    """
    weights = _to_numpy(weights)
    _check_matrix(weights, query_labels, key_labels)
    if ax is None:
        size = (min(1.0 + 0.55 * weights.shape[1], 12), min(0.8 + 0.5 * weights.shape[0], 10))
        _, ax = plt.subplots(figsize=size)
    image = ax.imshow(weights, cmap=cmap, vmin=0.0, vmax=max(1e-9, float(weights.max())),
                      aspect="auto")
    if key_labels is not None:
        ax.set_xticks(range(len(key_labels)), key_labels, rotation=60, ha="right")
    if query_labels is not None:
        ax.set_yticks(range(len(query_labels)), query_labels)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if title:
        ax.set_title(title)
    if annotate:
        threshold = weights.max() / 2
        for i in range(weights.shape[0]):
            for j in range(weights.shape[1]):
                ax.text(j, i, f"{weights[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if weights[i, j] > threshold else "black")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    return ax


def plot_attention_heads(
    weights,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    ncols: int = 4,
    title: str | None = None,
    cell_size: float = 2.6,
) -> plt.Figure:
    """One heatmap per head, for weights of shape ``(heads, queries, keys)``."""
    weights = _to_numpy(weights)
    if weights.ndim != 3:
        raise ValueError(f"expected (heads, queries, keys), got shape {weights.shape}")
    heads = weights.shape[0]
    ncols = min(ncols, heads)
    nrows = -(-heads // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell_size * ncols + 1, cell_size * nrows + 0.6),
                             squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= heads:
            ax.axis("off")
            continue
        plot_attention(weights[h], query_labels, key_labels, ax=ax, colorbar=False,
                       title=f"head {h}")
        ax.set_xlabel("")
        ax.set_ylabel("")
        if h % ncols:
            ax.set_yticks([])
        if h < heads - ncols:
            ax.set_xticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_attention_grid(
    weights_per_layer: Sequence,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    title: str | None = None,
    cell_size: float = 2.2,
) -> plt.Figure:
    """A layer x head grid; ``weights_per_layer[l]`` has shape ``(heads, queries, keys)``."""
    layers = [_to_numpy(w) for w in weights_per_layer]
    if not layers or any(w.ndim != 3 for w in layers):
        raise ValueError("expected a list with one (heads, queries, keys) array per layer")
    heads = layers[0].shape[0]
    fig, axes = plt.subplots(len(layers), heads, squeeze=False,
                             figsize=(cell_size * heads + 1, cell_size * len(layers) + 0.6))
    for l, layer in enumerate(layers):
        for h in range(heads):
            ax = axes[l, h]
            plot_attention(layer[h], query_labels, key_labels, ax=ax, colorbar=False)
            ax.set_xlabel("")
            ax.set_ylabel(f"layer {l}" if h == 0 else "")
            if l == 0:
                ax.set_title(f"head {h}")
            if h:
                ax.set_yticks([])
            if l < len(layers) - 1:
                ax.set_xticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_positional_encoding(table, ax: plt.Axes | None = None, title: str | None = None
                             ) -> plt.Axes:
    """Heatmap of a ``(positions, d_model)`` positional-encoding table."""
    table = _to_numpy(table)
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4))
    image = ax.imshow(table, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    ax.set_xlabel("embedding dimension")
    ax.set_ylabel("position")
    ax.set_title(title or "positional encoding")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_similarity(matrix, ax: plt.Axes | None = None, title: str | None = None,
                    labels: Sequence[str] | None = None, cmap: str = "viridis") -> plt.Axes:
    """Heatmap of a square similarity matrix (e.g. dot products between position codes)."""
    matrix = _to_numpy(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {matrix.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    image = ax.imshow(matrix, cmap=cmap, aspect="auto")
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
        ax.set_yticks(range(len(labels)), labels)
    if title:
        ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_curves(
    history: Sequence[dict] | dict[str, Sequence[float]],
    keys: Sequence[str],
    x: str | None = None,
    ax: plt.Axes | None = None,
    title: str | None = None,
    ylabel: str | None = None,
) -> plt.Axes:
    """Line plot of metrics over training.

    ``history`` is either a list of records (one dict per epoch, as the Trainer writes) or a
    dict of lists; ``keys`` are the metrics to draw and ``x`` the record field for the x axis
    (default: 1, 2, 3, ...).
    """
    if isinstance(history, dict):
        columns = {k: list(v) for k, v in history.items()}
    else:
        columns = {k: [record.get(k) for record in history] for k in {*keys, *([x] if x else [])}}
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for key in keys:
        if key not in columns:
            raise ValueError(f"no metric {key!r} in the history; it has {sorted(columns)}")
        ys = columns[key]
        xs = columns[x] if x else list(range(1, len(ys) + 1))
        points = [(a, b) for a, b in zip(xs, ys, strict=True) if b is not None]
        ax.plot([a for a, _ in points], [b for _, b in points], marker="o", markersize=3,
                label=key)
    ax.set_xlabel(x or "epoch")
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax
