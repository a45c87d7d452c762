"""Long inputs in class: a demo passage that fits the model, the backend chosen for long runs, a run streamed
with its progress and cancelled when its client goes, every thumbnail of a grid in one answer, and the
models prepared in the background at start-up.

- ``long_text``: the bundled passage, made readable by the model (characters its vocabulary lacks are
  lower-cased or left out) and cut at a sentence end so it fits the model's positions, the server's
  the run cache and ``long_text_tokens`` (or the tokens asked for).
- the backend: ``auto`` (or no backend) is ``flash`` from ``auto_flash_min_tokens`` tokens on, where the model
  has it (exact, O(T) memory), else the hub's default: ``ModelHub.resolve_backend``, the one rule for runs,
  streamed runs and generation.
- ``stream``: (event, data) pairs: ``estimate`` (tokens, backend and why, seconds), ``progress`` per recorded
  layer, ``done`` with the run. The forward reports each layer through ``attnlab.models.capture.on_record``;
  when the consumer stops (the client disconnected), the next layer raises ``Cancelled`` in the worker thread,
  so the server stops the work within one layer, on whichever worker holds the stream.
- ``overviews``: pooled overviews of every head of a band of layers, (layers, heads, r, c), for the grid.
- ``Preparer``: loads the default models (converting SmolLM2's GGUF once) in the background; /api/health says
  ``preparing`` meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from attnlab.models import ModelAdapter, ModelInfo
from attnlab.models.capture import Cancelled, on_record

from ..core.settings import Settings
from .errors import Invalid, ServiceError, TooLarge
from .hub import ModelHub, in_thread
from .inputs import encode_checked
from .runs import Run, RunService, parse_range, run_id_for, run_request

log = logging.getLogger(__name__)

# The demo passage: plain English prose about attention, written for attnlab. Repeated (each copy numbered,
# so repeats are not identical and induction heads have something to find) until it fills the model.
PASSAGE = (
    "A transformer reads a sentence all at once. Every token asks a question, the query, and every token "
    "offers an answer, the key. The dot product of the two says how well they match, and the softmax turns "
    "the matches of one query into weights that sum to one. Each head learns its own questions: one looks at "
    "the previous token, another at the first token of the text, a third at the token that followed the last "
    "time the current token appeared. That third kind, the induction head, is how a model copies a pattern it "
    "has seen before. Long texts make the map large: a thousand tokens give a million weights per head, so the "
    "page first shows a pooled overview and fetches exact weights only where you zoom. "
    "The weights never need to be stored whole. From the queries, the keys and the log of each row's sum, "
    "any block of the map can be rebuilt exactly, which is also what lets the fast backend stay on. "
    "Try to find the heads that look back one token, and the heads that look at the start of the passage. "
)


@dataclass
class LongText:
    text: str
    n_tokens: int
    limit: int
    limit_reason: str
    backend: str
    backend_reason: str
    estimate_s: float
    dropped: list[str] = field(default_factory=list)  # characters the model cannot read, left out
    lowercased: bool = False


def readable(adapter: ModelAdapter, text: str) -> tuple[dict[int, str], list[str], bool]:
    """How to make the text readable by the model: each character its vocabulary lacks lower-cased (when that
    one it has) or left out, as a ``str.translate`` table; (table, dropped characters, whether any was
    lower-cased). Byte-level vocabularies read every character."""
    unk = getattr(adapter, "unk_id", None)
    if unk is None:
        return {}, [], False

    def known(ch: str) -> bool:
        enc = adapter.tokenize(ch)
        return unk not in enc.ids[0].tolist()

    swap: dict[str, str] = {}
    dropped: list[str] = []
    lowered = False
    for ch in sorted(set(text)):
        if ch.isspace() or known(ch):
            continue
        if ch.lower() != ch and known(ch.lower()):
            swap[ch] = ch.lower()
            lowered = True
        else:
            swap[ch] = ""
            dropped.append(ch)
    return str.maketrans(swap), dropped, lowered


def fit_text(adapter: ModelAdapter, base: str, limit: int, table: dict[int, str] | None = None) -> tuple[str, int]:
    """Copies of ``base`` (numbered, then translated by ``table``) cut at the last sentence end whose tokens fit
    in ``limit``: (text, tokens)."""
    copies = []
    text = ""
    while True:  # enough text to pass the limit (or the character bound of a very large limit)
        copy = base.replace("A transformer", f"({len(copies) + 1}) A transformer", 1)
        copies.append(copy.translate(table or {}))
        text = "".join(copies)
        enc = adapter.tokenize(text)
        if len(enc) > limit or len(text) > 60 * limit:
            break
    if len(enc) <= limit:
        return text, len(enc)
    offsets = [o for o in enc.offsets[:limit] if o is not None]
    cut = offsets[-1][1] if offsets else len(text)  # the end of the last token that fits
    # a sentence end before it; a word end where that would leave a fifth of the model empty (char-level models
    # with few positions), then one word less while merges at the cut make it longer
    sentence = text.rfind(".", 0, cut)
    end = sentence + 1 if sentence > 0 and len(adapter.tokenize(text[: sentence + 1])) >= 0.8 * limit else cut
    while True:
        candidate = text[:end].rstrip()
        n = len(adapter.tokenize(candidate))
        space = candidate.rfind(" ")
        if n <= limit or space <= 0:
            return candidate, n
        end = space


@dataclass
class Calibration:
    """Seconds per estimated GFLOP of a forward, per (model, backend): measured from the runs of this process,
    starting from a matmul timed once (the estimate only needs to say 'about 1 s' or 'about 20 s')."""

    seconds_per_gflop: dict[tuple[str, str], float] = field(default_factory=dict)
    base: float | None = None

    def baseline(self) -> float:
        if self.base is None:
            a = torch.randn(512, 512)
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                a @ a
                best = min(best, time.perf_counter() - t0)
            self.base = best / (2 * 512**3 / 1e9)
        return self.base

    def get(self, model: str, backend: str) -> float:
        # math builds every T x T map and softmaxes it: ~2x the work of the fused kernels, measured on MiniLM
        return self.seconds_per_gflop.get((model, backend), self.baseline() * (2.0 if backend == "math" else 1.0))

    def update(self, model: str, backend: str, gflop: float, seconds: float) -> None:
        if gflop > 0.05:  # tiny runs measure the overhead, not the rate
            self.seconds_per_gflop[(model, backend)] = seconds / gflop


def forward_gflop(info: ModelInfo, n_tokens: int) -> float:
    """Work of one forward: 2 x parameters x tokens for the matmuls, plus 4 x T^2 x d_model per attention layer
    (Q.K and weights.V), for every kind the model records (an encoder-decoder also decodes about as many)."""
    params = info.n_params or 12 * info.n_layers * info.d_model**2
    n = n_tokens
    per_kind = 2 * params * n + 4 * info.n_layers * n * n * info.d_model
    return per_kind * len(info.kinds) / 1e9


class LongRunService:
    def __init__(self, hub: ModelHub, runs: RunService, settings: Settings):
        self.hub = hub
        self.runs = runs
        self.settings = settings
        self.calibration = Calibration()
        self.inflight: set[asyncio.Future] = set()  # forwards still running (a cancelled one until its next layer)

    # -- backend and estimate -----------------------------------------------------------------
    def estimate_s(self, info: ModelInfo, n_tokens: int, backend: str) -> float:
        return forward_gflop(info, n_tokens) * self.calibration.get(info.id, backend)

    # -- the demo passage -----------------------------------------------------------------------
    async def long_text(self, model: str, tokens: int | None) -> LongText:
        info = self.hub.info(model)
        adapter = await self.hub.adapter(model)
        # ties go to the first: the model's own bound reads best
        limits = {"max_positions": info.max_positions, "run_cache_bytes": self.runs.tokens_in_budget(adapter)}
        if tokens is not None:  # asked for: as many as the model and the run cache take
            limits["tokens"] = tokens
        else:  # the classroom default: long, yet quick on a laptop
            limits["long_text_tokens"] = self.settings.long_text_tokens
        reason, limit = min(limits.items(), key=lambda kv: kv[1])

        def make() -> LongText:
            table, dropped, lowered = readable(adapter, PASSAGE + "(0123456789)")
            if not PASSAGE.translate(table).strip():
                raise Invalid(f"model: {model!r} reads none of the demo passage's characters")
            text, n = fit_text(adapter, PASSAGE, limit, table)
            backend, why = self.hub.resolve_backend(info, "auto", n)
            return LongText(text, n, limit, reason, backend, why, self.estimate_s(info, n, backend), dropped, lowered)

        return await in_thread(make)

    # -- a run with its progress ------------------------------------------------------------------
    async def stream(self, model: str, text: str, text_pair: str | None, backend: str | None,
                     values: bool = False) -> AsyncIterator[tuple[str, dict | Run]]:
        """("estimate", {...}), ("progress", {...})*, ("done", run) or ("cached", run). Closing the iterator early
        (the client went) cancels the forward between layers."""
        info = self.hub.info(model)
        adapter = await self.hub.adapter(model)
        enc = await in_thread(encode_checked, adapter, text, text_pair, self.settings)
        n = len(enc)
        chosen, why = self.hub.resolve_backend(info, backend, n)
        # the same request, id and shared-store entry as POST /api/runs: any worker can serve the run after
        request = run_request(model, await self.runs.fingerprint(model), text, text_pair, chosen, values)
        run_id = run_id_for(request)
        run = self.runs.cache.get(run_id)
        if run is not None:
            await self.runs.store.put(run_id, request)
            yield "cached", run
            return
        self.runs.check_memory(adapter, n, values, chosen)  # a 413 before the stream starts, not in it
        total = info.n_layers * len(info.kinds)
        yield "estimate", {"n_tokens": n, "backend": chosen, "backend_reason": why, "n_steps": total,
                           "estimate_s": float(f"{self.estimate_s(info, n, chosen):.3g}"), "run_id": run_id}

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        cancel = threading.Event()

        def hook(kind: str, layer: int) -> None:
            if cancel.is_set():
                raise Cancelled(f"run {run_id} cancelled by its client after {kind} layer {layer}")
            loop.call_soon_threadsafe(queue.put_nowait, (kind, layer))

        def compute(a: ModelAdapter) -> Run:
            with on_record(hook):
                return self.runs._compute(a, run_id, text, text_pair, chosen, values)

        t0 = time.perf_counter()
        task = asyncio.ensure_future(self.hub.call(model, chosen, compute))
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
        done = 0
        getter: asyncio.Future | None = None
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                finished, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in finished:
                    kind, layer = getter.result()
                    done += 1
                    yield "progress", {"done": min(done, total), "total": total, "kind": kind, "layer": layer,
                                       "elapsed_s": round(time.perf_counter() - t0, 2)}
                    continue
                getter.cancel()
                run = task.result()  # raises the service error of a failed run
                await self.runs.keep(run, request)
                seconds = time.perf_counter() - t0
                self.calibration.update(model, chosen, forward_gflop(info, n), seconds)
                run.timings["stream_ms"] = seconds * 1e3
                yield "done", run
                return
        finally:
            if getter is not None:
                getter.cancel()
            if not task.done():
                cancel.set()  # the worker thread stops at its next layer
                log.info("run %s cancelled by its client after %d of %d layers", run_id, done, total)
                task.add_done_callback(_retrieve)

    # -- the grid's thumbnails in one answer --------------------------------------------------------
    def _overviews(self, run: Run, kind: str, layers: tuple[int, int], pool: int, mode: str) -> tuple[np.ndarray, int]:
        maps, factor = [], 1
        for layer in range(*layers):
            for head in range(run.recorder.get(kind, layer).n_heads):
                # a long run's overviews are pooled in the background as soon as it exists: shared here
                data, factor = self.runs.overview(run, (kind, layer, head, pool, mode))
                maps.append(data)
        stacked = torch.stack(maps).view(layers[1] - layers[0], -1, *maps[0].shape)
        return stacked.cpu().numpy(), factor  # from the model's device

    async def overviews(self, run: Run, kind: str | None, layers: str | None, pool: int,
                        mode: str) -> tuple[str, tuple[int, int], np.ndarray, int]:
        """(kind, layer range, pooled maps (layers, heads, r, c), factor)."""
        kind = run.check(kind)
        if pool > self.settings.max_pool:
            raise Invalid(f"pool: {pool} is over max_pool {self.settings.max_pool}")
        span = parse_range(layers, run.recorder.layers(kind), "layers")
        first = run.recorder.get(kind, 0)
        n_heads, (t_q, t_k) = first.n_heads, first.shape
        factor = max(1, math.ceil(max(t_q, t_k) / pool))  # the maps' own size (pooled_overview's rule)
        rows, cols = math.ceil(t_q / factor), math.ceil(t_k / factor)
        cells = (span[1] - span[0]) * n_heads * rows * cols
        if cells > self.settings.max_tile_cells:
            raise TooLarge(f"layers: {span[1] - span[0]} layers x {n_heads} heads x {rows}x{cols} cells is over "
                           f"max_tile_cells {self.settings.max_tile_cells}; ask fewer layers or a smaller pool")
        maps, factor = await in_thread(self._overviews, run, kind, span, pool, mode)
        return kind, span, maps, factor


def _retrieve(task: asyncio.Future) -> None:
    """A cancelled run ends with Cancelled (or the error it met first): nobody waits for it any more."""
    if not task.cancelled() and task.exception() is not None and not isinstance(task.exception(), Cancelled):
        log.warning("a cancelled run ended with %r", task.exception())


def preparing_note(model_id: str) -> str:
    """What preparing a model means here: SmolLM2's first load converts its GGUF file once per machine."""
    if model_id == "smollm2":
        from attnlab.models.hf import smollm2_gguf
        from attnlab.models.hf.gguf import is_converted

        gguf = smollm2_gguf()
        if gguf is not None and not is_converted(gguf):
            return ("converting its GGUF file to float16 safetensors, once per machine (about a minute; "
                    "`make install` does it ahead)")
    return "loading its weights"


