"""Generation traces: one event per new token with its top-k and its attention row.

Each step runs in a worker thread; between steps the loop checks the wall-clock
limit and whether the client has gone, so an abandoned stream stops within a step.
The model's own seeded generator makes a trace deterministic for a seed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from attnlab.models import Encoded, GenerationStep, ModelAdapter

from ..core.logctx import note
from ..core.metrics import Metrics
from ..core.settings import Settings
from .errors import Invalid, with_article
from .hub import ModelHub, in_thread
from .inputs import encode_checked


@dataclass
class GenerateParams:
    model: str
    prompt: str
    max_new_tokens: int
    temperature: float
    top_k: int | None
    top_p: float | None
    seed: int
    backend: str | None
    n_top: int


def new_token_rows(step: GenerationStep) -> np.ndarray:
    """(L, H, context_len): the attention row of the query that produced this step's token."""
    rec = step.recorder
    rows = []
    for layer in range(rec.layers("decoder")):
        r = rec.get("decoder", layer)
        t_q, t_k = r.shape
        row = r.block(slice(0, r.n_heads), slice(t_q - 1, t_q), slice(0, t_k))[:, 0]  # (H, t_k)
        # a sliding-window cache (Mistral) keeps only the last t_k keys: the dropped ones had weight 0
        rows.append(torch.nn.functional.pad(row, (step.context_len - t_k, 0)))  # (H, context_len)
    return torch.stack(rows).cpu().numpy()  # from the model's device


def step_event(step: GenerationStep) -> dict:
    return {"step": step.step, "token": step.token, "token_id": step.token_id, "text": step.text,
            "offsets": list(step.offsets) if step.offsets is not None else None,
            "relabel": [{"step": i, "token": label} for i, label in step.relabel],
            "top": [{"token": c.token, "token_id": c.token_id, "prob": c.prob} for c in step.top],
            "context_len": step.context_len, "attention": new_token_rows(step)}


def _next_event(steps: Iterator[GenerationStep]) -> dict | None:
    step = next(steps, None)
    return None if step is None else step_event(step)


