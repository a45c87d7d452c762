"""The one attention call every model makes: backend choice, the kernel, the capture.

Both the from-scratch layers (``attnlab.models.layers.MultiHeadAttention``) and the Hugging Face bridge
(``attnlab.models.hf.bridge.attnlab_attention``) project and rotate Q/K/V themselves, then call
:func:`attend`. It picks the backend (a ``use_backend`` block wins over the module's own),
runs it on un-repeated grouped-query K/V (the backends' contract), records
(Q, K, spec, LSE) into the current capture, if any, and applies the current head gates, if any
(``attnlab.models.gates``: ablation, patching, importance), to each head's output before W_O.
"""

from __future__ import annotations

from torch import Tensor

from .attention import AttentionSpec, active_backend, get_backend
from .capture import current_recorder
from .gates import intervene


def attend(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, kind: str, layer: int | None,
           default_backend: str) -> Tensor:
    """Attention of q (B, H, Tq, D) over k, v (B, Hkv, Tk, D), Hkv dividing H; returns (B, H, Tq, D).

    ``kind`` ("encoder", "decoder", "cross") and ``layer`` name the record in the capture; a
    ``layer`` of None numbers the calls of that kind in order within the capture (modules that
    do not know their index). ``default_backend`` runs unless a ``use_backend`` block is active.
    Head gates (``attnlab.models.gates.gate_heads``) act on the output.
    Raises ``UnknownName`` for an unknown backend, ValueError for shapes outside the contract.
    """
    backend = get_backend(active_backend(default_backend))
    recorder = current_recorder()
    kept_q = kept_k = None
    if recorder is not None:
        # Q and K as the capture keeps them (float16 or int16 for long runs), and attention on exactly those
        # values: the backend's LSE is then the LSE of what is kept, so rebuilt tiles are the weights used
        # and their rows sum to 1
        (kept_q, q), (kept_k, k) = recorder.keep(q), recorder.keep(k)
    keep = recorder is not None and recorder.keep_weights and backend.returns_weights
    pools = recorder.pool_sizes if recorder is not None else ()
    result = backend(q, k, v, spec, need_weights=keep, pool_sizes=pools)
    if recorder is not None:
        if layer is None:
            layer = sum(1 for r in recorder.records if r.kind == kind)
        recorder.add(kind, layer, kept_q, kept_k, spec, result.lse, result.weights, v if recorder.keep_values else None,
                     result.pooled)
    return intervene(result.out, kind, layer, spec.causal)
