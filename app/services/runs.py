"""Runs: a forward pass kept as its capture (Q, K, LSE), addressed by a content hash.

``run_id`` hashes the run's request: model, a fingerprint of its weights, text, text_pair,
backend and the format version, so the same request gives the same id on every worker. The
request is kept in the shared run store (``app.services.run_store``: SQLite for the workers of
one machine, Redis for replicas); a worker asked for a run it has not computed reads the request
there and recomputes the capture (the same weights and code: the same tiles). Each worker caches
captures in an LRU bounded in bytes. Tiles, pooled overviews, head scores and rollout are all
computed from the capture, never from a T x T tensor of the whole map.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import orjson
import torch

from attnlab.models import ModelAdapter, ModelInfo, Recorder, TokenSeq, axis_seqs
from attnlab.models.capture import capture_dtype, capture_pools, pooled_overview
from attnlab.models.capture.packed import bytes_per_value
from attnlab.models.device import CPU
from attnlab.models.fingerprint import module_fingerprint

from ..core.logctx import note
from ..core.settings import Settings
from .errors import Invalid, NotFound, TooLarge
from .hub import ModelHub, in_thread
from .inputs import encode_checked
from .run_store import RunStore, open_run_store

log = logging.getLogger(__name__)


def pooled_cells(n_tokens: int, size: int) -> int:
    """Cells of an n_tokens x n_tokens map pooled to at most size x size (factor ceil(n / size))."""
    factor = max(1, math.ceil(n_tokens / size))
    return math.ceil(n_tokens / factor) ** 2

RUN_FORMAT_VERSION = 3  # bump when what a run contains changes, so old ids do not alias new runs


def run_request(model: str, fingerprint: str, text: str, text_pair: str | None, backend: str,
                values: bool = False) -> dict:
    """Everything that determines a run's capture: what the run store keeps and ``run_id_for`` hashes.
    ``fingerprint`` is ``attnlab.models.fingerprint.module_fingerprint`` of the loaded model (weights, dtype,
    device). ``values``: the capture keeps V too, another run (a key only when true, so other ids stay)."""
    request = {"v": RUN_FORMAT_VERSION, "model": model, "fingerprint": fingerprint, "text": text,
               "text_pair": text_pair, "backend": backend}
    if values:
        request["values"] = True
    return request


def run_id_for(request: dict) -> str:
    """32 hex digits: blake2b of the request's canonical JSON (sorted keys)."""
    return hashlib.blake2b(orjson.dumps(request, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


@dataclass
class Run:
    run_id: str
    model: str
    backend: str
    input: TokenSeq  # the (encoder) input tokens
    target: TokenSeq | None  # encoder-decoder: the decoder's tokens
    recorder: Recorder
    timings: dict[str, float]
    head_stats: dict[str, dict[str, list[list[float]]]] | None = None
    created: float = field(default_factory=time.time)
    # whole-map pooled overviews, (kind, layer, head, pool, mode) -> Future of (pooled, factor): long runs
    # pool them in the background as soon as they exist (RunService.prepool), requests share the result
    overviews: dict[tuple, Future] = field(default_factory=dict, repr=False, compare=False)
    # decoders: the loss of each next token, [T - 1] nats (position i predicts token i + 1); None otherwise
    token_loss: np.ndarray | None = field(default=None, repr=False, compare=False)
    values: bool = False  # the capture keeps V per KV head (POST /api/runs with "values": true)

    @property
    def kinds(self) -> list[str]:
        return self.recorder.kinds

    def nbytes(self) -> int:
        return self.recorder.nbytes()

    @property
    def tokens(self) -> list[str]:
        return self.input.tokens

    def axis(self, kind: str) -> tuple[TokenSeq, TokenSeq]:
        """(query tokens, key tokens) of a map of this kind."""
        return axis_seqs(kind, self.input, self.target)

    def token_fields(self) -> dict:
        """The answer fields of the run's tokens: tokens, token_ids, offsets, special, segments
        (and target_* plus target_text for encoder-decoder models)."""
        out = self.input.fields()
        if self.target is not None:
            out |= {**self.target.fields("target_", segments=False), "target_text": self.target.text}
        return out

    def axis_tokens(self, kind: str) -> tuple[list[str], list[str]]:
        """(query labels, key labels) of a map of this kind."""
        rows, cols = self.axis(kind)
        return rows.tokens, cols.tokens

    def check(self, kind: str | None, layer: int | None = None, head: int | None = None) -> str:
        kind = kind or self.kinds[0]
        if kind not in self.kinds:
            raise Invalid(f"kind: run {self.run_id} recorded {self.kinds}, not {kind!r}")
        n_layers = self.recorder.layers(kind)
        if layer is not None and not 0 <= layer < n_layers:
            raise Invalid(f"layer: {layer} is outside 0..{n_layers - 1} ({kind} has {n_layers} layers)")
        if head is not None:
            n_heads = self.recorder.get(kind, 0).n_heads
            if not 0 <= head < n_heads:
                raise Invalid(f"head: {head} is outside 0..{n_heads - 1} ({n_heads} heads)")
        return kind


def next_token_loss(adapter: ModelAdapter, enc, logits: torch.Tensor | None) -> np.ndarray | None:
    """A decoder's loss at each position: -log p(token i+1 | tokens <= i), [T - 1] float32 nats; None for
    other families (an encoder's logits do not predict the next token)."""
    if logits is None or adapter.info.family != "decoder":
        return None
    if logits.shape[1] < 2:
        return np.zeros(0, dtype=np.float32)
    return torch.nn.functional.cross_entropy(logits[0, :-1].float(), enc.ids[0, 1:].to(logits.device),
                                             reduction="none").cpu().numpy().astype(np.float32)


class RunCache:
    """LRU of runs bounded by the bytes of their captures."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, run_id: str) -> Run | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                self._runs.move_to_end(run_id)
            return run

    def put(self, run: Run) -> None:
        size = run.nbytes()
        if size > self.budget:
            raise TooLarge(f"text: this run's capture needs {size / 2**20:.1f} MiB, over the run cache budget of "
                           f"{self.budget / 2**20:.1f} MiB (run_cache_bytes); use a shorter text")
        with self._lock:
            if run.run_id in self._runs:
                return
            while self._runs and self.nbytes + size > self.budget:
                _, old = self._runs.popitem(last=False)
                self.nbytes -= old.nbytes()
                self.evictions += 1
            self._runs[run.run_id] = run
            self.nbytes += size


@dataclass
class Tile:
    """A block of one head's map, exact (factor 1) or pooled."""

    data: np.ndarray  # (r, c) float32
    rows: tuple[int, int]
    cols: tuple[int, int]
    factor: int
    row_tokens: list[str] | None
    col_tokens: list[str] | None


def parse_range(text: str | None, n: int, name: str) -> tuple[int, int]:
    """'a:b' (either end optional) -> (a, b) inside 0:n, or 422 naming the bounds."""
    if text is None:
        return 0, n
    start_s, _, stop_s = text.partition(":")
    try:
        start = int(start_s) if start_s else 0
        stop = int(stop_s) if stop_s else n
    except ValueError:
        raise Invalid(f"{name}: {text!r} is not a range 'a:b'") from None
    if 0 <= stop <= start <= n:  # both ends inside, in the wrong order (or equal)
        raise Invalid(f"{name}: {start}:{stop} is empty: a range a:b is half-open and needs a < b, inside 0:{n}")
    if not 0 <= start < stop <= n:
        raise Invalid(f"{name}: {start}:{stop} is outside 0:{n} (need 0 <= a < b <= {n})")
    return start, stop


class RunService:
    def __init__(self, hub: ModelHub, settings: Settings, store: RunStore | None = None):
        self.hub = hub
        self.settings = settings
        # on a GPU, also at most gpu_cache_fraction of its memory (a service built without a hub: CPU)
        self.cache = RunCache(settings.run_cache_limit(hub.placement if hub is not None else CPU))
        self.store = store or open_run_store(settings.run_store, settings.run_ttl_s, settings.retry_after_s)
        self.restored = 0  # runs this worker recomputed from the shared store
        self._pending: dict[str, asyncio.Future] = {}
        self._prepool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attnlab-prepool")
        self._fingerprints: dict[str, str] = {}

    # -- creating -----------------------------------------------------------------------------
    def capture_store(self, n_tokens: int) -> torch.dtype:
        """How a run of ``n_tokens`` keeps Q and K: float32 up to ``capture_float32_max_tokens``, past it int16
        with a float32 scale per vector (``attnlab.models.capture.packed``: 2 + 4/head_dim bytes per value)."""
        return torch.int16 if n_tokens > self.settings.capture_float32_max_tokens else torch.float32

    def pool_sizes(self, info: ModelInfo, n_tokens: int) -> tuple[int, ...]:
        """The overview sizes a run of ``n_tokens`` pools for every head at once (``prepool_sizes`` from
        ``prepool_min_tokens`` tokens on, smallest first, while all of them fit ``prepool_max_bytes``; maps
        taken as n_tokens x n_tokens)."""
        if n_tokens < self.settings.prepool_min_tokens:
            return ()
        heads = info.n_heads * info.n_layers * len(info.kinds)
        sizes, total = [], 0
        for size in sorted(set(self.settings.prepool_sizes)):
            total += heads * pooled_cells(n_tokens, size) * 4
            if total > self.settings.prepool_max_bytes:
                break
            sizes.append(size)
        return tuple(sizes)

    def pools_while_running(self, info: ModelInfo, n_tokens: int, backend: str | None) -> tuple[int, ...]:
        """The ``pool_sizes`` flash gathers from its tiles as it runs: from ``pool_while_running_min_tokens``
        tokens on (where pooling after the run would take seconds per head), else none."""
        if backend != "flash" or n_tokens < self.settings.pool_while_running_min_tokens:
            return ()
        return self.pool_sizes(info, n_tokens)

    def estimate_bytes(self, adapter: ModelAdapter, n_tokens: int, values: bool = False,
                       backend: str | None = None) -> int:
        """Bytes of the capture before running it: q and k (float32, or int16 plus a float32 scale per vector
        for long runs; K per KV head under grouped-query attention), v with ``values`` (per KV head, float32)
        and the float32 LSE, per layer and kind. Exactly what the capture then holds (tested)."""
        info = adapter.info
        head_dim = info.d_model // info.n_heads
        kv = info.n_kv_heads or info.n_heads
        qk_bytes = bytes_per_value(self.capture_store(n_tokens), head_dim)
        v_bytes = kv * head_dim * 4 if values else 0
        per_token = (info.n_heads + kv) * head_dim * qk_bytes + v_bytes + info.n_heads * 4
        # overviews pooled as the run is made count with the capture
        pooled = sum(info.n_heads * pooled_cells(n_tokens, size) * 4
                     for size in self.pools_while_running(info, n_tokens, backend))
        kinds = len(info.kinds)
        return (round(n_tokens * per_token) + pooled) * info.n_layers * kinds

    def check_memory(self, adapter: ModelAdapter, n_tokens: int, values: bool, backend: str) -> None:
        """Every 413 a run can meet before it starts: T x T maps past ``math_max_bytes``
        (``ModelHub.check_attention_memory``), a capture past the run cache budget."""
        self.hub.check_attention_memory(adapter.info, backend, n_tokens)
        estimate = self.estimate_bytes(adapter, n_tokens, values, backend)
        if estimate > self.cache.budget:
            raise TooLarge(f"text: a run of {n_tokens} tokens needs about {estimate / 2**20:.0f} MiB of capture, over "
                           f"the run cache budget of {self.cache.budget / 2**20:.0f} MiB (run_cache_bytes)")

    def tokens_in_budget(self, adapter: ModelAdapter) -> int:
        """The most tokens whose capture fits ``run_cache_bytes`` (past ``capture_float32_max_tokens`` a token
        costs the int16 bytes)."""
        budget, threshold = self.cache.budget, self.settings.capture_float32_max_tokens
        n = budget // max(1, self.estimate_bytes(adapter, 1))
        if n < threshold:
            return n
        half = self.estimate_bytes(adapter, threshold + 1) / (threshold + 1)
        return max(n, int(budget // half))

    def _compute(self, adapter: ModelAdapter, run_id: str, text: str, text_pair: str | None, backend: str,
                 values: bool = False) -> Run:
        enc = encode_checked(adapter, text, text_pair, self.settings)
        self.check_memory(adapter, len(enc), values, backend)
        with self.hub.dense_reservation(adapter.info, backend, len(enc)), \
                capture_dtype(self.capture_store(len(enc))), \
                capture_pools(self.pools_while_running(adapter.info, len(enc), backend)):
            result = adapter.forward_encoded(enc, backend, keep_values=values)
        run = Run(run_id, adapter.info.id, backend, result.input, result.target, result.recorder,
                  dict(result.timings), token_loss=next_token_loss(adapter, enc, result.logits), values=values)
        if len(enc) <= self.settings.head_stats_max_tokens:
            t0 = time.perf_counter()
            run.head_stats = compute_head_stats(run)
            run.timings["head_stats_ms"] = (time.perf_counter() - t0) * 1e3
        return run

    async def fingerprint(self, model: str) -> str:
        """The loaded model's weights fingerprint (computed once per process, in a thread; loads the model)."""
        if model not in self._fingerprints:
            adapter = await self.hub.adapter(model)
            self._fingerprints[model] = await in_thread(module_fingerprint, adapter.model)
        return self._fingerprints[model]

    async def _obtain(self, request: dict, run_id: str) -> tuple[Run, bool]:
        """The run of ``request`` from this worker's cache, or computed once however many ask at a time."""
        run = self.cache.get(run_id)
        if run is not None:
            return run, True
        if run_id in self._pending:  # the same run is being computed: share it
            return await asyncio.shield(self._pending[run_id]), True
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[run_id] = future
        model, text, text_pair, backend = request["model"], request["text"], request["text_pair"], request["backend"]
        values = bool(request.get("values", False))
        try:
            run = await self.hub.call(model, backend, lambda a: self._compute(a, run_id, text, text_pair, backend,
                                                                                 values))
            self.cache.put(run)
            if len(run.tokens) >= self.settings.prepool_min_tokens:
                self.prepool(run)
            future.set_result(run)
            return run, False
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        finally:
            del self._pending[run_id]

    async def create(self, model: str, text: str, text_pair: str | None, backend: str | None,
                     values: bool = False) -> tuple[Run, bool]:
        """The run for this input: (run, cached). ``values``: keep V too (a run of its own id). Stores its
        request in the shared run store (refreshing its expiry), so every worker can serve it. No backend:
        chosen by the input's length (``ModelHub.resolve_backend``)."""
        if backend in (None, "auto"):
            adapter = await self.hub.adapter(model)  # unknown ids fail (404) here, before any tokenising
            enc = await in_thread(encode_checked, adapter, text, text_pair, self.settings)
            backend, _ = self.hub.resolve_backend(adapter.info, None, len(enc))
        backend = self.hub.check_backend(model, backend)  # unknown ids fail (404) before anything is loaded
        request = run_request(model, await self.fingerprint(model), text, text_pair, backend, values)
        run_id = run_id_for(request)
        note(run_id=run_id)
        run, cached = await self._obtain(request, run_id)
        await self.store.put(run_id, request)
        return run, cached

    async def keep(self, run: Run, request: dict) -> None:
        """Cache a run computed outside ``create`` (a streamed run), pool a long one's overviews in the
        background, and store its request so every worker can serve it."""
        self.cache.put(run)
        if len(run.tokens) >= self.settings.prepool_min_tokens:
            self.prepool(run)
        await self.store.put(run.run_id, request)

    async def get(self, run_id: str) -> Run:
        """The run, from this worker's cache or recomputed from the request in the shared store.

        Raises NotFound (404) when the store does not know it (never created, or expired after run_ttl_s),
        or when this worker's copy of the model has other weights than the one that created it."""
        run = self.cache.get(run_id)
        if run is None:
            request = await self.store.get(run_id)
            if request is None:
                raise NotFound(f"run_id: run {run_id} is unknown or expired (runs are kept "
                               f"{self.settings.run_ttl_s / 3600:g} h after their last POST, run_ttl_s); POST "
                               "/api/runs again with the same model, text and backend: it gets the same run_id")
            await self._check_request(run_id, request)
            run, cached = await self._obtain(request, run_id)
            if not cached:
                self.restored += 1
                log.info("run %s recomputed from the %s run store", run_id, self.store.kind)
        note(model=run.model, run_id=run_id, tokens=len(run.tokens))
        return run

    def loss(self, run: Run, bucket: int) -> dict:
        """The run's next-token loss by position, averaged over buckets of ``bucket`` positions (the last
        bucket may be shorter): {"positions": first position of each bucket, "loss": nats, "mean": nats}.
        422 for a run of a model that does not predict the next token."""
        if run.token_loss is None:
            raise Invalid(f"run_id: run {run.run_id} is of model {run.model!r}, which does not predict the next "
                          "token; per-position loss needs a decoder")
        loss = run.token_loss
        if not len(loss):
            raise Invalid(f"run_id: run {run.run_id} has one token: nothing after it to predict; per-position loss "
                          "needs at least 2 tokens")
        starts = np.arange(0, len(loss), bucket)
        means = np.add.reduceat(loss, starts) / np.diff(np.append(starts, len(loss)))
        return {"positions": starts.tolist(), "loss": means.astype(np.float32).tolist(), "bucket": bucket,
                "mean": float(loss.mean()), "n_predictions": len(loss)}

    # -- pooled overviews of long runs ------------------------------------------------------------
    def prepool(self, run: Run) -> None:
        """Pool every head's whole map of a long run in the background, at the sizes the pages ask first
        (``pool_sizes``: the Explorer's thumbnails, then its head view, as memory allows), in that order. A
        request for one of them waits for it, or computes it at once if it has not started. A flash run
        gathered them as it ran: these then return at once."""
        info = self.hub.info(run.model) if self.hub is not None else None
        sizes = self.pool_sizes(info, len(run.tokens)) if info is not None else tuple(self.settings.prepool_sizes)
        for pool in sizes:
            for kind in run.kinds:
                rec0 = run.recorder.get(kind, 0)
                for layer in range(run.recorder.layers(kind)):
                    for head in range(rec0.n_heads):
                        key = (kind, layer, head, pool, "max")
                        if key not in run.overviews:
                            run.overviews[key] = self._prepool.submit(self._pool_whole, run, key)

    def close(self) -> None:
        """Drop the background pooling not yet started (at shutdown: never wait for it)."""
        self._prepool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _pool_whole(run: Run, key: tuple) -> tuple:
        kind, layer, head, pool, mode = key
        record = run.recorder.get(kind, layer)
        t_q, t_k = record.shape
        return pooled_overview(record, head, pool, mode, (0, t_q), (0, t_k))

    def overview(self, run: Run, key: tuple) -> tuple:
        """A whole-map overview: the background one if it is done or running, else computed here."""
        future = run.overviews.get(key)
        if future is not None and (future.done() or future.running()):
            return future.result()
        result = self._pool_whole(run, key)  # not started yet (or never queued): do not wait behind others
        done: Future = Future()
        done.set_result(result)
        run.overviews[key] = done
        if future is not None:
            future.cancel()
        return result
    async def _check_request(self, run_id: str, request: dict) -> None:
        """A stored request this worker can recompute exactly: same format, same model weights."""
        if request.get("v") != RUN_FORMAT_VERSION or run_id_for(request) != run_id:
            raise NotFound(f"run_id: run {run_id} was stored by another attnlab version (run format "
                           f"{request.get('v')}, this server's {RUN_FORMAT_VERSION}); POST /api/runs again")
        model = request["model"]
        self.hub.check_backend(model, request["backend"])
        if await self.fingerprint(model) != request["fingerprint"]:
            raise NotFound(f"run_id: run {run_id} was computed with other weights of {model!r} than this server "
                           "has loaded (replicas should serve the same checkpoints); POST /api/runs again")

    # -- reading --------------------------------------------------------------------------------
    def _tile(self, run: Run, kind: str, layer: int, head: int, rows: str | None, cols: str | None,
              pool: int | None, pool_mode: str, view=None) -> Tile:
        t_q, t_k = run.recorder.get(kind, layer).shape
        r = parse_range(rows, t_q, "rows")
        c = parse_range(cols, t_k, "cols")
        q_tokens, k_tokens = run.axis_tokens(kind)
        n_cells = (r[1] - r[0]) * (c[1] - c[0])
        if pool is None:
            if n_cells > self.settings.max_tile_cells:
                raise TooLarge(f"rows/cols: a {r[1] - r[0]}x{c[1] - c[0]} tile is over max_tile_cells "
                               f"{self.settings.max_tile_cells}; ask a smaller rows=a:b&cols=c:d or a pooled "
                               "overview with pool=N")
            data = run.recorder.tile(kind, layer, head, r, c) if view is None else view.block(slice(*r), slice(*c))
            return Tile(data.cpu().numpy(), r, c, 1, q_tokens[r[0]:r[1]], k_tokens[c[0]:c[1]])
        if pool > self.settings.max_pool:
            raise Invalid(f"pool: {pool} is over max_pool {self.settings.max_pool}")
        source = run.recorder.get(kind, layer) if view is None else view
        if view is None and r == (0, t_q) and c == (0, t_k):
            data, factor = self.overview(run, (kind, layer, head, pool, pool_mode))
        else:
            data, factor = pooled_overview(source, head, pool, pool_mode, r, c)
        labels = factor == 1
        return Tile(data.cpu().numpy(), r, c, factor, q_tokens[r[0]:r[1]] if labels else None,
                    k_tokens[c[0]:c[1]] if labels else None)

    async def tile(self, run: Run, kind: str | None, layer: int, head: int, rows: str | None, cols: str | None,
                   pool: int | None, pool_mode: str, view=None) -> tuple[str, Tile]:
        """One tile of a head's map; ``view``: another reading of that head with a record's ``log_block`` (the
        value-weighted one, attnlab.models.explain.ValueWeighted)."""
        kind = run.check(kind, layer, head)
        tile = await in_thread(self._tile, run, kind, layer, head, rows, cols, pool, pool_mode, view)
        return kind, tile

    async def heads(self, run: Run) -> dict[str, dict[str, list[list[float]]]]:
        if run.head_stats is None:
            # every head's every weight is visited once (in row bands): bound the work
            cells = sum(rec.n_heads * rec.shape[0] * rec.shape[1] for rec in run.recorder.records)
            limit = self.settings.head_stats_max_cells
            if cells > limit:
                raise TooLarge(f"run_id: head scores of this run visit {cells:,} attention weights, over "
                               f"head_stats_max_cells {limit:,}; use a shorter text, or read tiles and pooled "
                               "overviews from GET /api/runs/{run_id}/attention")
            run.head_stats = await in_thread(compute_head_stats, run)
        return run.head_stats

    def _rollout(self, run: Run, kind: str, add_residual: bool) -> dict[str, np.ndarray]:
        from attnlab.models import analysis

        n_layers = run.recorder.layers(kind)
        t_q, t_k = run.recorder.get(kind, 0).shape
        if n_layers * t_q * t_k > self.settings.dense_budget:
            raise TooLarge(f"text: rollout of {n_layers} layers x {t_q}x{t_k} tokens is over dense_budget "
                           f"{self.settings.dense_budget}; use a shorter text")
        with torch.no_grad():
            rollout = analysis.rollout(run.recorder, kind, add_residual=add_residual)
            flow = analysis.flow(run.recorder, kind)
        return {"rollout": rollout.float().cpu().numpy(), "flow": flow.float().cpu().numpy()}

    async def rollout(self, run: Run, kind: str | None, add_residual: bool) -> tuple[str, dict[str, np.ndarray]]:
        kind = run.check(kind)
        if kind == "cross":
            raise Invalid("kind: rollout composes self-attention layers; choose 'encoder' or 'decoder', not 'cross'")
        return kind, await in_thread(self._rollout, run, kind, add_residual)


def compute_head_stats(run: Run) -> dict[str, dict[str, list[list[float]]]]:
    """Head-type scores (models.analysis) for every kind of a run; cross-attention gets the scores that
    apply to two sequences (analysis.CROSS_SCORES)."""
    from attnlab.models import analysis

    out = {}
    with torch.no_grad():
        for kind in run.kinds:
            seq = run.axis(kind)[1]  # the keys: special flags are by id, typed control strings included
            out[kind] = analysis.head_scores(run.recorder, kind, seq.ids, seq.special)
    return out
