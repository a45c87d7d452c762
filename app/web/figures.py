"""Plotly figures the server can build whole, one function per figure.

Each function takes plain data, the same dicts and lists the REST API answers, and
returns a ``plotly.graph_objects.Figure``, so a notebook can use them directly::

    from attnlab import figures
    from attnlab.models import make_positional
    fig = figures.positional_matrix(make_positional("sinusoidal", d_model=64, n_heads=4,
                                                    max_positions=128).describe(128))
    fig.show()            # or fig.write_html("sinusoidal.html")

The pages fetch them as figure JSON from ``/api/figures/...`` (app/api/routes).
Attention heatmaps that stream tiles are drawn by the pages' own JS instead.

Colour scales are viridis / cividis: perceptually uniform and still ordered in greyscale
(a projector, a black-and-white printout). Text that comes from tokens is escaped with
:func:`escape_label`, because Plotly renders a subset of HTML inside labels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

SEQUENTIAL = "Viridis"
ALTERNATIVE = "Cividis"
# Okabe-Ito: distinguishable with colour-blindness and by lightness in greyscale
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
BASE_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), font=dict(size=13))


def escape_label(text: str) -> str:
    """A token as Plotly label text: ``<``, ``>`` and ``&`` as entities, so it shows literally."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _layout(fig: go.Figure, title: str, **extra: object) -> go.Figure:
    fig.update_layout(title=dict(text=title), **BASE_LAYOUT, **extra)
    return fig


def _style(i: int) -> dict:
    return dict(color=PALETTE[i % len(PALETTE)], dash=DASHES[(i // len(PALETTE)) % len(DASHES)])


# ----------------------------------------------------------------------------- positional


def positional_matrix(desc: Mapping) -> go.Figure:
    """The encoding added to the embeddings: positions x dimensions (sinusoidal, learned)."""
    if "matrix" not in desc:
        raise ValueError(f"scheme {desc.get('scheme')!r} adds no vector to the embeddings (no 'matrix')")
    fig = go.Figure(go.Heatmap(z=desc["matrix"], colorscale=SEQUENTIAL, colorbar=dict(title="value"),
                               hovertemplate="position %{y}<br>dimension %{x}<br>value %{z:.3f}<extra></extra>"))
    fig.update_xaxes(title="dimension")
    fig.update_yaxes(title="position", autorange="reversed")
    return _layout(fig, f"{desc.get('scheme', '')} encoding: position x dimension")


SIMILARITY_DEFINITION = (
    "Similarity of position 0 and the position at each offset, 1 at offset 0: sinusoidal and learned, the dot product "
    "of their position vectors; RoPE, q\u00b7k of one fixed vector rotated to both positions; ALiBi and T5 (biases, "
    "not vectors), exp(bias) of head 0, the factor the bias multiplies an attention weight by; none, 1 at every "
    "offset (no position signal: positions cannot be told apart). Learned and T5 are drawn at their random "
    "initialisation (seed 0).")


def scheme_style(name: str) -> dict:
    """One colour per positional scheme, the same in every chart (the order of models.positional.POSITIONAL)."""
    from attnlab.models.positional import POSITIONAL

    order = list(POSITIONAL)
    return _style(order.index(name) if name in order else len(order))


def positional_similarity(descs: Mapping[str, Mapping], skipped: Mapping[str, str] | None = None) -> go.Figure:
    """Similarity of position 0 with every offset, one line per scheme (``SIMILARITY_DEFINITION``); a scheme
    in ``skipped`` (it cannot take these sizes) is named under the chart with the reason."""
    fig = go.Figure()
    for name, desc in descs.items():
        if "similarity" in desc:
            x, y = desc["similarity"]["offset"], desc["similarity"]["value"]
        elif "bias" in desc and desc["bias"]:
            row = desc["bias"][0][-1]  # head 0, last query: offsets 0..T-1 reading backwards
            x = list(range(len(row)))
            y = [math.exp(v - row[-1]) for v in reversed(row)]
        else:  # no vector, rotation or bias: every position looks the same
            x = list(range(int(desc.get("max_len", 0))))
            y = [1.0] * len(x)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, line=scheme_style(name)))
    fig.update_xaxes(title="offset from position 0")
    fig.update_yaxes(title="similarity (1 at offset 0)")
    for i, (name, reason) in enumerate((skipped or {}).items()):
        fig.add_annotation(text=escape_label(f"{name} not shown: {reason}"), xref="paper", yref="paper", x=0,
                           y=-0.25 - 0.07 * i, showarrow=False, xanchor="left")
    return _layout(fig, "Similarity vs offset")


def rope_rotations(desc: Mapping) -> go.Figure:
    """RoPE: the rotation angle of each 2-D pair at each position (as cos), and the frequencies."""
    if "rotations" not in desc:
        raise ValueError(f"scheme {desc.get('scheme')!r} has no rotations (only rope does)")
    cos = [[math.cos(a) for a in row] for row in desc["rotations"]]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.7, 0.3], horizontal_spacing=0.12,
                        subplot_titles=("cos(position x frequency)", "frequency per pair"))
    fig.add_trace(go.Heatmap(z=cos, colorscale=SEQUENTIAL, zmin=-1, zmax=1, colorbar=dict(x=0.62, title="cos"),
                             hovertemplate="position %{y}<br>pair %{x}<br>cos %{z:.3f}<extra></extra>"), 1, 1)
    freqs = desc.get("frequencies", [])
    fig.add_trace(go.Scatter(x=list(range(len(freqs))), y=freqs, mode="lines+markers", name="frequency",
                             line=_style(0), showlegend=False), 1, 2)
    fig.update_xaxes(title="pair index", row=1, col=1)
    fig.update_yaxes(title="position", autorange="reversed", row=1, col=1)
    fig.update_xaxes(title="pair index", row=1, col=2)
    fig.update_yaxes(title="radians / position", type="log", row=1, col=2)
    return _layout(fig, "RoPE rotations")


