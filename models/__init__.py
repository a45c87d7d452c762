"""attnlab's from-scratch Transformer library: pure PyTorch, usable alone from a notebook.

    from attnlab.models import preset, build_model, capture
    model = build_model(preset("tiny"))
    with capture(model) as rec:
        model(ids)
    rec.tile("decoder", layer=0, head=1, rows=(0, 8), cols=(0, 8))
"""

from .architectures import (
    MODEL_CLASSES,
    Decoder,
    Encoder,
    EncoderDecoder,
    ModelOutput,
    TransformerModel,
    build_model,
    filter_logits,
    load_model,
    sample_next,
)
from .attention import BACKENDS, AttentionSpec, get_backend, make_pattern
from .capture import AttentionRecord, Recorder, capture
from .config import PRESETS, TransformerConfig, preset
from .layers import KVCache
from .positional import POSITIONAL, make_positional

__all__ = [
    "BACKENDS", "MODEL_CLASSES", "POSITIONAL", "PRESETS", "AttentionRecord", "AttentionSpec", "Decoder",
    "Encoder", "EncoderDecoder", "KVCache", "ModelOutput", "Recorder", "TransformerConfig", "TransformerModel",
    "build_model", "capture", "filter_logits", "get_backend", "load_model", "make_pattern", "make_positional",
    "preset", "sample_next",
]

from .adapter import (  # noqa: E402
    Candidate,
    Encoded,
    ForwardResult,
    GenerationStep,
    ModelAdapter,
    ModelInfo,
    ScratchAdapter,
    TokenSeq,
    axis_seqs,
)
from .catalogue import Entry, UnavailableModel, UnknownModel  # noqa: E402
from .labels import TextStream, show_text, token_labels  # noqa: E402
from .names import UnknownName  # noqa: E402
from .registry import Registry, default_registry, load  # noqa: E402

__all__ += [
    "Candidate", "Encoded", "Entry", "ForwardResult", "GenerationStep", "ModelAdapter", "ModelInfo", "Registry",
    "ScratchAdapter", "TextStream", "TokenSeq", "UnavailableModel", "UnknownModel", "UnknownName", "axis_seqs",
    "default_registry", "load", "show_text", "token_labels",
]
