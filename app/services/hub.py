"""ModelHub: the registry behind per-model concurrency limits, loading off the event loop.

A request for a model takes one of ``per_model_concurrency`` slots; up to
``queue_limit`` more may wait, the next one is refused at once with 429 and
Retry-After, and one that waits past ``queue_timeout_s`` gets 503. A model's
attention backend is shared module state, so requests asking for different backends
of one model never run at the same time (same-backend requests do).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

import anyio.to_thread
import torch

from attnlab.models import ModelAdapter, ModelInfo, Registry, UnavailableModel, UnknownModel
from attnlab.models.device import CPU, Placement

from ..core.logctx import note
from ..core.settings import Settings
from .errors import Busy, NotFound, Overloaded, TooLarge, Unavailable

log = logging.getLogger(__name__)
# positional schemes that are an additive attention bias: sdpa gets them as a dense (B, H, T, T) float mask
BIAS_POSITIONS = ("alibi", "t5_relative")

T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` in a worker thread without autograd (the event loop stays free)."""

    def call() -> T:
        with torch.no_grad():
            return fn(*args)

    return await anyio.to_thread.run_sync(call)


class ModelGate:
    """Slots for one model, shared only by requests on the same backend."""

    def __init__(self, model_id: str, capacity: int, queue_limit: int, timeout_s: float, retry_after_s: int):
        self.model_id, self.capacity, self.queue_limit = model_id, capacity, queue_limit
        self.timeout_s, self.retry_after_s = timeout_s, retry_after_s
        self.running = 0
        self.waiting = 0
        self.backend: str | None = None
        self._cond = asyncio.Condition()

    def _free_for(self, backend: str) -> bool:
        return self.running < self.capacity and (self.running == 0 or self.backend == backend)

    @asynccontextmanager
    async def slot(self, backend: str) -> AsyncIterator[None]:
        async with self._cond:
            if not self._free_for(backend):
                if self.waiting >= self.queue_limit:
                    raise Busy(f"model: {self.model_id!r} has {self.running} requests running and {self.waiting} "
                               f"waiting (queue_limit {self.queue_limit}); retry in {self.retry_after_s} s",
                               self.retry_after_s)
                self.waiting += 1
                try:
                    await asyncio.wait_for(self._cond.wait_for(lambda: self._free_for(backend)), self.timeout_s)
                except asyncio.TimeoutError:
                    raise Overloaded(f"model: {self.model_id!r} stayed busy for {self.timeout_s:g} s "
                                     f"(queue_timeout_s); retry in {self.retry_after_s} s",
                                     self.retry_after_s) from None
                finally:
                    self.waiting -= 1
            self.running += 1
            self.backend = backend
        try:
            yield
        finally:
            async with self._cond:
                self.running -= 1
                self._cond.notify_all()


