"""Figures of the Training page's comparisons: the gradient-checkpointing table as bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import PALETTE, _layout


def checkpointing_bars(rows: Sequence[Mapping]) -> go.Figure:
    """Per model, peak training memory (MiB, torch's allocator) and step time (ms: CPU time where measured, which
    other jobs on the machine disturb less than wall time), without and with gradient checkpointing: grouped bars,
    two panels."""
    names = [r["model"] for r in rows]
    cpu = all(r.get("step_cpu_ms_without") is not None for r in rows)
    time_key = "step_cpu_ms_{}" if cpu else "step_ms_{}"
    fig = make_subplots(rows=1, cols=2, subplot_titles=("peak memory of one training step (MiB)",
                                                        f"{'CPU ' if cpu else ''}time of one forward+backward (ms)"))
    for i, (suffix, label) in enumerate((("without", "without checkpointing"), ("with", "with checkpointing"))):
        colour = PALETTE[i]
        fig.add_trace(go.Bar(x=names, y=[r[f"peak_{suffix}_mib"] for r in rows], name=label, legendgroup=suffix,
                             marker_color=colour), 1, 1)
        fig.add_trace(go.Bar(x=names, y=[r[time_key.format(suffix)] for r in rows], name=label, legendgroup=suffix,
                             marker_color=colour, showlegend=False), 1, 2)
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="MiB", row=1, col=1)
    fig.update_yaxes(title="ms", row=1, col=2)
    return _layout(fig, "Gradient checkpointing: memory saved, time paid")
