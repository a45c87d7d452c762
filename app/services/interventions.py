"""Interventions over REST: head ablation, head importance, activation patching, the logit lens.

Each takes ``model`` + ``text`` or, in their place, the ``run_id`` of a run (its model, backend and
tokens). The work itself is ``attnlab.models.interventions``; here are the limits
(``intervention_max_tokens``, ``ablation_grid_max_heads``, ``patch_budget_s``, ``importance_max_probes``,
``lens_max_k``), the answers' token labels, and the errors as 404 / 413 / 422.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from attnlab.models import Encoded, ModelAdapter, TokenSeq
from attnlab.models.interventions import Unsupported, ablate, importance, logit_lens, patch_heads
from attnlab.models.paths import ZOO as SHIPPED_ZOO

from ..core.settings import Settings
from .errors import Invalid, NotFound, TooLarge, with_article
from .hub import ModelHub
from .inputs import encode_checked

# a run as the interventions read it: (model id, backend, its input tokens)
RunLookup = Callable[[str], Awaitable[tuple[str, str, TokenSeq]]]


@dataclass
class Source:
    """Where an intervention's input comes from: a model and text, or a run."""

    model: str | None = None
    text: str | None = None
    run_id: str | None = None
    backend: str | None = None
    field: str = "text"


def _encoded(seq: TokenSeq) -> Encoded:
    """A run's tokens as model input (the ids the model saw; no need to tokenise again)."""
    segments = seq.segments
    return Encoded(torch.tensor([seq.ids]), seq.tokens, seq.offsets, seq.special, segments,
                   torch.tensor([segments]) if segments else None, torch.ones(1, len(seq.ids), dtype=torch.long))


