"""Pretrained Hugging Face models behind the same adapter, capture and backend toggle.

- ``bridge``: ``attnlab_attention``, registered with ``transformers.AttentionInterface`` as
  ``"attnlab"``: HF mask -> our lazy spec, then ``attnlab.models.dispatch.attend`` (backend + capture);
- ``adapter``: ``HFAdapter`` (a model and tokenizer behind ``ModelAdapter``) and ``load_hf``;
- ``attach``: ``attach(model, tokenizer)``, a user's in-memory model behind the same adapter, refused
  by name when its attention cannot be captured faithfully;
- ``config``: every reading of an HF config (``info_from_config``, ``hf_shape``, the exact
  ``gpt2_config`` / ``bert_config`` / ``llama_config`` for importing);
- ``sources``: catalogue entries for bundled MiniLM and SmolLM2, hub ids, local directories;
- ``gguf``: the one-time GGUF -> float16 safetensors conversion;
- ``importers``: HF GPT-2 / BERT / Llama weights into our own from-scratch models.

``transformers`` is imported inside functions only: listing models must stay fast and never
load weights.
"""

from .adapter import HFAdapter, load_hf
from .attach import AttachedModel, UnsupportedModel, attach, unsupported_reason
from .bridge import ATTN_IMPLEMENTATION, attnlab_attention, register_attention, spec_from_hf
from .config import info_from_config
from .gguf import convert_gguf, converted_dir
from .importers import from_hf, from_hf_bert, from_hf_gpt2, from_hf_llama
from .sources import (
    DEFAULT_HUB_IDS,
    SMOLLM2_CONFIG,
    UnsafeModelPath,
    minilm_dir,
    minilm_entry,
    pretrained_entries,
    resolve_model_dir,
    smollm2_entry,
    smollm2_gguf,
)

__all__ = [
    "ATTN_IMPLEMENTATION", "AttachedModel", "UnsupportedModel", "attach", "unsupported_reason",
    "DEFAULT_HUB_IDS", "SMOLLM2_CONFIG", "HFAdapter", "UnsafeModelPath", "attnlab_attention",
    "convert_gguf", "converted_dir", "from_hf", "from_hf_bert", "from_hf_gpt2", "from_hf_llama", "info_from_config",
    "load_hf", "minilm_dir", "minilm_entry", "pretrained_entries", "register_attention", "resolve_model_dir",
    "smollm2_entry", "smollm2_gguf", "spec_from_hf",
]
