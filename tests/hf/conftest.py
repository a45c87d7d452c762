"""The Hugging Face layer: the bundled MiniLM and SmolLM2, and our imports compared with transformers.

Modules that need transformers skip themselves (``pytest.importorskip``); the bundled models skip
when their package is not installed.
"""

from __future__ import annotations

import pytest

from tests.hf.tiny_hf import save_tiny


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """{"gpt2" | "bert" | "llama": directory with a saved tiny model}, one set per test module."""
    root = tmp_path_factory.mktemp("tiny_hf")
    return {kind: save_tiny(kind, root / kind) for kind in ("gpt2", "bert", "llama")}