class Preparer:
    """Loads models in the background at start-up (SmolLM2's first load converts its GGUF file, ~60 s).

    ``preparing`` maps each model still being prepared to what is happening, for /api/health and the pages."""

    def __init__(self, hub: ModelHub):
        self.hub = hub
        self.preparing: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self._task: asyncio.Task | None = None

    def start(self, model_ids: list[str], describe: Callable[[str], str] = lambda model_id: preparing_note(model_id),
              ) -> None:
        for model_id in model_ids:
            try:
                info = self.hub.info(model_id)
            except ServiceError as err:
                log.warning("prepare %s skipped: %s", model_id, err.detail)
                continue
            if info.available and model_id not in self.hub.loaded():
                self.preparing[model_id] = describe(model_id)
        if self.preparing:
            self._task = asyncio.ensure_future(self._run(list(self.preparing)))

    async def _run(self, model_ids: list[str]) -> None:
        for model_id in model_ids:
            t0 = time.perf_counter()
            try:
                await self.hub.adapter(model_id)
                log.info("prepared %s in %.1f s", model_id, time.perf_counter() - t0)
            except ServiceError as err:
                self.failed[model_id] = err.detail
                log.warning("prepare %s failed: %s", model_id, err.detail)
            finally:
                self.preparing.pop(model_id, None)

    async def stop(self) -> None:
        """Shutting down: a model still loading is dropped. A load in a worker thread cannot be interrupted, so
        this waits at most 2 s for it rather than holding the shutdown for a whole GGUF conversion."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=2)