def alibi_biases(desc: Mapping) -> go.Figure:
    """ALiBi: the bias each head adds at each query-key distance (slope x distance)."""
    slopes = desc.get("slopes")
    if slopes is None:
        raise ValueError(f"scheme {desc.get('scheme')!r} has no ALiBi slopes")
    max_len = int(desc.get("max_len", 128))
    distance = list(range(max_len))
    fig = go.Figure()
    for h, slope in enumerate(slopes):
        fig.add_trace(go.Scatter(x=distance, y=[-slope * d for d in distance], mode="lines", name=f"head {h}",
                                 line=_style(h), hovertemplate=f"head {h} (slope {slope:.4g})<br>distance %{{x}}"
                                                               "<br>bias %{y:.3f}<extra></extra>"))
    fig.update_xaxes(title="query - key distance")
    fig.update_yaxes(title="bias added to the score")
    return _layout(fig, "ALiBi biases per head")


def t5_buckets(desc: Mapping) -> go.Figure:
    """T5: the bucket each relative offset falls in (exact near 0, logarithmic further out)."""
    buckets = desc.get("buckets")
    if buckets is None:
        raise ValueError(f"scheme {desc.get('scheme')!r} has no T5 buckets")
    fig = go.Figure(go.Scatter(x=buckets["offset"], y=buckets["bucket"], mode="lines",
                               line=dict(shape="hv", **_style(0)), name="bucket",
                               hovertemplate="offset %{x}<br>bucket %{y}<extra></extra>"))
    fig.update_xaxes(title="key - query offset")
    fig.update_yaxes(title="bucket")
    return _layout(fig, "T5 relative-position buckets")


