"""Attention maps as Plotly figures built in Python: the model view grid, one head, a generation trace.

The pages draw these views in the browser from streamed tiles (static/js/plots.js); a notebook
(``attnlab.notebook``) has the arrays already and builds the same views here, with the pages'
conventions: viridis from 0, queries down and keys across, token labels escaped for Plotly
(:func:`attnlab.web.figures.escape_label`), hover ``query 6 “mat” → key 2 “the”: 0.0123``, and
pooled cells (``block`` > 1, a long input's overview) described by their position ranges.

Inputs are plain arrays (numpy or nested lists) and token labels (``models.labels.token_labels``);
every function returns a ``plotly.graph_objects.Figure``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import SEQUENTIAL, _layout, _token_ticks, escape_label


def cell_labels(name: str, count: int, block: int = 1, tokens: Sequence[str] | None = None,
                start: int = 0) -> list[str]:
    """What each row or column covers: ``query 6 “mat”``, or ``query 12–15`` for a pooled cell (0-based)."""
    out = []
    for i in range(count):
        first = start + i * block
        if block == 1 and tokens is not None:
            out.append(f"{name} {first} \u201c{escape_label(tokens[first])}\u201d")
        elif block == 1:
            out.append(f"{name} {first}")
        else:
            out.append(f"{name} {first}\u2013{first + block - 1}")
    return out


def _hover(weights: np.ndarray, rows: list[str], cols: list[str]) -> np.ndarray:
    """customdata (r, c, 2) of the row and column descriptions; the weight is hovered from z."""
    grid = np.empty(weights.shape + (2,), dtype=object)
    grid[..., 0] = np.asarray(rows, dtype=object)[:, None]
    grid[..., 1] = np.asarray(cols, dtype=object)[None, :]
    return grid


def head_map(weights: np.ndarray, q_tokens: Sequence[str], k_tokens: Sequence[str], title: str,
             block: int = 1, what: str = "weight") -> go.Figure:
    """One head's map (Tq, Tk), or its pooled overview (rows and columns of ``block`` tokens each).

    Token labels label the axes when the map is exact (block 1) and short enough to read (<= 64).
    """
    weights = np.asarray(weights, dtype=np.float64)
    rows = cell_labels("query", weights.shape[0], block, q_tokens)
    cols = cell_labels("key", weights.shape[1], block, k_tokens)
    fig = go.Figure(go.Heatmap(
        z=weights, x0=(block - 1) / 2, dx=block, y0=(block - 1) / 2, dy=block, colorscale=SEQUENTIAL, zmin=0,
        customdata=_hover(weights, rows, cols), colorbar=dict(title=dict(text=what, side="right")),
        hovertemplate="%{customdata[0]} \u2192 %{customdata[1]}: %{z:.4f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title="query")
    fig.update_xaxes(title="key")
    if block == 1 and max(len(q_tokens), len(k_tokens)) <= 64:
        fig.update_yaxes(**_token_ticks(q_tokens))
        fig.update_xaxes(tickangle=-60, **_token_ticks(k_tokens))
    size = 260 + 14 * min(weights.shape[0], 48)
    fig.update_layout(height=size, width=size + 120)
    if block > 1:
        title += f" (overview: max over {block} x {block} tokens)"
    return _layout(fig, title)


def head_grid(maps: np.ndarray, layers: Sequence[int], heads: Sequence[int], q_tokens: Sequence[str],
              k_tokens: Sequence[str], title: str, block: int = 1) -> go.Figure:
    """The model view: ``maps`` (L, H, r, c) as an L x H grid of thumbnails, each head on its own scale
    (as the pages' grid), hover naming layer, head, query and key."""
    maps = np.asarray(maps, dtype=np.float64)
    n_l, n_h = maps.shape[:2]
    rows = cell_labels("query", maps.shape[2], block, q_tokens)
    cols = cell_labels("key", maps.shape[3], block, k_tokens)
    custom = _hover(maps[0, 0], rows, cols)
    fig = make_subplots(rows=n_l, cols=n_h, horizontal_spacing=0.4 / max(n_h, 1) / 4,
                        vertical_spacing=0.4 / max(n_l, 1) / 4,
                        row_titles=[f"L{layer}" for layer in layers], column_titles=[f"H{h}" for h in heads])
    for i, layer in enumerate(layers):
        for j, head in enumerate(heads):
            fig.add_trace(go.Heatmap(
                z=maps[i, j], colorscale=SEQUENTIAL, zmin=0, showscale=False, customdata=custom,
                hovertemplate=f"layer {layer} head {head}<br>%{{customdata[0]}} \u2192 %{{customdata[1]}}: "
                              "%{z:.4f}<extra></extra>"), i + 1, j + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, autorange="reversed")
    cell = max(48, min(110, 1100 // max(n_h, 1)))
    fig.update_layout(height=cell * n_l + 110, width=cell * n_h + 140)
    if block > 1:
        title += f" (overview: max over {block} x {block} tokens)"
    return _layout(fig, title)


def generation_map(rows: Sequence[Sequence[float]], tokens: Sequence[str], n_prompt: int, title: str) -> go.Figure:
    """A generation trace: row s is step s's new query over the keys it saw (the prompt, then the
    tokens generated before it); keys not yet generated are blank. ``tokens`` label every key
    (prompt then generated), so row s is the query that generated ``tokens[n_prompt + s]``."""
    width = len(tokens)
    z = np.full((len(rows), width), math.nan)
    for s, row in enumerate(rows):
        z[s, :len(row)] = row
    q_labels = [f"step {s} \u2192 \u201c{escape_label(tokens[n_prompt + s])}\u201d"
                if n_prompt + s < width else f"step {s}" for s in range(len(rows))]
    cols = cell_labels("key", width, 1, tokens)
    fig = go.Figure(go.Heatmap(z=z, colorscale=SEQUENTIAL, zmin=0, hoverongaps=False,
                               customdata=_hover(z, q_labels, cols),
                               hovertemplate="%{customdata[0]} \u2192 %{customdata[1]}: %{z:.4f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title="generated token", tickmode="array",
                     tickvals=list(range(len(rows))), ticktext=[escape_label(t) for t in tokens[n_prompt:]])
    fig.update_xaxes(title="key", tickangle=-60, **_token_ticks(tokens))
    fig.add_vline(x=n_prompt - 0.5, line_dash="dot", line_color="#E69F00")  # where the prompt ends
    return _layout(fig, title)
