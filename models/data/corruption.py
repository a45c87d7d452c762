"""Corrupting token ids for the training objectives: BERT masking and T5 span corruption.

- `mask_tokens`: 15% of the non-special tokens chosen, 80/10/10 [MASK] / random / kept;
  labels hold the original id there and `IGNORE_INDEX` elsewhere;
- `span_corrupt` / `fill_spans`: T5 spans replaced by sentinels, and put back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

IGNORE_INDEX = -100  # what torch.nn.functional.cross_entropy skips by default

# --------------------------------------------------------------------------- MLM


def mask_tokens(
    ids: Tensor,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int],
    prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's masked-LM corruption (Devlin et al. 2018, section 3.1).

    Each non-special token is selected with probability `prob`; of the selected, 80%
    become `mask_id`, 10% a random token, 10% stay as they are. `labels` hold the
    original id where selected and -100 elsewhere. Random replacements are drawn from
    the non-special ids only, so `<pad>` or `<bos>` never appear mid-text. The
    generator, if given, must live on `ids.device`.
    """
    specials = torch.as_tensor(sorted(set(special_ids)), dtype=torch.long, device=ids.device)
    selectable = ~torch.isin(ids, specials)
    draw = torch.rand(ids.shape, generator=generator, device=ids.device)
    selected = (draw < prob) & selectable
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))

    # A second uniform draw splits the selected tokens 80 / 10 / 10.
    action = torch.rand(ids.shape, generator=generator, device=ids.device)
    to_mask = selected & (action < 0.8)
    to_random = selected & (action >= 0.8) & (action < 0.9)

    vocab = torch.arange(vocab_size, device=ids.device)
    ordinary = vocab[~torch.isin(vocab, specials)]
    if len(ordinary) == 0:
        raise ValueError("every id is special; nothing to draw random tokens from")
    pick = torch.randint(len(ordinary), ids.shape, generator=generator, device=ids.device)

    inputs = ids.clone()
    inputs[to_mask] = mask_id
    inputs[to_random] = ordinary[pick][to_random]
    return inputs, labels


# --------------------------------------------------------------------------- T5 spans


def _random_partition(total: int, parts: int, generator: torch.Generator | None) -> list[int]:
    """`total` split into `parts` positive lengths, uniformly over such splits."""
    cuts = (torch.randperm(total - 1, generator=generator)[: parts - 1] + 1).sort().values.tolist()
    bounds = [0, *cuts, total]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def span_corrupt(
    ids: Tensor,
    sentinel_ids: Sequence[int],
    noise_density: float = 0.15,
    mean_span: float = 3.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """T5's span corruption of one 1-D sequence (Raffel et al. 2020, section 3.1.4).

    About `noise_density` of the tokens, in spans of mean length `mean_span`, are
    cut out. `inputs` keep the rest with sentinel i where span i was; `targets` are
    sentinel i followed by span i, for each span in order. As in T5's
    `random_spans_noise_mask`, the sequence starts with kept tokens and ends with a
    noise span. No EOS is appended: that is the caller's choice.
    """
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() != 1:
        raise ValueError(f"span_corrupt takes one 1-D sequence, got shape {tuple(ids.shape)}")
    length = len(ids)
    if length < 2:
        raise ValueError("span_corrupt needs at least 2 tokens")
    n_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    n_spans = max(int(round(n_noise / mean_span)), 1)
    n_spans = min(n_spans, n_noise, length - n_noise)
    if n_spans > len(sentinel_ids):
        raise ValueError(f"{n_spans} spans need as many sentinels, only {len(sentinel_ids)} given")

    noise_lengths = _random_partition(n_noise, n_spans, generator)
    keep_lengths = _random_partition(length - n_noise, n_spans, generator)

    inputs, targets, pos = [], [], 0
    for i, (keep, noise) in enumerate(zip(keep_lengths, noise_lengths)):
        sentinel = ids.new_tensor([sentinel_ids[i]])
        inputs += [ids[pos : pos + keep], sentinel]
        pos += keep
        targets += [sentinel, ids[pos : pos + noise]]
        pos += noise
    return torch.cat(inputs), torch.cat(targets)


def fill_spans(inputs: Tensor, targets: Tensor, sentinel_ids: Sequence[int]) -> Tensor:
    """Undo `span_corrupt`: put each target span back where its sentinel stands.

    Also shows a model's predicted spans in context when `targets` are predictions;
    a sentinel with no span in `targets` is left out.
    """
    sentinels = set(int(s) for s in sentinel_ids)
    spans: dict[int, list[int]] = {}
    current: list[int] | None = None
    for token in targets.tolist():
        if token in sentinels:
            current = spans.setdefault(token, [])
        elif current is not None:
            current.append(token)
    out: list[int] = []
    for token in inputs.tolist():
        out += spans.get(token, []) if token in sentinels else [token]
    return torch.tensor(out, dtype=torch.long)