def extrapolation_curve(results: Mapping) -> go.Figure:
    """Perplexity against evaluation length, one line per positional scheme.

    Reads what ``attnlab lab extrapolation`` writes: ``{"train_len": N, "table": {scheme:
    {"perplexity": {length: value or null}}}}``; null means the scheme cannot run at that
    length (learned positions past their table) and leaves a gap in its line.
    """
    fig = go.Figure()
    lengths: set[int] = set()
    for name, data in (results.get("table") or {}).items():
        values = data.get("perplexity") or {}
        xs = sorted(values, key=int)
        lengths.update(int(x) for x in xs)
        fig.add_trace(go.Scatter(x=[int(x) for x in xs], y=[values[x] for x in xs], mode="lines+markers",
                                 name=name, line=scheme_style(name)))
    train_len = results.get("train_len")
    if train_len:
        fig.add_vline(x=train_len, line=dict(color="grey", dash="dot"))
        # annotations on a log axis take log10 of the position (shapes take the position)
        fig.add_annotation(x=math.log10(train_len), y=1, yref="paper", text="training length", showarrow=False,
                           xanchor="left", yanchor="top")
    # ticks at the measured lengths: plain numbers, not Plotly's 10^n labels
    fig.update_xaxes(title="evaluation length (tokens)", type="log", tickvals=sorted(lengths))
    fig.update_yaxes(title="perplexity")
    return _layout(fig, "Length extrapolation")


# ----------------------------------------------------------------------------- backends


def _size(row: Mapping) -> float | None:
    return row.get("seq_len") or row.get("T") or row.get("n_tokens")


def _log_ticks(values: Iterable[float | None]) -> dict:
    """Tick values of a log axis over the values: 1-2-5 in each decade (every decade alone past 9
    ticks), labelled in full ("0.2", not Plotly's bare "2" beside "0.1")."""
    shown = [v for v in values if v is not None and v > 0]
    if not shown:
        return {}
    lo, hi = math.floor(math.log10(min(shown))), math.ceil(math.log10(max(shown)))
    ticks = [m * 10.0**e for e in range(lo, hi + 1) for m in (1, 2, 5)]
    ticks = [t for t in ticks if min(shown) / 2 <= t <= max(shown) * 2]
    if len(ticks) > 9:
        ticks = [10.0**e for e in range(lo, hi + 1) if min(shown) / 10 < 10.0**e < max(shown) * 10]
    return dict(tickmode="array", tickvals=ticks, ticktext=[f"{t:,.0f}" if t >= 1 else f"{t:g}" for t in ticks])


