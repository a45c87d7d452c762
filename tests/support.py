"""Helpers shared by the test layers (not a test module, and no fixtures: those live in conftest.py).

Tiny real models and their registry, test settings, and readers for API responses; used by
tests/api (whose conftest builds the ``client`` fixture from them) and tests/hf.
The models are random-initialised but real: the same code paths as trained ones.
"""

from __future__ import annotations

import io
import json

import numpy as np
import torch

from attnlab.api.transport import decode_meta
from attnlab.core.settings import Settings
from attnlab.models import ModelInfo, Registry, ScratchAdapter, TransformerConfig, build_model
from attnlab.models.catalogue import Entry
from attnlab.models.tokenization import CharTokenizer

CORPUS = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-<>/()="


def tiny_adapter(model_id: str, **cfg: object) -> ScratchAdapter:
    torch.manual_seed(0)
    tokenizer = CharTokenizer.from_corpus(CORPUS)
    config = TransformerConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, **cfg)
    return ScratchAdapter(model_id, build_model(config), tokenizer, description=f"test model {model_id}")


def adapter_entry(adapter: ScratchAdapter) -> Entry:
    return Entry(adapter.info.id, lambda: adapter.info, lambda: adapter)


def unavailable_entry() -> Entry:
    info = ModelInfo(id="ghost", family="decoder", source="pretrained", n_layers=1, n_heads=1, d_model=8,
                     max_positions=8, positional="learned", available=False,
                     reason="weights not found: install the ghost package")

    def load():  # never called: the hub refuses unavailable models first
        raise AssertionError("unavailable model loaded")

    return Entry("ghost", lambda: info, load)


def tiny_registry() -> Registry:
    adapters = [
        tiny_adapter("tiny-gpt", family="decoder", positional="rope", max_positions=2048),
        tiny_adapter("tiny-bert", family="encoder", positional="learned", max_positions=64, type_vocab_size=0),
        tiny_adapter("tiny-t5", family="encoder-decoder", positional="t5_relative", max_positions=128),
    ]
    return Registry([adapter_entry(a) for a in adapters] + [unavailable_entry()])


def make_settings(**overrides: object) -> Settings:
    base = dict(dense_budget=200_000, run_cache_bytes=8 * 2**20, max_new_tokens=64,
                generate_timeout_s=20.0, benchmark_budget_s=3.0, benchmark_max_cells=4 * 2**20,
                head_stats_max_tokens=256, per_model_concurrency=2, queue_limit=4, preload=False)
    base.update(overrides)
    return Settings(_env_file=None, **base)


def load_npy(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content), allow_pickle=False)


def meta_of(response) -> dict:
    return decode_meta(response.headers["X-Attnlab-Meta"])


def parse_sse(text: str) -> list[tuple[str, dict]]:
    """(event, data) pairs of a text/event-stream body (comments and pings skipped)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events