class InterventionService:
    def __init__(self, hub: ModelHub, settings: Settings, find_run: RunLookup):
        self.hub = hub
        self.settings = settings
        self.find_run = find_run

    # -- inputs ------------------------------------------------------------------------------
    async def _resolve(self, src: Source) -> tuple[str, str, TokenSeq | None]:
        """(model, backend, the run's tokens or None); 422 naming the field for a missing or doubled input."""
        if src.run_id is not None:
            if src.model is not None or src.text is not None:
                raise Invalid(f"run_id: give either run_id or model and {src.field}, not both")
            model, backend, seq = await self.find_run(src.run_id)
            if src.backend is not None and src.backend != backend:
                raise Invalid(f"backend: run {src.run_id} ran on {backend!r}; leave backend out or give {backend!r}")
            return model, backend, seq
        if src.model is None or src.text is None:
            missing = "model" if src.model is None else src.field
            raise Invalid(f"{missing}: required (give model and {src.field}, or a run_id)")
        info = self.hub.info(src.model)
        if info.family == "encoder-decoder":
            raise Invalid(f"model: {src.model!r} is {with_article(info.family)}; interventions take encoders and "
                          "decoders")
        return src.model, self.hub.check_backend(src.model, src.backend), None

    def _encode(self, adapter: ModelAdapter, text: str | None, seq: TokenSeq | None, field: str) -> Encoded:
        enc = _encoded(seq) if seq is not None else encode_checked(adapter, text, None, self.settings, field)
        limit = self.settings.intervention_max_tokens
        if len(enc) > limit:
            what = "run_id: the run's input" if seq is not None else field
            raise TooLarge(f"{what}: {len(enc)} tokens is over the limit of {limit} tokens for interventions "
                           "(intervention_max_tokens)")
        return enc

    async def _call(self, src: Source, fn: Callable[[ModelAdapter, Encoded, str], dict]) -> dict:
        model, backend, seq = await self._resolve(src)

        def work(adapter: ModelAdapter) -> dict:
            enc = self._encode(adapter, src.text, seq, src.field)
            t0 = time.perf_counter()
            try:
                out = fn(adapter, enc, backend)
            except Unsupported as err:
                raise Invalid(f"model: {err}") from None
            except ValueError as err:  # the models layer names the field: "heads: layer 5 is outside 0..1"
                raise Invalid(str(err)) from None
            ids = enc.ids[0].tolist()
            return {"model": model, "backend": backend, **TokenSeq(enc.tokens, ids, enc.offsets, enc.special).fields(
                segments=False), **out, "timings": {"total_ms": (time.perf_counter() - t0) * 1e3}}

        return await self.hub.call(model, backend, work)

    @staticmethod
    def _label(adapter: ModelAdapter, token_id: int) -> str:
        return adapter.labels([token_id])[0]

    # -- the four interventions ------------------------------------------------------------------
    async def ablate(self, src: Source, heads: list[tuple[int, int]], mode: str) -> dict:
        def fn(adapter: ModelAdapter, enc: Encoded, backend: str) -> dict:
            r = ablate(adapter, enc, heads, mode, backend)
            changed = [{"position": c.position,
                        "before": {"token": self._label(adapter, c.before_id), "token_id": c.before_id,
                                   "prob": c.before_prob},
                        "after": {"token": self._label(adapter, c.after_id), "token_id": c.after_id,
                                  "prob": c.after_prob}} for c in r.changed_predictions]
            hidden = None
            if r.hidden_cosine is not None:
                hidden = [{"cosine": c, "relative_norm": n} for c, n in zip(r.hidden_cosine, r.hidden_relative_norm)]
            return {"heads": [list(h) for h in heads], "mode": mode, "loss_before": r.loss_before,
                    "loss_after": r.loss_after, "loss_change": r.loss_change, "changed_predictions": changed,
                    "hidden_change": hidden}

        return await self._call(src, fn)

    async def importance(self, src: Source, probes: int) -> dict:
        s = self.settings

        def fn(adapter: ModelAdapter, enc: Encoded, backend: str) -> dict:
            with torch.enable_grad():
                r = importance(adapter, enc, backend, probes, s.ablation_grid_max_heads)
            return {"importance": r.importance, "objective": r.objective, "loss": r.loss,
                    "ablation_loss_change": r.ablation_loss_change,
                    "n_layers": len(r.importance), "n_heads": len(r.importance[0])}

        return await self._call(src, fn)

    async def patch(self, src: Source, corrupted: str, target: int | None) -> dict:
        budget = self.settings.patch_budget_s

        def fn(adapter: ModelAdapter, enc: Encoded, backend: str) -> dict:
            bad = self._encode(adapter, corrupted, None, "corrupted")
            r = patch_heads(adapter, enc, bad, target, backend, budget)
            return {"corrupted_tokens": bad.tokens, "corrupted_token_ids": bad.ids[0].tolist(),
                    "target": {"token": self._label(adapter, r.target_id), "token_id": r.target_id},
                    "position": r.position, "clean_logit": r.clean_logit, "corrupted_logit": r.corrupted_logit,
                    "layers": r.layers, "heads": r.heads, "complete": r.complete, "budget_s": budget}

        return await self._call(src, fn)

    async def lens(self, src: Source, k: int, layers: list[int] | None) -> dict:
        def fn(adapter: ModelAdapter, enc: Encoded, backend: str) -> dict:
            r = logit_lens(adapter, enc, k, layers, backend)
            top = None
            if r.top_ids is not None:
                labels: dict[int, str] = {}

                def label(i: int) -> str:
                    if i not in labels:
                        labels[i] = self._label(adapter, i)
                    return labels[i]

                top = [[[{"token": label(i), "token_id": i, "prob": p} for i, p in zip(ids, probs)]
                        for ids, probs in zip(layer_ids, layer_probs)]
                       for layer_ids, layer_probs in zip(r.top_ids, r.top_probs)]
            return {"layers": r.layers, "k": k, "top": top, "final_prob": r.final_prob,
                    "final_tokens": [self._label(adapter, i) for i in r.final_ids] if r.final_ids else None,
                    "residual_norm": r.residual_norm, "attention_norm": r.attention_norm, "ffn_norm": r.ffn_norm}

        return await self._call(src, fn)

    # -- the heads lab ---------------------------------------------------------------------------
    def lab_results(self) -> dict:
        """results.json of `attnlab lab heads`: in the server's zoo_dir, else the one shipped with attnlab (the lab
        measures the shipped checkpoints)."""
        for zoo in (Path(self.settings.zoo_dir), SHIPPED_ZOO):
            path = zoo / "heads" / "results.json"
            if path.is_file():
                return json.loads(path.read_text())
        raise NotFound(f"lab: no results at {path}; run `attnlab lab heads` to make them")