def _benchmark_bars(rows: Sequence[Mapping]) -> go.Figure:
    """One length (the model form: one input): time and memory as one bar per backend, linear axes."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("time", "peak memory allocated by torch"),
                        horizontal_spacing=0.12)
    names = [str(r["backend"]) for r in rows]
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(rows))]
    mem = [(r.get("peak_memory_bytes") or r.get("attention_peak_memory_bytes") or 0) / 2**20 for r in rows]
    fig.add_trace(go.Bar(x=names, y=[r.get("median_ms") for r in rows], marker_color=colours, showlegend=False,
                         hovertemplate="%{x}<br>%{y:.3g} ms<extra></extra>"), 1, 1)
    fig.add_trace(go.Bar(x=names, y=mem, marker_color=colours, showlegend=False,
                         hovertemplate="%{x}<br>%{y:.3g} MiB<extra></extra>"), 1, 2)
    fig.update_yaxes(title="median ms", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title="peak MiB", rangemode="tozero", row=1, col=2)
    fig.update_xaxes(title="backend")
    size = next((_size(r) for r in rows if _size(r) is not None), None)
    return _layout(fig, f"Attention backends on one input ({size} tokens)" if size else "Attention backends")


def benchmark_figure(rows: Sequence[Mapping]) -> go.Figure:
    """Median time and peak memory against sequence length, log-log, one line per backend; with one
    length only (the model form), one bar per backend instead (three dots on log axes say nothing)."""
    if len({_size(r) for r in rows}) <= 1:
        return _benchmark_bars(rows)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("time", "peak memory allocated by torch"),
                        horizontal_spacing=0.12)
    by_backend: dict[str, list[Mapping]] = {}
    times: list[float | None] = []
    mems: list[float | None] = []
    for row in rows:
        by_backend.setdefault(str(row["backend"]), []).append(row)
    for i, (backend, items) in enumerate(by_backend.items()):
        items = sorted((r for r in items if _size(r) is not None), key=_size)
        xs = [_size(r) for r in items]
        style = dict(mode="lines+markers", line=_style(i), legendgroup=backend)
        fig.add_trace(go.Scatter(x=xs, y=[r.get("median_ms") for r in items], name=backend, **style,
                                 hovertemplate=backend + "<br>T %{x}<br>%{y:.3g} ms<extra></extra>"), 1, 1)
        # synthetic rows: one attention call; model rows: the forward's largest attention kernel call
        mem = [(r.get("peak_memory_bytes") or r.get("attention_peak_memory_bytes") or 0) / 2**20 or None for r in items]
        fig.add_trace(go.Scatter(x=xs, y=mem, name=backend, showlegend=False, **style,
                                 hovertemplate=backend + "<br>T %{x}<br>%{y:.3g} MiB<extra></extra>"), 1, 2)
        times += [r.get("median_ms") for r in items]
        mems += mem
    # ticks at the measured lengths (64, 128, 256, ...), not Plotly's 1-9 minor labels per decade
    sizes = sorted({s for s in (_size(r) for r in rows) if s is not None})
    fig.update_xaxes(title="sequence length T", type="log", tickmode="array", tickvals=sizes,
                     ticktext=[str(s) for s in sizes])
    fig.update_yaxes(title="median ms", type="log", row=1, col=1, **_log_ticks(times))
    fig.update_yaxes(title="peak MiB", type="log", row=1, col=2, **_log_ticks(mems))
    return _layout(fig, "Attention backends: time and memory vs sequence length")


def profile_figure(profile: Mapping) -> go.Figure:
    """Forward and backward milliseconds per component (models.profiler.Profile.to_dict())."""
    comps = profile["components"]
    names = [c["component"].replace("_", "-") for c in comps]  # "feed-forward", as the other views spell it
    fig = go.Figure([
        go.Bar(x=names, y=[c["forward_ms"] for c in comps], name="forward", marker_color=PALETTE[0]),
        go.Bar(x=names, y=[c["backward_ms"] for c in comps], name="backward", marker_color=PALETTE[1],
               marker_pattern_shape="/"),
    ])
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="ms per pass")
    tokens = profile.get("tokens")
    return _layout(fig, f"Time per component ({tokens} tokens)" if tokens else "Time per component")


def architecture_figure(arch: Mapping) -> go.Figure:
    """Parameters and forward FLOPs per token by component (models.introspection.describe_architecture)."""
    comps = arch["components"]
    names = [c["component"] for c in comps]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("parameters", "forward FLOPs per token"),
                        horizontal_spacing=0.12)
    fig.add_trace(go.Bar(x=names, y=[c["params"] for c in comps], name="parameters", marker_color=PALETTE[0]), 1, 1)
    fig.add_trace(go.Bar(x=names, y=[c["flops_per_token"] for c in comps], name="FLOPs / token",
                         marker_color=PALETTE[2], marker_pattern_shape="x"), 1, 2)
    fig.update_yaxes(type="log", row=1, col=1, **_log_ticks(c["params"] for c in comps))
    fig.update_yaxes(type="log", row=1, col=2, **_log_ticks(c["flops_per_token"] for c in comps))
    fig = _layout(fig, "Where the parameters and the compute are", showlegend=False)
    fig.update_layout(margin=dict(t=90))
    return fig


# ----------------------------------------------------------------------------- training


def training_curves(records: Iterable[Mapping]) -> go.Figure:
    """Training loss (and eval loss), learning rate and, when logged, the gradient norm (before clipping)
    against step, from log.jsonl records."""
    records = list(records)
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval_loss" in r]
    grads = [r for r in train if r.get("grad_norm") is not None]
    if grads:
        fig = make_subplots(rows=3, cols=1, shared_xaxes=True, row_heights=[0.5, 0.25, 0.25], vertical_spacing=0.07,
                            subplot_titles=("loss", "learning rate", "gradient norm"))
        fig.add_trace(go.Scatter(x=[r["step"] for r in grads], y=[r["grad_norm"] for r in grads], mode="lines",
                                 name="grad norm", line=_style(3)), 3, 1)
        fig.update_yaxes(title="\u2016g\u2016\u2082", row=3, col=1)
        fig.update_layout(height=620)
    else:
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.08,
                            subplot_titles=("loss", "learning rate"))
    fig.add_trace(go.Scatter(x=[r["step"] for r in train], y=[r["loss"] for r in train], mode="lines",
                             name="train loss", line=_style(0)), 1, 1)
    if evals:
        fig.add_trace(go.Scatter(x=[r["step"] for r in evals], y=[r["eval_loss"] for r in evals],
                                 mode="lines+markers", name="eval loss", line=_style(1),
                                 marker=dict(symbol="diamond", size=9)), 1, 1)
    flagged = [r for r in train if r.get("spike") or r.get("skipped")]
    if flagged:
        fig.add_trace(go.Scatter(x=[r["step"] for r in flagged], y=[r["loss"] for r in flagged], mode="markers",
                                 name="spike / skipped", marker=dict(symbol="x", size=10, color=PALETTE[5])), 1, 1)
    lr = [r for r in train if "lr" in r]
    fig.add_trace(go.Scatter(x=[r["step"] for r in lr], y=[r["lr"] for r in lr], mode="lines", name="lr",
                             line=_style(2)), 2, 1)
    fig.update_xaxes(title="step", row=3 if grads else 2, col=1)
    fig.update_yaxes(title="loss", row=1, col=1)
    fig.update_yaxes(title="lr", exponentformat="e", row=2, col=1)
    return _layout(fig, "Training curves")


# ----------------------------------------------------------------------------- attention summaries


HEAD_SCORE_UNITS = {"entropy": "nats", "mean_offset": "tokens"}  # the others: attention mass in [0, 1]


def head_type_grids(scores: Mapping[str, Sequence[Sequence[float]]],
                    detectors: Sequence[str] | None = None) -> go.Figure:
    """One layers x heads heatmap per detector (the scores of GET /api/runs/{id}/heads), each with its own
    colour bar beside it titled with its unit: attention mass (0 to 1), tokens (mean offset, signed) or nats
    (entropy, from 0)."""
    names = [d for d in (detectors or list(scores)) if d in scores]
    cols = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    h_space, v_space = 0.1, 0.14
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[n.replace("_", " ") for n in names],
                        horizontal_spacing=h_space, vertical_spacing=v_space)
    for i, name in enumerate(names):
        z = scores[name]
        row, col = i // cols + 1, i % cols + 1
        axis = fig.get_subplot(row, col)
        x_domain, y_domain = axis.xaxis.domain, axis.yaxis.domain
        unit = HEAD_SCORE_UNITS.get(name, "weight")
        values = [v for r in z for v in r]
        if name == "mean_offset":  # signed: a head looking back has a positive offset
            top = max((abs(v) for v in values), default=1.0) or 1.0
            bounds = dict(zmin=-top, zmax=top, colorscale="RdBu", zmid=0)
        elif name == "entropy":
            bounds = dict(zmin=0, zmax=max(values, default=1.0) or 1.0, colorscale=SEQUENTIAL)
        else:
            bounds = dict(zmin=0, zmax=1, colorscale=SEQUENTIAL)
        fig.add_trace(go.Heatmap(
            z=z, x=[f"H{h}" for h in range(len(z[0]) if z else 0)], y=[f"L{layer}" for layer in range(len(z))],
            showscale=True, name=name, **bounds,
            colorbar=dict(title=dict(text=unit, side="right"), x=x_domain[1] + 0.008, xanchor="left",
                          y=sum(y_domain) / 2, yanchor="middle", len=(y_domain[1] - y_domain[0]) * 1.05,
                          thickness=10),
            hovertemplate=f"{name}<br>%{{y}} %{{x}}<br>%{{z:.3f}} {unit}<extra></extra>"),
            row, col)
    fig.update_yaxes(autorange="reversed", title_text="")
    fig.update_layout(height=280 * rows + 100)
    fig = _layout(fig, "Head types (layer x head)")
    fig.update_layout(margin=dict(t=90, r=60))
    return fig


def _token_ticks(tokens: Sequence[str]) -> dict:
    """A numeric axis (one position per token) with the escaped labels as tick text: a
    categorical axis would merge two tokens with the same label into one row."""
    return dict(tickmode="array", tickvals=list(range(len(tokens))), ticktext=[escape_label(t) for t in tokens])


def rollout_figure(matrix: Sequence[Sequence[float]], tokens: Sequence[str],
                   title: str = "Attention rollout") -> go.Figure:
    """A (query x key) aggregate such as rollout or flow, with escaped token labels.

    ``tokens`` are the labels the API answers (models.labels.token_labels); hover gives
    the 0-based positions and both labels.
    """
    labels = [escape_label(t) for t in tokens]
    hover = [[f"query {i} \"{labels[i]}\" → key {j} \"{labels[j]}\"" for j in range(len(row))]
             for i, row in enumerate(matrix)]
    fig = go.Figure(go.Heatmap(z=matrix, x=list(range(len(tokens))), y=list(range(len(tokens))), colorscale=SEQUENTIAL,
                               zmin=0, text=hover, hovertemplate="%{text}<br>%{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title="query", **_token_ticks(tokens))
    fig.update_xaxes(title="key", tickangle=-60, **_token_ticks(tokens))
    return _layout(fig, title)


def probability_bars(top: Sequence[Mapping], chosen_id: int | None = None,
                     title: str = "Next-token probabilities") -> go.Figure:
    """Top-k next-token probabilities as horizontal bars, one row per rank; the chosen token
    (matched by ``token_id``) is highlighted.

    ``top`` is a step's ``top`` list from POST /api/generate: ``{token, token_id, prob}``. Rows
    are keyed by rank, so candidates with the same label stay separate bars.
    """
    labels = [escape_label(t["token"]) for t in top]
    chosen = [chosen_id is not None and t.get("token_id") == chosen_id for t in top]
    colors = [PALETTE[1] if c else PALETTE[0] for c in chosen]
    custom = [[label, t.get("token_id"), "chosen" if c else ""] for label, t, c in zip(labels, top, chosen)]
    fig = go.Figure(go.Bar(x=[t["prob"] for t in top], y=list(range(len(top))), orientation="h", marker_color=colors,
                           customdata=custom,
                           hovertemplate="%{customdata[0]} (id %{customdata[1]}) %{customdata[2]}<br>p = %{x:.3f}"
                                         "<extra></extra>"))
    fig.update_yaxes(autorange="reversed", **_token_ticks([t["token"] for t in top]))
    fig.update_xaxes(title="probability", range=[0, 1])
    return _layout(fig, title)


def fig_json(fig: go.Figure) -> dict:
    """A figure as plain JSON (plotly's encoder handles numpy and the layout template), as the pages draw it."""
    return json.loads(pio.to_json(fig, validate=False))


# the figures of one scheme's describe(), by the field each is drawn from
SCHEME_FIGURES = {"matrix": positional_matrix, "rotations": rope_rotations, "slopes": alibi_biases,
                  "buckets": t5_buckets}


def scheme_figures(desc: Mapping) -> dict[str, dict]:
    """Every figure a scheme's describe() has data for, as figure JSON by name."""
    return {key: fig_json(build(desc)) for key, build in SCHEME_FIGURES.items() if key in desc}
