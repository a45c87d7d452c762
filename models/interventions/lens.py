"""The logit lens (nostalgebraist 2020, "interpreting GPT: the logit lens") and the residual stream.

The residual stream after every block, decoded through the model's own final norm and unembedding,
says what the model would predict if it stopped there. The last block's lens is the model's output
(tested equal to its logits). For every model, also the norms of what each block's attention and
feed-forward add to the stream (the residual connection's terms).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..adapter import Encoded, ModelAdapter
from .anatomy import anatomy

LENS_CHUNK_LOGITS = 2**25  # logits decoded in one unembedding call (128 MiB in float32)


@dataclass
class LensResult:
    layers: list[int]  # the decoded layers (0-based: the stream after block l)
    top_ids: list[list[list[int]]] | None  # [layer][position][k]; None without a head
    top_probs: list[list[list[float]]] | None
    final_prob: list[list[float]] | None  # [layer][position]: prob of the model's final top-1 token
    final_ids: list[int] | None  # (T,) the model's final top-1 token per position
    residual_norm: list[list[float]]  # [L + 1][T]: the stream entering block 0, then after each block
    attention_norm: list[list[float]]  # [L][T]
    ffn_norm: list[list[float]] | None  # [L][T]; None for an attention-only model
    logits: torch.Tensor | None = None  # (T, V) the model's own output (tests compare the last lens with it)
    lens_logits: torch.Tensor | None = None  # (T, V) the last decoded layer's logits


@torch.no_grad()
def logit_lens(adapter: ModelAdapter, enc: Encoded, k: int = 5, layers: list[int] | None = None,
               backend: str = "math") -> LensResult:
    """Decode the residual stream after each of ``layers`` (default all) into its top ``k`` tokens.

    Raises ValueError for a layer the model lacks, ``Unsupported`` for an encoder-decoder.
    """
    anat = anatomy(adapter)
    L = anat.n_layers
    layers = list(range(L)) if layers is None else layers
    bad = [x for x in layers if not 0 <= x < L]
    if bad:
        raise ValueError(f"layers: {bad} outside 0..{L - 1} (the model has {L} layers)")
    with anat.record_streams() as streams:
        out = anat.run(enc.ids, enc.token_type_ids, backend)

    def norms(ts: list[torch.Tensor]) -> list[list[float]]:
        return [t[0].float().norm(dim=-1).tolist() for t in ts]

    result = LensResult(layers, None, None, None, None, norms(streams.residual), norms(streams.attention),
                        norms(streams.ffn) if streams.ffn else None)
    if not anat.has_head:
        return result
    final = out.logits[0]
    final_ids = final.argmax(-1)
    k = min(k, final.shape[-1])
    top_ids, top_probs, final_prob = [], [], []
    lens_logits = None
    T, V = final.shape
    # several layers through one unembedding call: one tall (n*T, d) x (d, V) product runs ~1.2-1.5x faster on CPU
    # than n short ones (SmolLM2, 64 tokens); chunks stay under LENS_CHUNK_LOGITS logits
    per_chunk = max(1, LENS_CHUNK_LOGITS // (T * V))
    for start in range(0, len(layers), per_chunk):
        chunk = layers[start:start + per_chunk]
        stream = torch.cat([streams.residual[layer + 1][0] for layer in chunk])  # (n*T, d)
        logits = anat.unembed(stream).float().view(len(chunk), T, V)
        # top-k of the logits and one log-sum-exp: the probabilities are never built
        lse = logits.logsumexp(-1, keepdim=True)  # (n, T, 1)
        top = logits.topk(k, dim=-1)
        top_ids += top.indices.tolist()
        top_probs += (top.values - lse).exp().tolist()
        chosen = logits.gather(-1, final_ids[None, :, None].expand(len(chunk), T, 1))  # (n, T, 1)
        final_prob += (chosen - lse)[..., 0].exp().tolist()
        lens_logits = logits[-1]
    result.top_ids, result.top_probs, result.final_prob = top_ids, top_probs, final_prob
    result.final_ids = final_ids.tolist()
    result.logits, result.lens_logits = final, lens_logits
    return result


def naive_logit_lens(adapter: ModelAdapter, enc: Encoded, k: int = 5, backend: str = "math") -> list[list[int]]:
    """The lens the slow way, for the benchmark: one truncated forward per layer isn't possible for every
    model, so this re-runs the whole model per layer and decodes that layer's stream (L forwards)."""
    anat = anatomy(adapter)
    tops = []
    with torch.no_grad():
        for layer in range(anat.n_layers):
            with anat.record_streams() as streams:
                anat.run(enc.ids, enc.token_type_ids, backend)
            probs = anat.unembed(streams.residual[layer + 1][0]).float().softmax(-1)
            tops.append(probs.topk(k, dim=-1).indices.tolist())
    return tops