class ModelHub:
    """The one place routes and services get models from."""

    def __init__(self, registry: Registry, settings: Settings):
        self.registry = registry
        self._dense_lock = threading.Lock()
        self._dense_in_flight = 0  # bytes of T x T maps held by forwards under way (dense_reservation)
        self.settings = settings
        self._gates: dict[str, ModelGate] = {}
        # reading an entry's info may touch disk (config.json): once per model per process
        self._infos: dict[str, ModelInfo] = {}
        self._adapters: dict[str, ModelAdapter] = {}
        # loads under way: a request arriving while the start-up preparation loads a model waits for that load
        self._loading: dict[str, asyncio.Future] = {}

    # -- metadata (never loads weights) -------------------------------------------------
    def list(self) -> list[ModelInfo]:
        return self.registry.list()

    def info(self, model_id: str) -> ModelInfo:
        if model_id not in self._infos:
            try:
                self._infos[model_id] = self.registry.info(model_id)
            except UnknownModel as err:
                raise NotFound(f"model: {err}") from None
        return self._infos[model_id]

    def loaded(self) -> list[str]:
        return self.registry.loaded()

    def gates(self) -> dict[str, ModelGate]:
        return self._gates

    def default_backend(self, model_id: str) -> str:
        backends = self.info(model_id).backends
        return "math" if "math" in backends else backends[0]

    def check_backend(self, model_id: str, backend: str | None) -> str:
        info = self.info(model_id)
        backend = backend or self.default_backend(model_id)
        if backend not in info.backends:
            from .errors import Invalid

            raise Invalid(f"backend: model {model_id!r} supports {info.backends}, not {backend!r}")
        return backend

    def resolve_backend(self, info: ModelInfo, backend: str | None, n_tokens: int) -> tuple[str, str]:
        """(backend, why): a named backend is checked (422 if the model lacks it); ``auto`` or None picks
        ``flash`` from ``auto_flash_min_tokens`` tokens on, where the model has it (exact, O(T) memory, within
        10% of the bare forward on SmolLM2 at 8,192 tokens: bench/long_context.py), else the model's default
        (``math``: the weights come with the forward). Runs, streamed runs and generation all choose so."""
        if backend not in (None, "auto"):
            return self.check_backend(info.id, backend), "chosen"
        threshold = self.settings.auto_flash_min_tokens
        if n_tokens >= threshold and "flash" in info.backends:
            return "flash", (f"auto: {n_tokens} tokens >= auto_flash_min_tokens {threshold}, so the exact tiled "
                             "flash backend (fastest here, O(T) memory)")
        default = self.default_backend(info.id)
        return default, f"auto: {n_tokens} tokens < auto_flash_min_tokens {threshold}, so {default}"

    def dense_bytes(self, info: ModelInfo, backend: str, n_tokens: int) -> tuple[int, str]:
        """(bytes, what): the T x T float32 maps a forward on ``backend`` holds at once in one layer, measured as
        3 per head (scores, their scaled or biased copy, the weights: an 8,100-token math run of 4 heads peaked
        at 3.35 GB RSS for 1.05 GB of weights), and how to say it; (0, "") for an O(T) backend. ``math`` and
        ``sdpa_math`` build the weights; ``sdpa`` on a model whose positions are an attention bias (ALiBi, T5
        buckets) a dense bias mask."""
        if backend in ("math", "sdpa_math"):
            what = f"{backend} holds 3 T x T float32 maps of every head at once (scores, their biased copy, weights)"
        elif backend.startswith("sdpa") and info.positional in BIAS_POSITIONS:
            what = f"{backend} builds 3 dense T x T float32 maps of every head for {info.positional} positions"
        else:
            return 0, ""
        return 3 * info.n_heads * n_tokens * n_tokens * 4, what

    def check_attention_memory(self, info: ModelInfo, backend: str, n_tokens: int, shorter: str = "a shorter text"
                               ) -> None:
        """413 before a forward whose ``dense_bytes`` pass ``math_max_bytes``: it would take the server's memory
        with it (32,768 tokens of 4 heads: 48 GiB); flash is O(T). ``shorter``: what the caller can cut."""
        need, what = self.dense_bytes(info, backend, n_tokens)
        limit = self.settings.math_max_bytes
        if need > limit:
            raise TooLarge(f"backend: {what}: 3 x {info.n_heads} heads x {n_tokens}^2 x 4 bytes = "
                           f"{need / 2**30:.2f} GiB, over math_max_bytes {limit / 2**30:.2f} GiB; use backend flash "
                           f"(O(T) memory) or {shorter}")

    @contextmanager
    def dense_reservation(self, info: ModelInfo, backend: str, n_tokens: int) -> Iterator[None]:
        """Hold ``dense_bytes`` of the server's ``math_max_bytes`` while a forward runs: forwards that build T x T
        maps run together only while their maps fit it together (each alone is checked by
        ``check_attention_memory``), so several students' long math runs cannot add up past it. A forward that
        does not fit now gets 429 with Retry-After, naming the backend."""
        need, _ = self.dense_bytes(info, backend, n_tokens)
        with self._dense_lock:
            if need and self._dense_in_flight and self._dense_in_flight + need > self.settings.math_max_bytes:
                raise Busy(f"backend: {backend} runs of {self._dense_in_flight / 2**30:.2f} GiB of T x T maps are "
                           f"under way and this one needs {need / 2**30:.2f} GiB more, over math_max_bytes "
                           f"{self.settings.math_max_bytes / 2**30:.2f} GiB; retry in {self.settings.retry_after_s} "
                           "s, or use backend flash (O(T) memory)", self.settings.retry_after_s)
            self._dense_in_flight += need
        try:
            yield
        finally:
            with self._dense_lock:
                self._dense_in_flight -= need

    # -- loading and running ----------------------------------------------------------------
    def _load_sync(self, model_id: str) -> ModelAdapter:
        try:
            return self.registry.load(model_id)
        except UnknownModel as err:
            raise NotFound(f"model: {err}") from None
        except UnavailableModel:
            raise Unavailable(self._unavailable(model_id)) from None
        except (OSError, ValueError, RuntimeError, ImportError) as err:
            log.exception("model %s failed to load", model_id)
            raise Unavailable(f"model: {model_id!r} failed to load: {err} (see the server log)") from None

    def _unavailable(self, model_id: str) -> str:
        """Why a registered model cannot load; its reason says how to make it available."""
        return f"model: {model_id!r} is not available: {self.info(model_id).reason}"

    async def adapter(self, model_id: str) -> ModelAdapter:
        """Load lazily (once, in a worker thread) and return the adapter."""
        if model_id in self._adapters:  # loaded: no thread hop
            return self._adapters[model_id]
        info = self.info(model_id)
        if not info.available:
            raise Unavailable(self._unavailable(model_id))
        if model_id not in self._loading:
            self._loading[model_id] = asyncio.ensure_future(in_thread(self._load_sync, model_id))
            self._loading[model_id].add_done_callback(lambda _: self._loading.pop(model_id, None))
        adapter = await asyncio.shield(self._loading[model_id])
        self._adapters[model_id] = adapter
        return adapter

    @property
    def placement(self) -> Placement:
        """Where the registry puts the models (CPU float32 when it was built without a placement)."""
        return self.registry.placement or CPU

    def gate(self, model_id: str) -> ModelGate:
        if model_id not in self._gates:
            s = self.settings
            # on a GPU, as many slots as gpu_request_bytes fit in the free memory (at most per_model_concurrency)
            capacity = s.concurrency(self.placement)
            self._gates[model_id] = ModelGate(model_id, capacity, s.queue_limit, s.queue_timeout_s, s.retry_after_s)
        return self._gates[model_id]

    async def describe(self, model_id: str) -> dict:
        """The adapter's describe() (config for the architecture page); loads the model."""
        adapter = await self.adapter(model_id)
        described = adapter.describe()
        config = described.get("config")
        if isinstance(config, dict):  # where the weights were read from is the server's business, never a client's
            described["config"] = {k: v for k, v in config.items() if "name_or_path" not in k}
        return {**described, "loaded": True}

    @asynccontextmanager
    async def use(self, model_id: str, backend: str) -> AsyncIterator[ModelAdapter]:
        """Hold a slot of this model on this backend for the whole block."""
        self.info(model_id)  # unknown ids fail before queueing, and before the log notes them (they are user text)
        note(model=model_id, backend=backend)
        async with self.gate(model_id).slot(backend):
            yield await self.adapter(model_id)

    async def call(self, model_id: str, backend: str, fn: Callable[[ModelAdapter], T]) -> T:
        """Run ``fn(adapter)`` in a worker thread inside a slot (inference never blocks the loop)."""
        async with self.use(model_id, backend) as adapter:
            return await in_thread(fn, adapter)
