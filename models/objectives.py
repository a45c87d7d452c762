"""The two pre-training objectives, seen on one text: masked LM (fill-mask) and causal LM.

- ``fill_mask``: a masked LM's (BERT, Devlin et al. 2019, arXiv 1810.04805) top guesses at each mask
  token of a text, special tokens excluded.
- ``clm_side`` / ``mlm_side``: what each objective predicts at every position of the same text and
  from which context. The causal LM (GPT, Radford et al. 2018) predicts token ``t`` from tokens
  ``< t`` (the logits at ``t - 1``; its attention at query ``t - 1`` sees keys ``0..t-1``); the masked
  LM predicts token ``t`` with ``t`` replaced by the mask token, from every other token (its
  attention at query ``t`` sees all keys). Both give, per position, the probability of the
  actual token and the top guess; at one chosen position, the top-k and the attention row.

Everything works on ``ModelAdapter``s: any encoder whose forward gives logits and whose tokenizer
has a mask token (the zoo's ``mlm``), any decoder (the zoo's ``lm``).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import torch
from torch import Tensor

from .adapter import Encoded, ModelAdapter
from .tokenization import BPETokenizer

MASK_ALIASES = ("[MASK]", "<mask>")  # typed by a person; each becomes the model's own mask token


def mask_token(adapter: ModelAdapter) -> tuple[str, int] | None:
    """(text, id) of the model's mask token, or None when its tokenizer has none."""
    tok = getattr(adapter, "tokenizer", None)
    specials = getattr(tok, "special_ids", None)
    if isinstance(specials, dict) and "<mask>" in specials:  # our tokenizers
        return "<mask>", specials["<mask>"]
    text, token_id = getattr(tok, "mask_token", None), getattr(tok, "mask_token_id", None)  # transformers'
    return (str(text), int(token_id)) if text is not None and token_id is not None else None


def normalize_masks(adapter: ModelAdapter, text: str) -> str:
    """``text`` with every typed mask alias replaced by the model's mask token.

    A byte-level BPE keeps a word's leading space in its token (``"Ġwife"``) and masked LM training
    masks such whole tokens, so there the space before a mask belongs to the slot and is dropped.
    Raises ``ValueError`` when the model has no mask token.
    """
    found = mask_token(adapter)
    if found is None:
        raise ValueError(f"model {adapter.info.id!r} has no mask token: fill-mask needs a masked LM")
    mask = found[0]
    pattern = "|".join(re.escape(a) for a in MASK_ALIASES)
    if isinstance(getattr(adapter, "tokenizer", None), BPETokenizer):
        return re.sub(r" ?(?:" + pattern + ")", mask, text)
    return re.sub(pattern, mask, text)


def _logits(adapter: ModelAdapter, ids: Tensor) -> Tensor:
    """(B, T, V) float32 logits of a batch of ids; ``ValueError`` for a model without an LM head."""
    with torch.no_grad():
        logits = getattr(adapter.model(**adapter.dummy_inputs(ids)), "logits", None)
    if logits is None:
        raise ValueError(f"model {adapter.info.id!r} has no language-model head (its forward gives no logits)")
    return logits.float()


def _top(adapter: ModelAdapter, probs: Tensor, k: int) -> list[dict]:
    top = torch.topk(probs, min(k, probs.shape[-1]))
    ids = [int(i) for i in top.indices]
    labels = adapter.labels(ids)
    return [{"token": label, "token_id": i, "prob": float(p)} for label, i, p in zip(labels, ids, top.values)]


def _without_specials(adapter: ModelAdapter, logits: Tensor) -> Tensor:
    out = logits.clone()
    specials = sorted(i for i in adapter.special_ids if i < out.shape[-1])
    out[..., specials] = float("-inf")
    return out


def fill_mask(adapter: ModelAdapter, enc: Encoded, k: int = 5) -> list[dict]:
    """Per mask token of ``enc`` (tokenised from ``normalize_masks``'s text): ``{position, top}``, the
    top-k ``{token, token_id, prob}`` (probabilities of the full softmax over non-special tokens).

    Raises ``ValueError`` when the input has no mask token or the model gives no logits.
    """
    found = mask_token(adapter)
    if found is None:
        raise ValueError(f"model {adapter.info.id!r} has no mask token: fill-mask needs a masked LM")
    ids = enc.ids[0].tolist()
    positions = [i for i, t in enumerate(ids) if t == found[1]]
    if not positions:
        raise ValueError(f"has no mask token: type [MASK] (or {found[0]}) where a word should be guessed")
    logits = _without_specials(adapter, _logits(adapter, enc.ids))[0]
    return [{"position": p, "top": _top(adapter, logits[p].softmax(-1), k)} for p in positions]


