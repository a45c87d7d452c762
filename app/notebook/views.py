"""The views ``ForwardResult.show`` and ``trace`` draw: data from the capture, figures from attnlab.web.

A map longer than ``max_tokens`` on a side is drawn as the pages draw a long input: a max-pooled
overview (``Recorder.pooled``), each cell the largest weight of a block x block square of tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from attnlab.models.adapter import ForwardResult, GenerationStep, ModelAdapter, TokenSeq

from ..web.attention_figures import generation_map, head_grid, head_map
from .display import InlineFigure

GRID_CELLS = 48  # a thumbnail of the model view shows at most 48 x 48 cells (as the pages' grid)
HEAD_CELLS = 256  # one head's map: exact up to 256 tokens, then the pooled overview


def _pick(n: int, chosen: Sequence[int] | None, what: str) -> list[int]:
    """Indices 0:n, or the chosen ones (negative counts from the end); IndexError naming the range."""
    if chosen is None:
        return list(range(n))
    out = []
    for i in chosen:
        if not -n <= i < n:
            raise IndexError(f"{what} {i} is outside 0:{n}")
        out.append(i % n)
    return out


def _kind(run: ForwardResult, kind: str | None) -> str:
    kinds = run.recorder.kinds
    if kind is None:
        return kinds[0]
    if kind not in kinds:
        raise KeyError(f"kind {kind!r} was not recorded; recorded kinds: {kinds}")
    return kind


def _pooled(run: ForwardResult, kind: str, layer: int, head: int, cells: int) -> tuple[np.ndarray, int]:
    t_q, t_k = run.recorder.get(kind, layer).shape
    if max(t_q, t_k) <= cells:
        return run.recorder.dense(kind, layer, head).cpu().numpy(), 1
    pooled, factor = run.recorder.pooled(kind, layer, head, cells, "max")
    return pooled.cpu().numpy(), factor


def model_view(run: ForwardResult, kind: str | None = None, layers: Sequence[int] | None = None,
               heads: Sequence[int] | None = None, max_tokens: int = GRID_CELLS) -> InlineFigure:
    """Every (chosen) layer x head as a thumbnail; ``data["maps"]`` is (L, H, r, c), ``data["block"]`` the pooling."""
    kind = _kind(run, kind)
    layers = _pick(run.recorder.layers(kind), layers, "layer")
    heads = _pick(run.recorder.get(kind, layers[0]).n_heads, heads, "head")
    cells = [[_pooled(run, kind, layer, head, max_tokens) for head in heads] for layer in layers]
    block = cells[0][0][1]
    maps = np.stack([np.stack([m for m, _ in row]) for row in cells])
    q_seq, k_seq = run.axes(kind)
    fig = head_grid(maps, layers, heads, q_seq.tokens, k_seq.tokens, f"{kind} attention: layer x head", block)
    return InlineFigure(fig, {"maps": maps, "layers": layers, "heads": heads, "block": block, "kind": kind})


def head_view(run: ForwardResult, layer: int = 0, head: int = 0, kind: str | None = None,
              max_tokens: int = HEAD_CELLS) -> InlineFigure:
    """One head's map with token labels and hover values; ``data["map"]`` is (r, c)."""
    kind = _kind(run, kind)
    (layer,) = _pick(run.recorder.layers(kind), [layer], "layer")
    (head,) = _pick(run.recorder.get(kind, layer).n_heads, [head], "head")
    weights, block = _pooled(run, kind, layer, head, max_tokens)
    q_seq, k_seq = run.axes(kind)
    fig = head_map(weights, q_seq.tokens, k_seq.tokens, f"{kind} layer {layer} head {head}", block)
    return InlineFigure(fig, {"map": weights, "layer": layer, "head": head, "block": block, "kind": kind})


VIEWS: dict[str, Callable[..., InlineFigure]] = {"model": model_view, "head": head_view}


def show(run: ForwardResult, view: str = "model", **options) -> InlineFigure:
    """Draw ``view`` ("model": the layers x heads grid; "head": one head, ``layer=``, ``head=``) of a forward.

    Raises ValueError for an unknown view (naming the known ones), KeyError for a kind not recorded,
    IndexError for a layer or head out of range.
    """
    if view not in VIEWS:
        raise ValueError(f"view {view!r}: one of {sorted(VIEWS)} (generation traces: attnlab.notebook.trace)")
    return VIEWS[view](run, **options)


@dataclass
class Trace:
    """Captured generation steps: ``prompt`` and ``generated`` token sequences (labels, ids, offsets into
    ``generated.text``); ``tokens`` labels every key, the prompt's then the generated ones."""

    steps: list[GenerationStep]
    prompt: TokenSeq
    generated: TokenSeq

    @property
    def tokens(self) -> list[str]:
        return self.prompt.tokens + self.generated.tokens

    @property
    def text(self) -> str | None:
        return self.generated.text

    def rows(self, layer: int = -1, head: int | None = None) -> list[np.ndarray]:
        """Step s's new query row over the len(prompt) + s keys it saw: one head's, or the mean over heads
        (head None). A sliding-window cache (Mistral) keeps only the last keys: the ones it dropped get 0."""
        out = []
        for s, step in enumerate(self.steps):
            rec = step.recorder
            (lay,) = _pick(rec.layers("decoder"), [layer], "layer")
            weights = rec.dense("decoder", lay)[:, -1]  # (H, keys in the cache)
            if head is not None:
                (h,) = _pick(weights.shape[0], [head], "head")
                row = weights[h].cpu().numpy()
            else:
                row = weights.mean(0).cpu().numpy()
            out.append(np.pad(row, (len(self.prompt) + s - row.shape[0], 0)))
        return out

    def show(self, layer: int = -1, head: int | None = None) -> InlineFigure:
        """Steps x keys: the new token's attention at each step (a head, or the mean of the layer's heads)."""
        rows = self.rows(layer, head)
        which = "mean over heads" if head is None else f"head {head}"
        fig = generation_map(rows, self.tokens, len(self.prompt), f"generation: layer {layer}, {which}")
        width = len(self.tokens)
        matrix = np.full((len(rows), width), math.nan)
        for s, row in enumerate(rows):
            matrix[s, :len(row)] = row
        return InlineFigure(fig, {"rows": matrix})


def trace(model: ModelAdapter, prompt: str, max_new_tokens: int = 16, **generate_options) -> Trace:
    """Generate from ``prompt`` under capture (``ModelAdapter.generate``'s options), every step kept."""
    steps = list(model.generate(prompt, max_new_tokens, **generate_options))
    return Trace(steps, model.tokenize(prompt).seq(), model.generated([s.token_id for s in steps]))
