"""Dense attention for small inputs: every selected layer and head as (L, H, Tq, Tk).

Bounded by ``dense_budget`` weights per answer; past it the client is pointed to
/api/runs, which serves the same maps as tiles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from attnlab.models import ModelAdapter, TokenSeq
from attnlab.models.capture import stack_maps

from ..core.settings import Settings
from .errors import Invalid, TooLarge
from .hub import ModelHub
from .inputs import encode_checked


@dataclass
class DenseMaps:
    kind: str
    weights: torch.Tensor  # (L, H, Tq, Tk) float32, or float16 for NPY answers
    query: TokenSeq  # the rows
    key: TokenSeq  # the columns
    layers: list[int]
    heads: list[int]

    def token_fields(self) -> dict:
        """tokens, token_ids, offsets, special, segments of the rows; the same with key_ of the columns."""
        return {**self.query.fields(), **self.key.fields("key_")}


@dataclass
class DenseResult:
    model: str
    family: str
    backend: str
    maps: dict[str, DenseMaps]  # by kind
    timings: dict[str, float]
    target_text: str | None = None  # encoder-decoder: the decoded target, which target offsets index


def _select(values: list[int] | None, n: int, field: str) -> list[int]:
    if values is None:
        return list(range(n))
    bad = [v for v in values if not 0 <= v < n]
    if bad:
        raise Invalid(f"{field}: {bad} outside 0..{n - 1} (the model has {n} {field})")
    return values


def _over_budget(n_weights: int, budget: int) -> TooLarge:
    return TooLarge(f"text: the maps asked for hold {n_weights:,} weights, over dense_budget {budget:,} "
                    "(layers x heads x T^2); select fewer layers/heads, or POST /api/runs and fetch tiles "
                    "or pooled overviews from GET /api/runs/{run_id}/attention")


class AttentionService:
    def __init__(self, hub: ModelHub, settings: Settings):
        self.hub = hub
        self.settings = settings

    def _compute(self, adapter: ModelAdapter, text: str, text_pair: str | None, backend: str,
                 layers: list[int] | None, heads: list[int] | None, kind: str | None,
                 dtype: torch.dtype) -> DenseResult:
        info = adapter.info
        budget = self.settings.dense_budget
        enc = encode_checked(adapter, text, text_pair, self.settings)
        n = len(enc)
        sel_layers = _select(layers, info.n_layers, "layers")
        sel_heads = _select(heads, info.n_heads, "heads")
        # a seq2seq decoder produces up to n + 3 tokens; check before running with that bound
        t_dec = n + 3 if info.family == "encoder-decoder" else n
        kinds_factor = 1 if info.family != "encoder-decoder" else (n * n + 2 * t_dec * t_dec + t_dec * n) / (n * n)
        estimate = int(len(sel_layers) * len(sel_heads) * n * n * kinds_factor)
        if estimate > budget:
            raise _over_budget(estimate, budget)
        result = adapter.forward_encoded(enc, backend, keep_weights=True)
        t0 = time.perf_counter()
        rec = result.recorder
        maps: dict[str, DenseMaps] = {}
        for k in rec.kinds:
            if kind is not None and k != kind:
                continue
            k_layers = _select(layers, rec.layers(k), "layers")
            k_heads = _select(heads, rec.get(k, 0).n_heads, "heads")
            t_q, t_k = rec.get(k, 0).shape
            if len(k_layers) * len(k_heads) * t_q * t_k > budget:
                raise _over_budget(len(k_layers) * len(k_heads) * t_q * t_k, budget)
            rows, cols = result.axes(k)
            maps[k] = DenseMaps(k, stack_maps(rec, k, k_layers, k_heads, dtype), rows, cols, k_layers, k_heads)
        if kind is not None and not maps:
            raise Invalid(f"kind: model {info.id!r} records {rec.kinds}, not {kind!r}")
        timings = {**result.timings, "maps_ms": (time.perf_counter() - t0) * 1e3}
        return DenseResult(info.id, info.family, backend, maps, timings,
                           result.target.text if result.target is not None else None)

    async def dense(self, model: str, text: str, text_pair: str | None, backend: str | None,
                    layers: list[int] | None, heads: list[int] | None, kind: str | None,
                    dtype: torch.dtype = torch.float32) -> DenseResult:
        """Maps in ``dtype`` (float16 for NPY answers: the wire format, built in place)."""
        backend = self.hub.check_backend(model, backend)
        return await self.hub.call(model, backend,
                                   lambda a: self._compute(a, text, text_pair, backend, layers, heads, kind, dtype))