class GenerationService:
    def __init__(self, hub: ModelHub, settings: Settings, metrics: Metrics | None = None):
        self.hub = hub
        self.settings = settings
        self.metrics = metrics

    def check(self, p: GenerateParams) -> None:
        if p.max_new_tokens > self.settings.max_new_tokens:
            raise Invalid(f"max_new_tokens: {p.max_new_tokens} is over the server limit of "
                          f"{self.settings.max_new_tokens}")
        info = self.hub.info(p.model)
        if not info.can_generate:
            raise Invalid(f"model: {p.model!r} is {with_article(info.family)}; generation needs a decoder")
        if p.backend not in (None, "auto"):
            self.hub.check_backend(p.model, p.backend)

    def backend(self, p: GenerateParams, adapter: ModelAdapter, n_prompt: int) -> str:
        """The backend for a prompt of ``n_prompt`` tokens: the one named, else chosen by length as runs are
        (``ModelHub.resolve_backend``: flash for long prompts); 413 where it would hold T x T maps past
        ``math_max_bytes`` (T: the prompt plus the new tokens, up to the model's positions)."""
        backend, _ = self.hub.resolve_backend(adapter.info, p.backend, n_prompt)
        self.hub.check_attention_memory(adapter.info, backend, self._positions(p, adapter, n_prompt),
                                        "a shorter prompt or fewer max_new_tokens")
        return backend

    @staticmethod
    def _positions(p: GenerateParams, adapter: ModelAdapter, n_prompt: int) -> int:
        """The most positions the generation reaches: the prompt plus the new tokens, up to the model's limit."""
        return min(n_prompt + p.max_new_tokens, adapter.info.max_positions or n_prompt + p.max_new_tokens)

    async def _encode(self, p: GenerateParams) -> tuple[ModelAdapter, Encoded, str]:
        adapter = await self.hub.adapter(p.model)
        enc = await in_thread(
            lambda: encode_checked(adapter, p.prompt, None, self.settings, field="prompt", reserve=1))
        return adapter, enc, self.backend(p, adapter, len(enc))

    async def prepare(self, p: GenerateParams) -> None:
        """Every check that can fail as a 4xx, done before a stream starts (loads the model)."""
        self.check(p)
        await self._encode(p)

    async def events(self, p: GenerateParams, is_disconnected: Callable[[], Awaitable[bool]]
                     ) -> AsyncIterator[tuple[str, dict]]:
        """('prompt', event) once the prompt is read (its tokens, so a page labels the context from the first
        token on), ('token', event) per step, then ('summary', event). Call check() first."""
        self.check(p)
        t_start = time.perf_counter()
        deadline = t_start + self.settings.generate_timeout_s
        loaded, enc, backend = await self._encode(p)
        # T x T maps (math) count against the server's math_max_bytes until the generation ends
        with self.hub.dense_reservation(loaded.info, backend, self._positions(p, loaded, len(enc))):
            async with self.hub.use(p.model, backend) as adapter:
                yield "prompt", {"model": p.model, "backend": backend, **enc.seq().fields("prompt_", segments=False)}
                steps = adapter.generate(p.prompt, p.max_new_tokens, p.temperature, p.top_k, p.top_p, p.seed, backend,
                                         n_top=p.n_top)
                tokens: list[str] = []  # labels, completed by later steps' relabel
                token_ids: list[int] = []
                offsets: list[list[int] | None] = []
                released: list[str] = []  # the text of each step
                first_ms = None
                stopped = "max_new_tokens"
                try:
                    while True:
                        if await is_disconnected():
                            stopped = "disconnect"
                            break
                        if time.perf_counter() > deadline:
                            stopped = "timeout"
                            break
                        event = await in_thread(_next_event, steps)
                        if event is None:
                            break
                        first_ms = first_ms if first_ms is not None else (time.perf_counter() - t_start) * 1e3
                        tokens.append(event["token"])
                        for r in event["relabel"]:
                            tokens[r["step"]] = r["token"]
                        token_ids.append(event["token_id"])
                        offsets.append(event["offsets"])
                        released.append(event["text"])
                        yield "token", event
                except (GeneratorExit, asyncio.CancelledError):
                    stopped = "disconnect"  # the stream was closed under us (SSE client gone)
                    raise
                finally:
                    steps.close()
                    if self.metrics is not None:
                        self.metrics.generated_tokens.inc(len(tokens))
                        if stopped in ("disconnect", "timeout"):
                            self.metrics.generation_stops.labels(stopped).inc()
                if stopped == "max_new_tokens" and len(tokens) < p.max_new_tokens:
                    stopped = "eos" if token_ids and token_ids[-1] == adapter.eos_token_id else "max_positions"
                total_ms = (time.perf_counter() - t_start) * 1e3
                note(tokens=len(enc) + len(tokens), stopped=stopped)
                if self.metrics is not None and stopped not in ("disconnect", "timeout"):
                    self.metrics.generation_stops.labels(stopped).inc()
                generated = adapter.decode(token_ids)
                yield "summary", {
                    "model": p.model, "backend": backend, "seed": p.seed, **enc.seq().fields("prompt_", segments=False),
                    "tokens": tokens, "token_ids": token_ids, "offsets": offsets,
                    "special": [i in adapter.special_ids for i in token_ids],
                    # the whole text is the tokenizer's decoding; the steps released all of it but an
                    # unfinished character at the very end, which closes the stream here
                    "text": p.prompt + generated, "generated_text": generated,
                    "tail_text": generated[len("".join(released)):], "stopped": stopped,
                    "timings": {"total_ms": total_ms, "first_token_ms": first_ms,
                                "per_token_ms": total_ms / len(tokens) if tokens else None},
                }

    async def collect(self, p: GenerateParams, is_disconnected: Callable[[], Awaitable[bool]]) -> dict:
        steps, summary = [], {}
        async for name, event in self.events(p, is_disconnected):
            if name == "token":
                steps.append(event)
            elif name == "summary":
                summary = event
        return {"steps": steps, "summary": summary}