def attention_row(adapter: ModelAdapter, enc: Encoded, query: int, backend: str = "math") -> list[list[float]]:
    """Query ``query``'s attention over all keys, averaged over heads, per layer: ``[layer][key]`` (each row
    sums to 1; keys a causal model cannot see are 0). From the capture of one forward."""
    result = adapter.forward_encoded(enc, backend)
    kind = adapter.kinds[0]
    rec = result.recorder
    return [rec.dense(kind, layer)[:, query, :].mean(0).tolist() for layer in range(rec.layers(kind))]


def clm_side(adapter: ModelAdapter, enc: Encoded, position: int, k: int = 5) -> dict:
    """The causal LM on ``enc``: per position t >= 1, the probability of token t given tokens < t and the top
    guess; at ``position``, the top-k and the attention of query ``position - 1`` (which predicts it).

    ``per_token[t]`` is None at t = 0 (nothing to predict it from). ``loss`` is the mean cross-entropy
    over t >= 1, in nats. Raises ``ValueError`` for ``position`` outside 1..T-1.
    """
    T = enc.ids.shape[1]
    if not 1 <= position < T:
        raise ValueError(f"the causal model predicts token {position} from the tokens before it; choose 1..{T - 1}")
    logp = _logits(adapter, enc.ids)[0].log_softmax(-1)  # (T, V): row t predicts token t + 1
    ids = enc.ids[0]
    per_token: list[dict | None] = [None]
    for t in range(1, T):
        row = logp[t - 1]
        per_token.append({"prob": math.exp(float(row[ids[t]])), "top": adapter.labels([int(row.argmax())])[0]})
    loss = -float(logp[torch.arange(T - 1), ids[1:]].mean()) if T > 1 else None
    query = position - 1
    return {"predicts_from": list(range(position)), "query": query,
            "top": _top(adapter, logp[query].exp(), k), "prob": per_token[position]["prob"],
            "attention": attention_row(adapter, enc, query), "per_token": per_token, "loss": loss}


def mlm_side(adapter: ModelAdapter, enc: Encoded, position: int, k: int = 5) -> dict:
    """The masked LM on ``enc``: per position t, the probability of token t when t alone is masked, and the top
    guess (one batch of T copies, each with one mask); at ``position``, the top-k and the attention of the
    masked query over every key. ``loss`` is the mean of -log p over the positions (the pseudo-log-likelihood
    of Salazar et al. 2020, arXiv 1910.14659, per token). Raises ``ValueError`` without a mask token."""
    found = mask_token(adapter)
    if found is None:
        raise ValueError(f"model {adapter.info.id!r} has no mask token: it is not a masked LM")
    ids = enc.ids[0]
    T = ids.shape[0]
    if not 0 <= position < T:
        raise ValueError(f"position {position} is outside the text's {T} tokens")
    masked = ids.repeat(T, 1)
    masked[torch.arange(T), torch.arange(T)] = found[1]  # row t: token t masked
    logits = _without_specials(adapter, _logits(adapter, masked))
    logp = logits[torch.arange(T), torch.arange(T)].log_softmax(-1)  # (T, V): position t's guess with t masked
    # a control token (never a guess: specials are excluded) gets no entry
    per_token = [None if enc.special[t] else
                 {"prob": math.exp(float(logp[t, ids[t]])), "top": adapter.labels([int(logp[t].argmax())])[0]}
                 for t in range(T)]
    if per_token[position] is None:
        raise ValueError(f"token {position} is a control token, which the masked model never guesses")
    finite = [-math.log(p["prob"]) for p in per_token if p is not None and p["prob"] > 0]
    one = replace(enc, ids=masked[position : position + 1].clone())
    return {"predicts_from": [t for t in range(T) if t != position], "query": position,
            "top": _top(adapter, logp[position].exp(), k), "prob": per_token[position]["prob"],
            "attention": attention_row(adapter, one, position), "per_token": per_token,
            "loss": sum(finite) / len(finite) if finite else None}
